"""Single: one process serves one connection after another.

It proves the lifecycle with no process model around it.  Having no
children, it drops privileges in-process right after binding, so a HUP
re-exec then runs as the unprivileged user and cannot re-bind privileged
ports or remove a root-owned pid file: use PreForkSimple when that matters.
"""

from __future__ import annotations

import signal

from .. import daemon
from ..server import Server, StopServer
from ..signals import IGNORED, STOP_TOO


class Single(Server):
    """Serve connections one at a time in the server process itself.

    Signals: TERM, QUIT stop after the current connection (an idle client is
    closed at once); INT stops at once, abandoning a request in progress;
    HUP validates the configuration and re-execs in place, keeping the
    listening sockets; PIPE is ignored.
    """

    personality = "Single"

    def post_bind(self) -> None:
        super().post_bind()
        self.signals.install((signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, *IGNORED, *STOP_TOO),
                             self.on_signal)
        daemon.drop_privileges(self.identity, self.options.chroot)
        self.serves_clients = True
        self.isolate_forks()

    def loop(self) -> None:
        for listener in self.listeners:
            listener.sock.setblocking(False)
            self.events.watch(listener.fileno(), lambda listener=listener: self._serve(listener))
        self.events.watch(self.signals.fileno(), self.dispatch_signals)
        self.notify_ready()
        while not self.stopping:
            self.events.run_once()

    def _serve(self, listener) -> None:
        if self.draining:
            return  # a stop arrived with this connection: leave it to the kernel's queue
        client = self.accept_from(listener)
        if client is None:
            return
        try:
            self.run_client_connection(client)
        except StopServer:
            self.log(2, "Stopping during a request from %s", self._peer(client))
            self.stopping = True
        if self.done():
            self.stopping = True
