"""child_communication: a socketpair between each server child and the parent.

Net::Server::PreFork's option, with its names.  The child writes to
``self.parent_sock`` (an ordinary blocking ``socket.socket``, Net::Server's
``$self->{server}{parent_sock}``) from ``process_request`` or any child
hook; the parent calls ``child_is_talking_hook(sock)`` when that child's
socket has data.

The parent's end is the trust boundary, as the scoreboard is: a child may
be compromised, or just buggy, and the parent must not block on it nor be
flooded by it.  So the parent's end is non-blocking and watched on the
parent's event loop; on each wake-up the parent makes exactly one ``recv``
of at most READ_LIMIT bytes into the link's buffer and then calls the hook
with a ``ChildSocket`` that reads from that buffer, never from the kernel.
A flooding child therefore costs the parent one bounded read per loop turn,
the other children and signals get their turns between, and the child
blocks in its own ``send`` once the kernel's buffers are full.  What the
hook leaves unread stays for its next call, up to BUFFER_LIMIT bytes; beyond
that it is dropped, with a log line, rather than grow without bound.

Perl hands the hook the raw socket and lets it read; a hook that reads
nothing (the default) then spins Perl's parent on a readable socket, and
one that reads a line with ``<$sock>`` blocks it on a child that wrote half
a line.  Reading for the hook avoids both.

The pairs are made in the parent before a burst of forks and keyed by each
child's READY pipe; after the forks the child keeps its own end and closes
every other one, and the parent closes the child ends.  The parent's ends
are close-on-exec, so after a HUP re-exec the previous generation's
``parent_sock`` is disconnected (a write raises ``BrokenPipeError``) and
the new generation gets new pairs.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

READ_LIMIT = 65536  # bytes the parent reads from one child per wake-up
BUFFER_LIMIT = 65536  # unread bytes kept for the hook before they are dropped


class ChildSocket:
    """PARENT: one child's end as ``child_is_talking_hook(sock)`` sees it.

    ``pid`` is the child's.  ``readline()`` returns the next complete line
    (with its newline) or ``b""`` when none is complete yet; ``lines()``
    iterates over the complete lines; ``read()`` takes everything buffered,
    partial line included.  Once ``closed`` is true (the child closed its
    end or exited; the hook's last call) ``readline()`` also returns the
    unterminated rest.  ``send(data)`` writes to the child without blocking
    and returns how many bytes went (0 when its buffer is full or it is
    gone).  ``sock`` is the raw non-blocking socket, for ``getsockopt`` and
    the like; reading from it directly bypasses the bounds above.
    """

    __slots__ = ("pid", "sock", "closed", "dropped", "_buffer")

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.closed = False
        self.dropped = 0  # bytes dropped unread so far
        self._buffer = bytearray()

    def __repr__(self) -> str:
        return f"<ChildSocket pid={self.pid}{' closed' if self.closed else ''} buffered={len(self._buffer)}>"

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def fill(self) -> bool:
        """One non-blocking read into the buffer; False once the child's end is closed."""
        try:
            data = self.sock.recv(READ_LIMIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False  # ECONNRESET and the like: the child is gone
        if not data:
            return False
        self._buffer += data
        return True

    def readline(self) -> bytes:
        end = self._buffer.find(b"\n")
        if end < 0:
            return self.read() if self.closed else b""
        line = bytes(self._buffer[:end + 1])
        del self._buffer[:end + 1]
        return line

    def lines(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def read(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def send(self, data: bytes) -> int:
        if self.closed:
            return 0
        try:
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return 0  # the child is gone; its EOF closes this link

    def drop(self) -> None:
        self.dropped += len(self._buffer)
        self._buffer.clear()

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class ChildLinks:
    """Mixin for the supervisor: the socketpairs of ``child_communication``.

    Hook (PARENT): ``child_is_talking_hook(sock)``, a no-op here.  In a
    CHILD ``self.parent_sock`` is its end, or None without
    child_communication.  The supervisor calls ``open_links`` before a burst
    of forks, ``take_link`` in each child, ``attach_link`` for each child
    forked (or None for a fork that failed) and ``close_link`` when it
    forgets a child.  A personality turns it on by declaring the
    ``child_communication`` option.
    """

    parent_sock: socket.socket | None = None
    _links: dict[int, tuple[socket.socket, socket.socket]] | None = None  # this burst's pairs
    options: Any
    events: Any
    _parent_fds: set[int]

    def child_is_talking_hook(self, sock: ChildSocket) -> None:
        """PARENT: a child wrote to its parent_sock; read what it said from ``sock``."""

    # ------------------------------------------------------------ forking
    def open_links(self, keys: list[int]) -> None:
        """One pair per server child about to be forked, keyed by its READY pipe's write end."""
        if not getattr(self.options, "child_communication", False):
            return
        links = {}
        for key in keys:
            if key < 0:
                continue  # a dequeue child: Net::Server gives those no socket either
            try:
                links[key] = socket.socketpair()
            except OSError as error:
                self.log(0, "cannot create a socketpair for a new child: %s; it starts without parent_sock",
                         error.strerror)
                break
        self._links = links

    def take_link(self, key: int) -> None:
        """CHILD: keep our own end as parent_sock; close every other end of this burst."""
        if not self._links:
            return  # no child_communication: write nothing (each page a child writes is its own copy)
        own = None
        for other, (parent_end, child_end) in self._links.items():
            parent_end.close()
            if other == key:
                own = child_end
            else:
                child_end.close()
        self.parent_sock = own

    def attach_link(self, child: Any, key: int) -> None:
        """PARENT, after the burst: watch the parent's end for ``child`` (None: the fork failed)."""
        pair = self._links.pop(key, None) if self._links else None  # a fork that failed leaves its pair
        if pair is None:
            return
        parent_end, child_end = pair
        child_end.close()
        if child is None:
            parent_end.close()
            return
        parent_end.setblocking(False)
        child.link = ChildSocket(child.pid, parent_end)
        fd = parent_end.fileno()
        self._parent_fds.add(fd)  # a later child closes it with the parent's other fds
        self.events.watch(fd, lambda: self._child_talking(child))

    # ------------------------------------------------------------ the parent's side
    def _child_talking(self, child: Any) -> None:
        link = child.link
        if link is None:
            return
        if link.fill():
            self._deliver(link)
        else:
            self.close_link(child)

    def _deliver(self, link: ChildSocket) -> None:
        if link.buffered:
            try:
                self.child_is_talking_hook(link)
            except Exception:  # a user hook must not take the parent down with it
                self.log(1, "child_is_talking_hook failed for child %d", link.pid, exc_info=True)
        if link.buffered > BUFFER_LIMIT:
            if not link.dropped:  # once per child: a flood of garbage must not become a flood of log lines
                self.log(2, "child %d: more than %d bytes on its parent_sock that child_is_talking_hook did not "
                         "read; dropping what it leaves unread (the total is logged when the child goes)",
                         link.pid, BUFFER_LIMIT)
            link.drop()

    def close_link(self, child: Any) -> None:
        """PARENT: the child closed its end or was reaped: deliver what is left, then close ours."""
        link = child.link
        if link is None:
            return
        child.link = None
        fd = link.fileno()
        self.events.unwatch(fd)
        self._parent_fds.discard(fd)
        link.fill()  # a child that wrote and exited before the loop saw it: one more bounded read
        link.closed = True
        self._deliver(link)
        if link.dropped:
            self.log(2, "child %d: %d bytes on its parent_sock were dropped unread", link.pid,
                     link.dropped + link.buffered)
        link.close()
