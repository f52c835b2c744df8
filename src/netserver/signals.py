"""Record-only signal handling through a wakeup fd.

Handlers do no work.  CPython's C-level handler writes the signal number
into the wakeup pipe (``signal.set_wakeup_fd``); the main loop waits on that
pipe in its selector and reads the numbers back, so a signal that arrives
just before the loop goes to sleep is never missed (the self-pipe trick),
and we do not depend on when the Python-level handler happens to run.

Since PEP 475, an interrupted system call is retried, so no code here relies
on EINTR to cut a sleep short: every wait includes the wakeup fd.

A process may add an ``on_signal`` callback, run from the Python-level
handler, for the rare action that cannot wait for the loop (a child that
must abandon a request on TERM).  It must be short and safe to run between
any two bytecodes.
"""

from __future__ import annotations

# The C module, not the signal module's wrappers: those turn every return value
# into an enum member, and in a forked child that writes to enum objects shared
# with the parent (measured: ~100 KiB more private memory per child).
import _signal
import os
import signal
from collections.abc import Callable

# The one table of which signal does what (the README's signal table says it for users).
#: Handled by the server process: stop (TERM, QUIT graceful; INT fast), reload (HUP), reap (CHLD).
HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)
#: Sent by operators and their tools (logrotate's USR1, a terminal's WINCH, a stray
#: ALRM, TTIN/TTOU): never fatal.  The server process logs and ignores each unless a
#: personality handles it (PreForkSimple: TTIN/TTOU resize the pool); children ignore them
#: unless sig_passthrough forwards them, in which case the handler decides.
IGNORED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGALRM, signal.SIGTTIN, signal.SIGTTOU)
#: Fatal by default, sent by the system rather than by hand (power failure, CPU limit,
#: profiling timers, async I/O): the server process stops gracefully, so no pid file is left.
STOP_TOO = (signal.SIGPWR, signal.SIGXCPU, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO)


class Signals:
    """The wakeup pipe and the handlers of one process.

    ``install()`` in the parent after configuration; ``take()`` after the
    selector reports ``fileno()`` readable; ``reset_in_child()`` right after
    fork, while the signals are still blocked.
    """

    def __init__(self) -> None:
        self.read_fd = -1
        self.write_fd = -1
        self.installed: list[int] = []
        self.on_signal: Callable[[int], None] | None = None
        # One bound method for every signal, made once: ``self._handler`` would make a new
        # object per signal, and a forked child resetting its handlers writes to each of them
        # (its reference count) and frees it, about 25 pages of private memory per child.
        self._bound_handler = self._handler

    def fileno(self) -> int:
        return self.read_fd

    def install(self, signums: tuple[int, ...] | list[int],
                on_signal: Callable[[int], None] | None = None, ignore: tuple[int, ...] = ()) -> None:
        self.close()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        _signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.on_signal = on_signal
        handler = self._bound_handler
        for signum in signums:
            _signal.signal(signum, handler)
            self.installed.append(signum)
        _signal.signal(signal.SIGPIPE, _signal.SIG_IGN)
        for signum in ignore:
            _signal.signal(signum, _signal.SIG_IGN)
        # A HUP re-exec blocks these across exec (the mask survives it): with
        # the handlers in place, let any queued HUP or TERM in now.
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, list(signums))

    def _handler(self, signum: int, frame: object) -> None:
        if self.on_signal is not None:
            self.on_signal(signum)

    def take(self) -> list[int]:
        """The signals received since the last call, in arrival order."""
        received: list[int] = []
        while True:
            try:
                data = os.read(self.read_fd, 512)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            received.extend(data)
        return received

    def close(self) -> None:
        if self.write_fd >= 0:
            _signal.set_wakeup_fd(-1)
            os.close(self.read_fd)
            os.close(self.write_fd)
            self.read_fd = self.write_fd = -1
        for signum in self.installed:
            _signal.signal(signum, _signal.SIG_DFL)
        self.installed = []

    def reset_in_child(self, ignore: frozenset[int] = frozenset()) -> None:
        """Forget the parent's pipe and handlers (signals are blocked meanwhile).

        Each installed signal goes back to its default action, or to SIG_IGN
        if it is in ``ignore`` (one system call each, whatever the child does next).
        """
        _signal.set_wakeup_fd(-1)
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.write_fd = -1
        for signum in self.installed:
            _signal.signal(signum, _signal.SIG_IGN if signum in ignore else _signal.SIG_DFL)
        self.installed = []
        self.on_signal = None


def block(signums: tuple[int, ...] | list[int] = HANDLED) -> set[int]:
    """Block these signals; return the previous mask."""
    return _signal.pthread_sigmask(_signal.SIG_BLOCK, signums)


def restore(mask: set[int]) -> None:
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
