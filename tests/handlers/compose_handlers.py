"""--handler classes that bring options of their own (the protocol-mixin shape)."""

from netserver import Option
from netserver.options import integer, text


class Greeter:
    """Says its greeting option, then echoes one line; a mixin, not a Server subclass."""

    declared_options = (Option("greeting", text, "hello", "First line sent. Default hello."),)

    def process_request(self, client):
        client.wfile.write(self.options.greeting.encode() + b"\n")
        client.wfile.write(client.rfile.readline())


class Clashing:
    """Declares 'timeout' with another meaning than the server's: cannot be combined."""

    declared_options = (Option("timeout", integer(0), 3, "Not the server's timeout."),)

    def process_request(self, client):
        client.wfile.write(b"never\n")
