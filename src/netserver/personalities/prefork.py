"""PreFork: a pool that follows the load between min_servers and max_servers.

Net::Server::PreFork's model, with its names: ``min_servers`` children at
start; when fewer than ``min_spare_servers`` are idle, or connections wait
in the listeners' accept queues, the parent forks more (at most
``max_spawn_per_tick`` per pool check, never above ``max_servers``); every
``check_for_waiting`` seconds it retires idle ones above
``max_spare_servers`` (never below ``min_servers``, and not while any child
is younger than ``min_child_ttl``).

The decisions read the scoreboard and the accept queues (TCP_INFO on a
listening socket gives its queue length): children report nothing extra
and wake nobody (Perl's children write a status line to a shared pipe twice
a request, and the parent races them).  Without those wake-ups the parent
learns of a burst at its next pool check, every POOL_TICK; while the pool
grows it checks every GROWTH_TICK, so covering a burst of 30 connections
takes about as long as Perl's event-driven parent (fork and boot bound,
benchmarks workload 5).  A full pool reads nothing, and a pinned one
(min_servers = max_servers) is not polled at all.  Defaults are derived so that any
``max_servers`` starts (Perl's die with ``max_servers 2``); an explicit set
that cannot hold exits 2 naming both options.
"""

from __future__ import annotations

import socket
import struct
import time

from .. import status
from ..errors import ConfigError
from ..options import PREFORK_OPTIONS
from .prefork_simple import PreForkSimple

POOL_TICK = 0.02  # seconds between pool checks while the pool is steady: a burst waits at most this long
GROWTH_TICK = 0.005  # seconds between pool checks while it grows: until the new children cover the load
# Linux answers TCP_INFO on a listening socket with its accept queue: tcpi_unacked is the number of
# connections waiting to be accepted (tcpi_sacked the backlog).  u8 x 8, then u32 rto, ato, snd_mss,
# rcv_mss, unacked: offset 24.
_UNACKED = struct.Struct("=24xI")


