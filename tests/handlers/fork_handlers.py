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
