# The hello-world PSGI application of the HTTP workloads: the Perl peers'
# twin of hello_wsgi.py (Starman, and Net::Server::PSGI in perl_psgi.pl).
my $body = "Hello, world!\n";
my $app = sub {
    return [200, ['Content-Type' => 'text/plain', 'Content-Length' => length $body], [$body]];
};
$app;