class PreFork(PreForkSimple):
    """A pre-forked pool that grows and shrinks with the load.

    Runtime state (parent): ``pool_min`` and ``pool_max`` (TTIN/TTOU move
    both by one; a HUP restores the configured ones), ``min_spare`` and
    ``max_spare``.  Everything else (hooks, signals, the stop table, HUP,
    serialization, dequeue) is PreForkSimple's.

    With ``child_communication``: ``self.parent_sock`` (CHILD) is the
    child's end of its socketpair to the parent, and the hook
    ``child_is_talking_hook(sock)`` (PARENT) is called with a
    ``talk.ChildSocket`` when a child wrote to it (see talk.py).
    """

    personality = "PreFork"
    declared_options = PREFORK_OPTIONS

    pool_min = pool_max = min_spare = max_spare = 0
    _spawn_budget = 0
    _budget_since = 0.0  # when the budget was last refilled (monotonic)
    _growing = False  # a growth check is scheduled
    _queues: tuple[socket.socket, ...] = ()  # the TCP listeners, whose accept queues the checks read

    # ------------------------------------------------------------ configuration
    def post_configure(self) -> None:
        super().post_configure()
        self.pool_min, self.pool_max, self.min_spare, self.max_spare = derive_pool(self.options, self.option_origins)

    def initial_pool_size(self) -> int:
        return self.pool_min

    def start_timers(self) -> None:
        super().start_timers()
        self._spawn_budget = self.options.max_spawn_per_tick
        self._queues = tuple(listener.sock for listener in self.listeners
                             if listener.family in (socket.AF_INET, socket.AF_INET6)
                             and listener.sock.type == socket.SOCK_STREAM)
        self._budget_since = time.monotonic()
        if self.pool_min < self.pool_max:
            # A pool that can grow polls for load; a pinned one (TTIN/TTOU move both sizes, so it
            # stays pinned) only replaces children, on the events that report them: no ticks.
            self.events.call_every(POOL_TICK, self._refill_spawn_budget)
        self.events.call_every(self.options.check_for_waiting, self._retire_spares)
        self.events.call_every(self.options.check_for_spawn, self.check_for_dead)  # Perl's recount

    # ------------------------------------------------------------ the pool
    def _counts(self) -> tuple[int, int, int]:
        """(total, serving, spare): server children, those still taking work, and those of them
        idle or still booting.  A leaving child still counts against max_servers."""
        total = serving = spare = 0
        board = self.scoreboard
        for child in self.children:
            if child.kind != "server":
                continue
            total += 1
            if child.leaving:
                continue
            serving += 1
            slot = board.read(child.slot)
            if slot is not None and slot.state in (status.IDLE, status.BOOTING):
                spare += 1
        return total, serving, spare

    def _queued(self) -> int:
        """Connections waiting in the listeners' accept queues: load no child has taken yet."""
        queued = 0
        for sock in self._queues:
            try:
                queued += _UNACKED.unpack(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _UNACKED.size))[0]
            except (OSError, struct.error):
                pass  # closed by a stop: nothing to grow for
        return queued

    def want_more(self) -> int:
        if self.children.serving() >= self.pool_max:
            return 0  # a full (or pinned) pool: no need to read the board
        total, serving, spare = self._counts()
        # Booting children count as spare and will take queued connections: a connection
        # waiting in the queue is one spare fewer, so a burst is covered in one or two
        # checks rather than min_spare_servers at a time.
        queued = self._queued()
        wanted = max(self.pool_min - serving, self.min_spare - spare + queued)
        if time.monotonic() - self._budget_since >= GROWTH_TICK:
            self._refill_spawn_budget()  # replacements between ticks, and a pinned pool, which has none
        wanted = min(wanted, self.pool_max - total, self._spawn_budget)
        if (wanted > 0 or queued) and not self._growing:
            # Growing: check again soon, while connections wait or a check forks (the
            # children forked may not cover the load once they boot); steady again, every POOL_TICK.
            self._growing = True
            self.events.call_later(GROWTH_TICK, self._growth_check)
        if wanted <= 0:
            return 0
        self._spawn_budget -= wanted
        return wanted

    def _growth_check(self) -> None:
        self._growing = False
        self._refill_spawn_budget()  # top_up runs right after this, and reschedules while it forks

    def _refill_spawn_budget(self) -> None:
        self._spawn_budget = self.options.max_spawn_per_tick  # top_up runs right after this
        self._budget_since = time.monotonic()

    def _retire_spares(self) -> None:
        if self.stopping:
            return
        _, serving, spare = self._counts()
        if serving > self.pool_max:
            excess = serving - self.pool_max
        elif spare > self.max_spare and serving > self.pool_min and not self._young_child():
            excess = min(spare - self.max_spare, serving - self.pool_min)
        else:
            return
        retired = sum(1 for _ in range(excess) if self.retire_one())
        if retired:
            self.log(3, "Retiring %d idle children (%d serving, %d idle; max_spare_servers %d)", retired, serving,
                     spare, self.max_spare)

    def _young_child(self) -> bool:
        youngest = max((child.started for child in self.children if child.kind == "server"), default=0.0)
        return bool(youngest) and time.monotonic() - youngest < self.options.min_child_ttl

    # ------------------------------------------------------------ runtime control
    def handle_sigttin(self, signum: int) -> None:
        if self.stopping:
            return
        self.pool_min += 1
        self.pool_max += 1
        self.pool_size = self.pool_min
        self._log_pool("SIGTTIN")

    def handle_sigttou(self, signum: int) -> None:
        if self.stopping:
            return
        floor = self.max_spare + 1  # max_spare_servers < max_servers, as at start-up
        if self.pool_min <= 1 and self.pool_max <= floor:
            self.log(2, "Received SIGTTOU: min_servers %d and max_servers %d stay (the spare band needs them)",
                     self.pool_min, self.pool_max)
            return
        self.pool_min = max(1, self.pool_min - 1)
        self.pool_max = max(floor, self.pool_max - 1, self.pool_min)
        self.pool_size = self.pool_min
        _, serving, _ = self._counts()
        if serving > self.pool_max or serving > self.pool_min:
            self.retire_one()
        self._log_pool("SIGTTOU")

    def _log_pool(self, name: str) -> None:
        self.log(2, "Received %s: min_servers %d, max_servers %d (configured %d and %d; a HUP restores them)",
                 name, self.pool_min, self.pool_max, *derive_pool(self.options, self.option_origins)[:2])


def derive_pool(options, origins: dict[str, str]) -> tuple[int, int, int, int]:
    """(min_servers, max_servers, min_spare_servers, max_spare_servers), consistent, or ConfigError.

    Only an explicit value can be inconsistent: a derived one gives way to
    the explicit ones around it.
    """
    maximum = options.max_servers
    given = {name: getattr(options, name) for name in ("min_servers", "min_spare_servers", "max_spare_servers")}
    minimum = given["min_servers"] if given["min_servers"] is not None else min(5, maximum)
    max_spare = given["max_spare_servers"]
    if max_spare is None:
        max_spare = min(10, maximum - 1)
        if given["min_spare_servers"] is not None:
            max_spare = min(max(max_spare, given["min_spare_servers"]), maximum - 1)
    min_spare = given["min_spare_servers"]
    if min_spare is None:
        min_spare = min(2, minimum, max_spare)
    _require(minimum <= maximum, "min_servers", minimum, "max_servers", maximum, "is more than", origins)
    _require(max_spare < maximum, "max_spare_servers", max_spare, "max_servers", maximum,
             "must be less than", origins)
    _require(min_spare <= max_spare, "min_spare_servers", min_spare, "max_spare_servers", max_spare,
             "is more than", origins)
    return minimum, maximum, min_spare, max_spare


def _require(holds: bool, name: str, value: int, other: str, limit: int, relation: str,
             origins: dict[str, str]) -> None:
    # ``name`` is always an explicit value here: the derivation above keeps derived ones consistent.
    if holds:
        return
    raise ConfigError(name, str(value), origins.get(name),
                      f"{relation} {other} ({limit}, {origins.get(other, 'default')}); change one of the two")
