"""PreFork servers with child_communication for the tests; the parent's hook leaves marks in $MARK_DIR."""

import os
import time
from pathlib import Path

from netserver import PreFork


def mark(name: str, text: str) -> None:
    with open(Path(os.environ["MARK_DIR"]) / name, "a") as handle:
        handle.write(text + "\n")


class Talker(PreFork):
    """Each request line is a command for the child's parent_sock.

    ``say WORDS``: write "<pid> WORDS" to the parent; ``flood SECONDS``: write
    garbage (no newline) to the parent for that long, then answer with the MiB sent; ``close``:
    close parent_sock; ``none``: report whether there is a parent_sock.  The
    parent's hook records each complete line in $MARK_DIR/talk (with the pid
    the parent knows the child by), a closed link's unterminated rest in $MARK_DIR/closed,
    and raises on a line that says 'raise'.
    """

    def process_request(self, client):
        for line in client.rfile:
            command, _, rest = line.strip().partition(b" ")
            if command == b"say":
                self.parent_sock.sendall(b"%d %s\n" % (os.getpid(), rest))
            elif command == b"flood":
                chunk = os.urandom(65536).replace(b"\n", b"x")
                deadline = time.monotonic() + float(rest)
                sent = 0
                while time.monotonic() < deadline:
                    self.parent_sock.sendall(chunk)
                    sent += len(chunk)
                client.wfile.write(b"%d ok %d\n" % (os.getpid(), sent >> 20))
                continue
            elif command == b"partial":
                self.parent_sock.sendall(b"%d %s" % (os.getpid(), rest))  # no newline: the rest at close
            elif command == b"close":
                self.parent_sock.close()
            elif command == b"none":
                client.wfile.write(b"%s\n" % str(self.parent_sock is None).encode())
                continue
            client.wfile.write(b"%d ok\n" % os.getpid())

    def child_is_talking_hook(self, sock):
        for line in sock.lines():  # on the last call, after the child closed, the rest comes too
            if b"raise" in line:
                raise RuntimeError("the hook fails on purpose")
            mark("talk" if line.endswith(b"\n") else "closed",
                 "%d %s" % (sock.pid, line.decode(errors="replace").strip()))
