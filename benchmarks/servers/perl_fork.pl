#!/usr/bin/perl
# Perl's Net::Server::Fork as a line-echo server: the peer of netserver's Fork.
#
#   perl perl_fork.pl --port=127.0.0.1:P --max_servers=N --log_level=0 --listen=1024 [--once]
#
# The parent accepts and forks a child per connection (at most max_servers + 1
# at once, Net::Server's own limit); process_request is perl_preforksimple.pl's.
package BenchEcho;

use strict;
use warnings;
use base qw(Net::Server::Fork);

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

$BenchEcho::ONCE = grep { $_ eq '--once' } @ARGV;
@ARGV = grep { $_ ne '--once' } @ARGV;

my $server = BenchEcho->new;
$server->commandline([$^X, $0, @ARGV]);
$server->run;
