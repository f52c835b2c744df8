"""Handlers for the Fork and INET tests."""

import os


class ExitAbnormally:
    """'die' leaves the process with status 7 at once; anything else is echoed."""

    def process_request(self, client):
        for line in client.rfile:
            if line.strip() == b"die":
                os._exit(7)
            client.wfile.write(line)


class Printer:
    """Prints to stdout (which must not reach the client), then echoes a line."""

    def process_request(self, client):
        print("printed to stdout", flush=True)
        client.wfile.write(client.rfile.readline())


class CountsAccepts:
    """Fork's pre_accept_hook (parent) and pre_fork_hook mark $MARK_DIR/hooks; clients get an echo."""

    def _mark(self, text):
        with open(os.path.join(os.environ["MARK_DIR"], "hooks"), "a") as handle:
            handle.write(f"{os.getpid()} {text}\n")

    def pre_accept_hook(self):
        self._mark("pre_accept_hook")

    def pre_fork_hook(self):
        self._mark("pre_fork_hook")

    def process_request(self, client):
        client.wfile.write(client.rfile.readline())
