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
# --personality=PreFork (ours, like --once) makes it Net::Server::PreFork,
# with the pool options (min_servers, min/max_spare_servers) on the line too.
package BenchEcho;

use strict;
use warnings;

our $ONCE = 0;
our @ISA;

BEGIN {
    my ($choice) = map { /^--personality=(\w+)$/ ? $1 : () } @ARGV;
    my $base = 'Net::Server::' . ($choice || 'PreForkSimple');
    die "--personality: '$choice' is not PreForkSimple or PreFork\n"
        unless $base eq 'Net::Server::PreForkSimple' || $base eq 'Net::Server::PreFork';
    eval "require $base" or die $@;
    @ISA = ($base);
}

sub process_request {
    my $self = shift;
    my $client = $self->{'server'}->{'client'};
    while (defined(my $line = <$client>)) {
        print $client $line;
        last if $ONCE;
    }
}

package main;

# --once and --personality are ours, not Net::Server's: take them out before Net::Server
# reads @ARGV (the HUP re-exec below gets them back, so the personality survives it).
my @ours = grep { $_ eq '--once' || /^--personality=/ } @ARGV;
$BenchEcho::ONCE = grep { $_ eq '--once' } @ARGV;
@ARGV = grep { $_ ne '--once' && !/^--personality=/ } @ARGV;

my $server = BenchEcho->new;
# Net::Server re-execs $0 on HUP, which needs an executable script; naming
# the interpreter keeps HUP working when the file has no exec bit.
$server->commandline([$^X, $0, @ours, @ARGV]);
$server->run;
