"""Fork: the parent accepts, and forks one child per connection.

Net::Server::Fork's model on the shared supervisor.  The parent waits on
its one event loop; a readable listener means a client in the kernel's
queue: the parent accepts it (non-blocking), forks a child for it and
closes its own copy.  It never reads a client byte: allow/deny and every
per-connection hook run in the child, which closes the listeners at once,
drops privileges, sets its parent-death signal, serves the one client and
leaves with ``os._exit`` (all in ``Supervisor.run_child``).

At most ``max_servers`` children run at once (Perl lets ``max_servers + 1``
run).  When that many do, the parent stops watching the listeners: further
clients wait in the kernel's accept queue, not in a forked process, and the
first child to exit (SIGCHLD wakes the loop) lets the next one in.

A UDP datagram is received by the child, not the parent: the parent stops
watching that listener until the child it forked for it exits, so UDP under
Fork serves one datagram at a time per listener (PreForkSimple is the model
for UDP volume).

Stopping and HUP are the supervisor's: TERM/QUIT close the listeners and
HUP the children (each finishes its request; an idle persistent client is
closed), INT TERMs them; a HUP re-execs and the previous generation's
children finish their connection while the new image accepts.
"""

from __future__ import annotations

from ..connection import Connection, Datagram
from ..listeners import Listener
from ..options import FORK_OPTIONS
from ..supervisor import Supervisor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ACCEPTS_PER_WAKE = 32  # bounded, so a flood of connections cannot keep signals waiting


class Fork(Supervisor):
    """A parent that accepts and forks a child for each connection.

    Parent signals: as PreForkSimple's (TERM, QUIT graceful; INT fast; HUP
    re-exec; CHLD reap; sig_passthrough forwarded), and TTIN/TTOU move the
    ``max_servers`` ceiling by one (a HUP restores it).  Child: HUP finishes
    the connection (an idle one at once), TERM/INT/QUIT abandon it and run
    child_finish_hook.  Hooks: every per-connection hook and
    ``child_init_hook``/``child_finish_hook`` run in the connection's child.

    Runtime state (parent): ``self.capacity``, the ceiling now.
    """

    personality = "Fork"
    declared_options = FORK_OPTIONS

    capacity = 0
    _full = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._watched: set[int] = set()  # listener fds on the event loop now
        self._udp_children: dict[int, int] = {}  # child pid -> fd of the UDP listener it receives on

    def post_bind(self) -> None:
        super().post_bind()
        for listener in self.listeners:
            listener.sock.setblocking(False)  # the parent accepts until the queue is empty, never waits in accept

    # ------------------------------------------------------------ the supervisor's policy hooks
    def initial_pool_size(self) -> int:
        self.capacity = self.options.max_servers
        return 0  # nothing is forked ahead of a connection

    def want_more(self) -> int:
        return 0

    def retire_one(self) -> bool:
        return False

    def top_up(self) -> None:
        """After every wake-up (a reap among them): accept while there is room, else let the kernel queue."""
        if not self._ready_sent and not self.stopping:
            self.notify_ready()
            self.retire_old_generation()  # they finish their connection; we take the new ones
        if self._backoff is not None and self._backoff.fired:
            self._backoff = None  # a failed fork's pause is over
        self._watch_listeners(not self.stopping and self._backoff is None and self._has_room())

    def _running(self) -> int:
        # The previous generation's children hold connections too: they count against the ceiling.
        return self.children.count("connection", "old")

    def _has_room(self) -> bool:
        return self._running() < self.capacity

    def _watch_listeners(self, accepting: bool) -> None:
        live = self.children.by_pid
        self._udp_children = {pid: fd for pid, fd in self._udp_children.items() if pid in live}
        receiving = set(self._udp_children.values())
        wanted = {listener.fileno(): listener for listener in self.listeners
                  if accepting and listener.fileno() >= 0 and listener.fileno() not in receiving}
        for fd in self._watched - wanted.keys():
            self.events.unwatch(fd)
        for fd in wanted.keys() - self._watched:
            self.events.watch(fd, lambda listener=wanted[fd]: self._accept(listener))
        self._watched = set(wanted)
        full = not self._has_room()
        if full and not self._full and not self.stopping:
            self.log(3, "Max number of children reached (%d): the kernel queues new clients", self.capacity)
        self._full = full

    # ------------------------------------------------------------ accepting (parent)
    def _accept(self, listener: Listener) -> None:
        if listener.proto == "udp":
            # The child receives the datagram; until it exits this listener is not watched.
            if self._has_room() and self.spawn("connection", 1, listener):
                self._udp_children[next(reversed(self.children.by_pid))] = listener.fileno()  # the newest
                self._watched.discard(listener.fileno())
                self.events.unwatch(listener.fileno())
            return
        for _ in range(ACCEPTS_PER_WAKE):
            if self.stopping or not self._has_room() or self._backoff is not None:
                return
            self.pre_accept_hook()
            client = self.accept_from(listener)
            if client is None:
                return
            self.spawn("connection", 1, client)  # closes the parent's copy, forked or not

    # ------------------------------------------------------------ the child
    def child_main(self, kind: str, ready_write: int, client: Any = None) -> None:
        if isinstance(client, Listener):
            client.sock.setblocking(False)
            client = self.accept_from(client)  # one datagram, or None if it went elsewhere
        if not isinstance(client, (Connection, Datagram)):
            return
        self.status.busy(client.peeraddr, client.peerport)
        self.run_client_connection(client)

    # ------------------------------------------------------------ stopping
    def close_listeners(self) -> None:
        if not self.is_child:
            # Unwatched before they close: a child may still hold a copy, which would keep
            # the closed fd's epoll registration alive.
            for fd in self._watched:
                self.events.unwatch(fd)
            self._watched = set()
        super().close_listeners()

    # ------------------------------------------------------------ runtime control
    def handle_sigttin(self, signum: int) -> None:
        if not self.stopping:
            self.capacity += 1
            self.log(2, "Received SIGTTIN: max_servers %d (configured %d; a HUP restores it)", self.capacity,
                     self.options.max_servers)

    def handle_sigttou(self, signum: int) -> None:
        if not self.stopping and self.capacity > 1:
            self.capacity -= 1
            self.log(2, "Received SIGTTOU: max_servers %d (configured %d; a HUP restores it); running "
                     "children finish", self.capacity, self.options.max_servers)
