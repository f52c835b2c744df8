"""Servers for the core tests: custom options, a stub resolver, logging client bytes."""

from netserver import Option, PreForkSimple, Single
from netserver.options import integer


class StubResolver:
    """127.0.0.1 -> good.example.com (confirmed); ::1 -> liar.example.com (not confirmed)."""

    def reverse(self, address):
        return {"127.0.0.1": "good.example.com", "::1": "liar.example.com"}.get(address)

    def forward(self, name):
        return {"good.example.com": ["127.0.0.1"], "liar.example.com": ["192.0.2.1"]}.get(name, [])


class Named(Single):
    """Reports peerhost; allow rules may name hosts."""

    resolver = StubResolver()

    def process_request(self, client):
        client.wfile.write(client.peerhost.encode() + b"\n")


class Counted(PreForkSimple):
    """Declares its own option: greeting_count."""

    declared_options = (
        Option("greeting_count", integer(1, 10), 1, "How many greetings to send. Default 1.", metavar="N"),
    )

    def process_request(self, client):
        client.wfile.write(b"hi\n" * self.options.greeting_count)


class Chatty(Single):
    """Logs what the client said at level 2."""

    def process_request(self, client):
        line = client.rfile.readline()
        self.log(2, "client said %s", line.decode("latin-1"))
        client.wfile.write(b"logged\n")
