#!/usr/bin/perl
# Net::Server::PSGI (Net::Server::HTTP's PSGI flavour, Debian libnet-server-perl)
# serving hello.psgi on Net::Server::PreFork pinned to N children:
#     perl perl_psgi.pl --port=127.0.0.1:P --workers=N
# Net::Server::HTTP speaks HTTP/1.0 and closes after every response.
# timeout_header is 2 s instead of its 15: it reads a head one byte at a time
# and does not notice EOF, so a connection the client closes before sending
# its head (wrk does that at the end of every run) keeps a child spinning on
# the CPU until timeout_header; at 15 s the next run would find every child
# busy (measured: 0 requests in the following 1 s run).
use strict;
use warnings;
use File::Basename qw(dirname);
use Getopt::Long;
use Net::Server::PSGI;

my ($port, $workers) = ('', 4);
GetOptions('port=s' => \$port, 'workers=i' => \$workers) or die "usage: $0 --port=HOST:P --workers=N\n";
my $app = do(dirname(__FILE__) . '/hello.psgi') or die "hello.psgi: $@ $!\n";
Net::Server::PSGI->run(
    app => $app,
    port => $port,
    server_type => 'PreFork',
    min_servers => $workers, max_servers => $workers,
    min_spare_servers => 0, max_spare_servers => $workers - 1,
    max_requests => 1_000_000_000,
    listen => 1024,
    timeout_header => 2,
    log_level => 0,
    access_log_file => undef,
    background => 0, setsid => 0,
);
