#!/usr/bin/perl
# Perl's Net::Server::PreForkSimple as a line-echo server: the peer that
# netserver ports.  Options are Net::Server's own, given on the command line:
#
#   perl perl_preforksimple.pl --port=127.0.0.1:P [--port=127.0.0.1:P2] \
#       --max_servers=N --max_requests=1000000000 --serialize=flock \
#       --log_level=0 --listen=1024
#
# process_request echoes lines until EOF; with --once (workload 1, as the
# floors) it echoes one line and returns, so every peer does the same work.
package BenchEcho;

use strict;
use warnings;
use base qw(Net::Server::PreForkSimple);

our $ONCE = 0;

sub process_request {
    my $self = shift;
    my $client = $self->{'server'}->{'client'};
    while (defined(my $line = <$client>)) {
        print $client $line;
        last if $ONCE;
    }
}

package main;

# --once is ours, not Net::Server's: take it out before Net::Server reads @ARGV.
$BenchEcho::ONCE = grep { $_ eq '--once' } @ARGV;
@ARGV = grep { $_ ne '--once' } @ARGV;

my $server = BenchEcho->new;
# Net::Server re-execs $0 on HUP, which needs an executable script; naming
# the interpreter keeps HUP working when the file has no exec bit.
$server->commandline([$^X, $0, @ARGV]);
$server->run;
