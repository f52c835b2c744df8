"""What children tell the parent: a pipe for events, a scoreboard for state.

The pipe carries two one-byte events, READY (the child entered its loop: it
booted) and LEAVING (it stopped taking work and is about to exit), and its
EOF says the child is gone; the parent's selector wakes on them.

The scoreboard is shared memory with one fixed-size slot per child: pid,
state (booting, idle, busy, dequeue, leaving), connections served, the
current client, since when, and a progress counter a long request may bump.
A child writes its own slot with ``struct.pack_into`` on the mapping: no
system call, so reporting "busy with 10.0.0.5:4711" costs a connection
about a microsecond.  The parent reads it for PreFork's spare-server
decisions, the watchdog and the status views.

It is a trust boundary: children run unprivileged and may be compromised,
the parent may be root.  The parent reads a slot only as numbers it
bounds-checks (an unknown state reads as "unknown"), and never acts on a
pid read from here: it looks the slot up from its own child table, and a
slot whose pid differs from the one it forked there is ignored (Apache's
CVE-2007-3304 and CVE-2019-0211 came from trusting the scoreboard).

The mapping is a memfd, so it can cross a HUP re-exec like the listeners:
the new image adopts it, the previous generation's children keep writing
their slots, and the new one takes free slots.  It grows (``ftruncate`` and
a new mapping in the parent) when the pool outgrows it; a child keeps the
mapping it was forked with, which always covers its own slot.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

READY = b"R"
LEAVING = b"L"

FREE, BOOTING, IDLE, BUSY, DEQUEUE, LEAVING_STATE = range(6)
STATE_NAMES = ("free", "booting", "idle", "busy", "dequeue", "leaving")

# pid, state, client port, requests, progress, since (monotonic), client address (text), connections
# held (an HTTP child holding several).
_SLOT = struct.Struct("=iBxHIId46sH")
SLOT_SIZE = 72  # _SLOT.size, a multiple of 8, so every slot starts aligned
_STATE = struct.Struct("=B")
_BUSY = struct.Struct("=BxHIId46s")  # state .. client: one write when a connection starts
_IDLE = struct.Struct("=BxHIId")  # state, port 0, requests, progress, since
_PROGRESS = struct.Struct("=I")
_CONNECTIONS = struct.Struct("=H")
_STATE_AT, _REQUESTS_AT, _PROGRESS_AT, _CONNECTIONS_AT = 4, 8, 12, 70


class Slot:
    """One slot as the parent read it (already bounds-checked)."""

    __slots__ = ("index", "pid", "state", "requests", "progress", "since", "client", "connections")

    def __init__(self, index: int, pid: int, state: int, requests: int, progress: int, since: float,
                 client: str, connections: int = 0) -> None:
        self.connections = connections
        self.index = index
        self.pid = pid
        self.state = state
        self.requests = requests
        self.progress = progress
        self.since = since
        self.client = client

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state] if 0 <= self.state < len(STATE_NAMES) else "unknown"

    def __repr__(self) -> str:
        return f"<Slot {self.index} pid {self.pid} {self.state_name} {self.requests} served>"


class Scoreboard:
    """PARENT: ``create(slots)`` or ``adopt(fd)``; ``claim()``/``release(i)`` slots; ``read(i)``.

    ``reporter(i)`` returns the writer of slot i, made by the parent before
    the fork and used by the child that owns the slot.  ``booted(i)`` marks a
    slot idle when its child reports READY.  ``export()`` hands the memfd
    across a HUP re-exec.  The constructor does nothing.
    """

    def __init__(self) -> None:
        self.fd = -1
        self.slots = 0
        self._map: mmap.mmap | None = None
        self._used: set[int] = set()

    def create(self, slots: int) -> None:
        self.fd = os.memfd_create("netserver-scoreboard", os.MFD_CLOEXEC)
        self._resize(max(slots, 1))

    def adopt(self, fd: int, used: set[int]) -> None:
        """The previous image's board: its children still write to their slots."""
        os.set_inheritable(fd, False)
        self.fd = fd
        self._map = None
        self.slots = 0
        self._resize(os.fstat(fd).st_size // SLOT_SIZE)
        self._used = {index for index in used if 0 <= index < self.slots}

    def _resize(self, slots: int) -> None:
        if slots * SLOT_SIZE > os.fstat(self.fd).st_size:
            os.ftruncate(self.fd, slots * SLOT_SIZE)
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self.fd, slots * SLOT_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.slots = slots

    def export(self) -> str:
        os.set_inheritable(self.fd, True)
        return str(self.fd)

    def claim(self, pid_hint: int = 0) -> int:
        """A free slot for a child about to be forked, marked booting; grows the board when full."""
        free = next((index for index in range(self.slots) if index not in self._used), None)
        if free is None:
            free = self.slots
            self._resize(self.slots * 2)
        self._used.add(free)
        assert self._map is not None
        _SLOT.pack_into(self._map, free * SLOT_SIZE, pid_hint, BOOTING, 0, 0, 0, time.monotonic(), b"", 0)
        return free

    def assign(self, index: int, pid: int) -> None:
        """Record the forked pid in its slot (the parent's own record, not the child's)."""
        assert self._map is not None
        struct.pack_into("=i", self._map, index * SLOT_SIZE, pid)

    def booted(self, index: int) -> None:
        """The child said READY: booting becomes idle, written by the parent so that a child's
        boot runs none of this module's code.  A child already busy (it accepted before we read
        its READY) is left as it said."""
        assert self._map is not None
        offset = index * SLOT_SIZE
        if _STATE.unpack_from(self._map, offset + _STATE_AT)[0] == BOOTING:
            _IDLE.pack_into(self._map, offset + _STATE_AT, IDLE, 0, 0, 0, time.monotonic())

    def release(self, index: int) -> None:
        if index in self._used and self._map is not None:
            self._used.discard(index)
            _SLOT.pack_into(self._map, index * SLOT_SIZE, 0, FREE, 0, 0, 0, 0.0, b"", 0)

    def read(self, index: int) -> Slot | None:
        if self._map is None or not 0 <= index < self.slots:
            return None
        pid, state, port, requests, progress, since, client, connections = _SLOT.unpack_from(
            self._map, index * SLOT_SIZE)
        if not 0 <= state < len(STATE_NAMES):
            state = -1
        if since != since or since < 0:  # NaN or nonsense from a child we do not trust
            since = 0.0
        address = client.split(b"\0", 1)[0].decode("ascii", "replace") if state == BUSY else ""
        return Slot(index, pid, state, requests, progress, since, f"{address}:{port}" if address else "",
                    connections)

    def reporter(self, index: int) -> Reporter:
        assert self._map is not None
        return Reporter(self._map, index * SLOT_SIZE)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Reporter:
    """CHILD: writes its own slot.  Every method is one ``pack_into``: no system call."""

    __slots__ = ("_map", "_offset", "requests", "progress", "_address", "_encoded")

    def __init__(self, mapping: mmap.mmap, offset: int) -> None:
        self._map = mapping
        self._offset = offset
        self.requests = 0
        self.progress = 0
        self._address = ""   # the client address last written, and its bytes: a keep-alive
        self._encoded = b""  # connection's requests pass the same string each time

    def state(self, state: int) -> None:
        _STATE.pack_into(self._map, self._offset + _STATE_AT, state)

    def idle(self) -> None:
        _IDLE.pack_into(self._map, self._offset + _STATE_AT, IDLE, 0, self.requests, self.progress,
                        time.monotonic())

    def busy(self, address: str, port: int) -> None:
        self.requests += 1
        if address != self._address:  # equal text from another connection: no new bytes
            self._address, self._encoded = address, address.encode("ascii", "replace")
        _BUSY.pack_into(self._map, self._offset + _STATE_AT, BUSY, port, self.requests, self.progress,
                        time.monotonic(), self._encoded)

    def tick(self) -> None:
        """A long request says it is still making progress (read by the watchdog)."""
        self.progress = (self.progress + 1) & 0xFFFFFFFF
        _PROGRESS.pack_into(self._map, self._offset + _PROGRESS_AT, self.progress)

    def connections(self, count: int) -> None:
        """How many connections this child holds (an HTTP child holding several)."""
        _CONNECTIONS.pack_into(self._map, self._offset + _CONNECTIONS_AT, min(count, 0xFFFF))

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections any other serving child holds, or None if no other serves.

        Read by a child deciding whether to leave a new connection to a less
        loaded sibling; the figures are advice only (a sibling may have
        written anything), so a wrong one costs balance, never service.
        """
        mapping, mine = self._map, self._offset
        fewest = None
        for offset in range(0, len(mapping) - SLOT_SIZE + 1, SLOT_SIZE):
            if offset == mine or mapping[offset + _STATE_AT] not in (IDLE, BUSY):
                continue
            count = _CONNECTIONS.unpack_from(mapping, offset + _CONNECTIONS_AT)[0]
            if fewest is None or count < fewest:
                fewest = count
        return fewest


class NullReporter:
    """Where there is no scoreboard (Single, a dequeue child): the same calls, nothing written."""

    requests = 0
    progress = 0

    def state(self, state: int) -> None: ...
    def idle(self) -> None: ...

    def busy(self, address: str, port: int) -> None:
        self.requests += 1

    def tick(self) -> None: ...
    def connections(self, count: int) -> None: ...

    def fewest_elsewhere(self) -> int | None:
        return None
