#!/usr/bin/perl
# Perl's Net::Server::INET as a line-echo service for a superserver: the
# client is STDIN/STDOUT; echo one line (or every line without --once), exit.
#
#   systemd-socket-activate --inetd -a -l 127.0.0.1:P perl perl_inet.pl --log_level=0 --once
package BenchEcho;

use strict;
use warnings;
use base qw(Net::Server::INET);

our $ONCE = 0;

sub process_request {
    my $self = shift;
    $| = 1;
    while (defined(my $line = <STDIN>)) {
        print STDOUT $line;
        last if $ONCE;
    }
}

package main;

$BenchEcho::ONCE = grep { $_ eq '--once' } @ARGV;
@ARGV = grep { $_ ne '--once' } @ARGV;

BenchEcho->run;
