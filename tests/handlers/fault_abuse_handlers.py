"""Handlers for the tests/fault/test_abuse_*.py suite (``--handler fault_abuse_handlers:NAME``)."""

import errno
import os
import signal
import time


class Slurp:
    """Negative control for the line-length cap: read everything the client sends, unbounded.

    Answers ``<pid> <bytes>`` once the client half-closes, so a test can see that
    every byte was read and how far the child's memory grew.
    """

    def process_request(self, client):
        data = client.rfile.read()
        client.wfile.write(b"%d %d\n" % (os.getpid(), len(data)))


class FdHog:
    """Exhausts the child's file descriptors on request and gives them back on SIGUSR1.

    A line ``exhaust`` marks the child; once that connection is closed
    (post_client_connection_hook, so the client's own descriptor is free again)
    the child opens /dev/null until EMFILE and keeps every descriptor.  Any
    other line is answered with the child's pid.  SIGUSR1, sent straight to the
    child, closes the hoard, so that accept() can succeed again.
    """

    def child_init_hook(self):
        self.hoard = []
        self.exhaust_pending = False
        signal.signal(signal.SIGUSR1, self._give_back)

    def _give_back(self, signum, frame):
        hoard, self.hoard = self.hoard, []
        for fd in hoard:
            os.close(fd)

    def process_request(self, client):
        line = client.rfile.readline().strip()
        if line == b"exhaust":
            self.exhaust_pending = True
        client.wfile.write(b"%d\n" % os.getpid())

    def post_client_connection_hook(self, client):
        if not self.exhaust_pending:
            return
        self.exhaust_pending = False
        while True:
            try:
                self.hoard.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE):
                    return
                raise


class Forker:
    """Forks a process that outlives the request (as a handler starting a worker would); answers its pid.

    The forked process lets go of its copy of the client (so the client sees
    the end of the reply), then sleeps until killed or 60 s have passed.
    """

    def process_request(self, client):
        client.rfile.readline()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(client.sock.detach())
                time.sleep(60)
            finally:
                os._exit(0)
        client.wfile.write(b"%d\n" % pid)


class LogLine:
    """Logs each line it reads as 'record <line> end' at level 2, then answers 'ok'."""

    def process_request(self, client):
        line = client.rfile.readline().strip()
        self.log(2, "record %s end", line.decode())
        client.wfile.write(b"ok\n")
