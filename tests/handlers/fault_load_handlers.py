"""Handlers for the load fault tests (tests/fault/test_load_*.py).

The protocol is the one ``tests/fault/loadgen.py`` speaks: the client sends
one line ``<token> <sleep_ms>``; the server sleeps that long, answers the
same line (``Pid`` variants append `` <pid>``) and closes the connection.
"""

import os
import time

from netserver import PreForkSimple


def answer(client, with_pid: bool = False) -> bool:
    """Serve one loadgen request; True once the whole answer was sent."""
    line = client.rfile.readline()
    if not line.endswith(b"\n"):
        return False
    words = line.split()
    if len(words) > 1 and words[1].isdigit() and int(words[1]):
        time.sleep(int(words[1]) / 1000)
    if with_pid:
        line = line[:-1] + b" %d\n" % os.getpid()
    client.wfile.write(line)
    return True


class Line:
    """Answer one loadgen line, then close."""

    def process_request(self, client):
        answer(client)


class LinePid:
    """Answer one loadgen line followed by the serving child's pid."""

    def process_request(self, client):
        answer(client, with_pid=True)


# One kibibyte per request, never released: the negative control of the leak check.
KEPT = []


class LeakyPid:
    """Answer like LinePid, and keep 1 KiB per request in a module-level list."""

    def process_request(self, client):
        KEPT.append(os.urandom(1024))
        answer(client, with_pid=True)


class Journal(PreForkSimple):
    """Line, plus a journal of ``A|D <pid> <peer ip>:<peer port>`` per connection.

    ``A`` is written the moment accept returns, ``D`` once the whole answer
    was sent.  The file is $FAULT_LOAD_JOURNAL, opened with O_APPEND once per
    child: every line is one write(2), so lines of different children never
    interleave, and no fsync is needed because the readers are on this host.
    """

    journal_fd = -1

    def child_init_hook(self):
        self.journal_fd = os.open(os.environ["FAULT_LOAD_JOURNAL"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def child_finish_hook(self):
        if self.journal_fd >= 0:
            os.close(self.journal_fd)
            self.journal_fd = -1

    def _note(self, kind: bytes, client) -> None:
        os.write(self.journal_fd, b"%s %d %s:%d\n" % (kind, os.getpid(), client.peeraddr.encode(), client.peerport))

    def accept_from(self, listener):
        client = super().accept_from(listener)
        if client is not None:
            self._note(b"A", client)
        return client

    def process_request(self, client):
        if answer(client):
            self._note(b"D", client)


class SlowCheck(PreForkSimple):
    """Line, with a HUP's configuration check that takes $FAULT_LOAD_CHECK_DELAY seconds after reading the conf.

    Stands for a check that is slow for real reasons (host names to resolve, users to look up).  The
    check appends a line to $FAULT_LOAD_CHECK_MARK once it has read the configuration.
    """

    def post_configure_hook(self):
        if os.environ.get("NETSERVER_CHECK") == "1":
            mark = os.environ.get("FAULT_LOAD_CHECK_MARK")
            if mark:
                with open(mark, "a") as handle:
                    handle.write("%d read the configuration\n" % os.getpid())
            time.sleep(float(os.environ.get("FAULT_LOAD_CHECK_DELAY", "0")))

    def process_request(self, client):
        answer(client)
