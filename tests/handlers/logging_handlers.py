"""Handlers for tests/functional/test_logging.py and test_privileged_errors.py (``--handler logging_handlers:NAME``)."""

import os


class HookLogs:
    """Logs from post_configure_hook at levels 1 and 2; answers with its pid."""

    def post_configure_hook(self):
        self.log(1, "warning from post_configure_hook")
        self.log(2, "notice from post_configure_hook")

    def process_request(self, client):
        client.wfile.write(b"%d\n" % os.getpid())


class RaiseOnBoom:
    """'boom' raises an exception (its message not ASCII); anything else gets '<pid> <uid>'."""

    def process_request(self, client):
        line = client.rfile.readline().strip()
        if line == b"boom":
            explode()
        client.wfile.write(b"%d %d\n" % (os.getpid(), os.getuid()))


def explode():
    raise ValueError("handler failed on purpose \u2603")


class DenyAll:
    """allow_deny_hook refuses every client."""

    def allow_deny_hook(self, client):
        return False

    def process_request(self, client):
        raise AssertionError("a denied client reached process_request")
