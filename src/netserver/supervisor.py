"""The forking parent that every pre-forking personality shares.

The parent binds, forks, then only supervises: it never reads a client
byte.  It waits in one event loop (``events.EventLoop``) on the signal
wakeup fd, one status pipe per child and the HUP check's output, with
every deadline (check_for_dead, boot backoff, the graceful stop, the
previous generation's grace) a timer on the same loop.

A personality decides the pool, not the mechanics: ``initial_pool_size()``
(read from the options at start, so a HUP, which re-execs, resets it),
``want_more()`` (how many server children to fork now), ``retire_one()``
(TTOU), ``child_main(kind, ready_write, client)`` (what a child runs) and
``start_timers()`` (its own periodic work).  ``self.pool_size`` is runtime
state the personality may move (TTIN/TTOU).  A child forked for one
connection (Fork) gets it from ``spawn(kind, client=...)``: the parent
accepted it and closes its own copy; the child closes the listeners at once.

A child reports READY on its pipe when it enters its loop and LEAVING when
it stops taking work (status.py); one that exits before READY is a boot
failure, respawned with backoff; ten in a row stop the server (exit 3)
rather than fork-looping, unless a previous generation is still serving,
which then keeps serving while the new one keeps being retried.
"""

from __future__ import annotations

import gc
import os
import signal
import sys

from . import daemon, restart, serialize, status
from .children import Child, ChildTable, describe_status
from .errors import BootFailure
from .events import Timer
from .listeners import Listener
from .server import Server, StopServer
from .signals import HANDLED, IGNORED, STOP_TOO, block, restore, signal_name
from .talk import ChildLinks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BOOT_FAILURE_LIMIT = 10
BACKOFF_CAP = 5.0
FAST_STOP_GRACE = 5.0  # INT: children abandon their work at once; KILL those that cannot
CHILD_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)  # on_child_signal: what each does
PARENT_DEATH_SIGNAL = int(signal.SIGHUP)  # a plain int: the enum member would be one more page a child writes
#: A child's kind -> its part in the process title (netserver: child [NAME]).
CHILD_TITLES = {"server": "child", "dequeue": "dequeue", "connection": "connection"}


class Supervisor(ChildLinks, Server):
    """A parent process that forks, watches and replaces children.

    Caller API (parent): ``spawn(kind, count)``, ``graceful_stop(signum,
    fast)``, ``self.children`` (ChildTable), ``self.scoreboard``,
    ``self.pool_size``.  Hooks for a personality: ``initial_pool_size``,
    ``want_more``, ``retire_one``, ``start_timers``, ``child_main`` (child).
    In a child: ``self.status`` writes its scoreboard slot, ``self.draining``
    says it should take no more work, ``self.parent_sock`` is its end of the
    child_communication socketpair (talk.py) where the personality has it.
    """

    title_role = "parent"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.children = ChildTable()
        self.scoreboard = status.Scoreboard()
        self.lock: serialize.AcceptLock | None = None
        self.parent_pid = 0
        self.pool_size = 0
        self.passthrough: tuple[int, ...] = ()
        self._parent_fds: set[int] = set()
        self._death_read = self._death_write = self._old_death_write = -1
        self._boot_failures = 0
        self._backoff: Timer | None = None  # set while boot failures hold spawning back
        self._kill_timer: Timer | None = None
        self._old_waiting = False  # a previous generation serves until this one is ready
        self._warned_threads: frozenset[str] = frozenset()
        self._child_ignores: frozenset[int] = frozenset()

    # ------------------------------------------------------------ policy hooks
    def initial_pool_size(self) -> int:
        raise NotImplementedError("a personality sets its pool size")

    def want_more(self) -> int:
        """How many server children to fork now."""
        return self.pool_size - self.children.serving()

    def retire_one(self) -> bool:
        """Ask one idle server child to leave (the scoreboard says which); False if none is idle."""
        for child in self.children:
            if child.kind == "server" and not child.leaving and child.booted:
                slot = self.scoreboard.read(child.slot)
                if slot is not None and slot.state == status.IDLE:
                    child.leaving = True
                    os.kill(child.pid, signal.SIGHUP)  # a pid from our own table, never from the board
                    return True
        return False

    def start_timers(self) -> None:
        """A personality's periodic work, scheduled on ``self.events``."""

    def child_main(self, kind: str, ready_write: int, client: Any = None) -> None:
        raise NotImplementedError("a personality says what its children run")

    # ------------------------------------------------------------ start-up
    def post_configure(self) -> None:
        super().post_configure()
        names = getattr(self.options, "sig_passthrough", ())  # declared by every forking personality
        self.passthrough = tuple(dict.fromkeys(getattr(signal, "SIG" + name) for name in names))

    def make_lock(self) -> serialize.AcceptLock:
        """The accept lock, made the same way at start-up and after a failed HUP re-exec."""
        identity = self.identity
        owner = (identity.uid, identity.gid) if identity and not identity.is_current() else None
        lock_file = getattr(self.options, "lock_file", None)  # declared where a lock can be chosen
        lock = serialize.make_lock(self.serialize_kind(), lock_file=lock_file, owner=owner,
                                   log=self.log, log_level=self.options.log_level)
        lock.prepare()
        return lock

    def serialize_kind(self) -> str:
        return "none"

    def post_bind(self) -> None:
        old = os.environ.get(restart.ENV_OLD_CHILDREN, "") if self.restarting else ""
        death = os.environ.get(restart.ENV_DEATH_FD, "") if self.restarting else ""
        board = os.environ.get(restart.ENV_SCOREBOARD_FD, "") if self.restarting else ""
        super().post_bind()
        self.parent_pid = os.getpid()
        self.isolate_forks()
        self.pool_size = self.initial_pool_size()
        self.lock = self.make_lock()
        self.log(3, "Setting up serialization via %s", self.lock.name)
        previous = [tuple(map(int, entry.split(":"))) for entry in old.split(",") if entry]
        if board.isdigit():
            self.scoreboard.adopt(int(board), {slot for _, slot in previous})
        else:
            self.scoreboard.create(max(2 * self.pool_size, 8))
        self._parent_fds.add(self.scoreboard.fd)  # a child keeps only the mapping, for its reporter
        if death.isdigit():
            # The previous generation watches this fd for our death: keep it open until they are gone.
            self._old_death_write = int(death)
            os.set_inheritable(self._old_death_write, False)
            self._parent_fds.add(self._old_death_write)
        for pid, slot in previous:
            self.children.add(Child(pid, "old", booted=True, slot=slot))
        self._old_waiting = bool(previous)
        self._death_read, self._death_write = os.pipe()
        self._parent_fds.add(self._death_write)
        self.signals.install(HANDLED + IGNORED + STOP_TOO + self.passthrough, None)
        # Decided here, once: a child ignores the operator signals the parent does not forward.
        self._child_ignores = frozenset(signum for signum in IGNORED if signum not in self.passthrough)
        # (The signal pipe is not among the parent's fds: a child's reset_in_child closes it, and a
        # second close would raise EBADF, an OSError made and dropped in every child's boot.)

    def loop(self) -> None:
        events = self.events
        events.watch(self.signals.fileno(), self.dispatch_signals)
        self._parent_fds.add(events.fileno())  # a child closes it with the others
        events.call_every(self.options.check_for_dead, self.check_for_dead)
        self.start_timers()
        gc.freeze()  # keep the parent's objects out of the children's collections: pages stay shared
        self.top_up()
        while self.children or not self.stopping:
            events.run_once()
            self.reap()
            self.top_up()
            self.idle_loop_hook()

    # ------------------------------------------------------------ keeping the pool
    def top_up(self) -> None:
        if self.stopping:
            return
        missing = self.want_more()
        if missing <= 0:
            return
        if self._backoff is None:
            self.spawn("server", missing)
        elif self._backoff.fired and not any(not c.booted for c in self.children if c.kind == "server"):
            # Backing off after a boot failure: one probe at a time, until one boots.
            self.spawn("server", 1)

    def check_for_dead(self) -> None:
        """A backstop for a lost SIGCHLD, or a child reaped by someone else: ask about each pid."""
        self.reap(full=True)
        for child in self.children:
            try:
                os.kill(child.pid, 0)
            except ProcessLookupError:
                self.forget(child, None)
        self.lock.sweep(set(self.children.pids()))

    def retire_old_generation(self) -> None:
        self._old_waiting = False
        count = self.children.count("old")
        if count:
            self.log(2, "Sending HUP to %d children of the previous generation", count)
            self.children.signal(signal.SIGHUP, "old")
            self.events.call_later(self.options.graceful_timeout, self._kill_old_generation)

    def _kill_old_generation(self) -> None:
        count = self.children.count("old")
        if count:
            self.log(1, "Killing %d children of the previous generation after graceful_timeout", count)
            self.children.signal(signal.SIGKILL, "old")

    # ------------------------------------------------------------ forking
    def spawn(self, kind: str, count: int = 1, client: Any = None) -> bool:
        """Fork ``count`` children of ``kind`` in one burst; False if a fork failed.

        ``client`` (one child): what it serves, accepted by the parent (a
        Connection, whose socket the parent closes once forked) or a UDP
        Listener the child receives one datagram from.

        The bookkeeping waits until every fork is done.  On CPython every
        page the parent writes after a fork is copied, and the child keeps
        the old copy to itself: Python work between forks (registering the
        previous child) would un-share its pages in every child.
        """
        self._warn_about_threads()
        pipes: list[tuple[int, int]] = []
        try:
            for _ in range(count):
                pipes.append(os.pipe() if kind == "server" else (-1, -1))
        except OSError as error:
            if not pipes:
                self.log(0, "cannot create a pipe for a new child: %s; retrying in 1 s", error.strerror)
                self._hold_spawning(1.0)
                return False
            # Out of descriptors part-way: fork as many as have a pipe.
            self.log(1, "cannot create more than %d pipes for new children: %s", len(pipes), error.strerror)
        slots = [self.scoreboard.claim() for _ in pipes]
        # Made here, not in the child: every function a child runs for the first time
        # costs it the pages that function touches.
        reporters = [self.scoreboard.reporter(slot) for slot in slots]
        self.open_links([ready_write for _, ready_write in pipes])  # child_communication only
        forked: list[int] = []
        failure = None
        if kind == "server":
            self.run_n_children_hook(len(pipes))
        # The children's title is the parent's when it forks: set for the burst, so that no child
        # writes its own (each page a child writes is one it no longer shares).
        self.set_title(CHILD_TITLES[kind])
        mask = block(self.signals.installed)
        for (_, ready_write), reporter in zip(pipes, reporters, strict=True):
            self.pre_fork_hook()
            try:
                pid = os.fork()
            except OSError as error:
                failure = error
                break
            if pid == 0:
                self._become_child(kind, pipes, ready_write, reporter, client)
            forked.append(pid)
        restore(mask)
        self.set_title(self.title_role)
        if client is not None and not isinstance(client, Listener):
            client.sock.close()  # the child has it (or the fork failed): the parent never reads a client byte
        for pid, (ready_read, ready_write), slot in zip(forked, pipes, slots, strict=False):
            child = Child(pid, kind, ready_read, slot=slot)
            self.children.add(child)
            self.scoreboard.assign(slot, pid)
            self.attach_link(child, ready_write)
            if ready_write >= 0:
                os.close(ready_write)
                os.set_blocking(ready_read, False)
                self._parent_fds.add(ready_read)
                self.events.watch(ready_read, lambda child=child: self._child_reported(child))
            self.log(4, "Child Preforked (%d) %s", pid, kind)
        for (ready_read, ready_write), slot in list(zip(pipes, slots, strict=True))[len(forked):]:
            self.scoreboard.release(slot)
            self.attach_link(None, ready_write)
            for fd in (ready_read, ready_write):
                if fd >= 0:
                    os.close(fd)
        if failure is not None:
            self.log(0, "fork failed: %s; retrying in 1 s", failure.strerror)
            self._hold_spawning(1.0)
            return False
        return True

    def _hold_spawning(self, delay: float) -> None:
        # Until the timer fires top_up forks nothing; after it, one probe at a time.
        if self._backoff is not None:
            self._backoff.cancel()
        self._backoff = self.events.call_later(delay, self.top_up)

    def _become_child(self, kind: str, pipes: list[tuple[int, int]], ready_write: int,
                      reporter: status.Reporter, client: Any) -> None:
        """In a new child: run it, then leave the process; never returns."""
        exit_status = 1
        try:
            for pair in pipes:  # this burst's other pipes, and our own read end
                for fd in pair:
                    if fd >= 0 and fd != ready_write:
                        os.close(fd)
            exit_status = self.run_child(kind, ready_write, reporter, client)
        except SystemExit as leaving:
            code = leaving.code
            exit_status = code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException:
            self.log(0, "child %d failed", os.getpid(), exc_info=True)
        finally:
            os._exit(exit_status)

    def run_child(self, kind: str, ready_write: int, reporter: status.Reporter, client: Any = None) -> int:
        """Everything a child does before and after its personality's work; the caller os._exits."""
        self.is_child = True
        self.is_dequeue = kind == "dequeue"
        self.signals.reset_in_child(self._child_ignores)
        for fd in (*self._parent_fds, *self.ready_fds):
            try:
                os.close(fd)
            except OSError:
                pass
        self._parent_fds = set()
        self.ready_fds = []
        if client is not None:
            # A child forked for one connection never accepts: the listeners stay the parent's
            # (a UDP child keeps the one its datagram waits on, to receive and answer it).
            for listener in self.listeners:
                if listener is not client:
                    listener.close()
        self.take_link(ready_write)
        # self.events and self.children stay as the parent left them, unused here: emptying
        # them would touch every object they hold, and each page written is a page this
        # child no longer shares (about 70 KiB per child, measured).  The epoll fd was closed
        # with the parent's other fds above.
        self.serves_clients = True
        if self.pid_file is not None:
            self.pid_file.close_in_child()
        self.status = reporter
        if self.is_dequeue:
            self.status.state(status.DEQUEUE)
            self.lock.close_in_child()
        else:
            self.lock.child_init()
        daemon.drop_privileges(self.identity, self.options.chroot)
        daemon.set_parent_death_signal(PARENT_DEATH_SIGNAL)
        if os.getppid() != self.parent_pid:
            return 0
        self.signals.install(CHILD_SIGNALS, self.on_child_signal)
        self.lock.wakeup_fd = self.signals.read_fd
        restore(set())
        try:
            self.child_init_hook()
            self.child_main(kind, ready_write, client)
        except StopServer:
            pass
        finally:
            self.status.state(status.LEAVING_STATE)
            self.close_listeners()
            self.child_finish_hook()
        return 0

    def on_child_signal(self, signum: int) -> None:
        """Python-level handler in a child: record; act at once only while a request runs."""
        self.draining = True
        if signum == signal.SIGHUP:
            if self._in_request:
                self.close_listeners()  # refuse new connections now; the kernel keeps the parent's
                self.close_idle_client()
        else:
            self._stop_requested = True
            if self._in_request:
                raise StopServer(signum)

    # ------------------------------------------------------------ children's reports and exits
    def _child_reported(self, child: Child) -> None:
        try:
            data = os.read(child.ready_fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # Its write end closed: the child is exiting (the kernel closes a dying
            # process's files before it becomes a zombie and SIGCHLD is sent).  Marked
            # leaving, a booted server child is replaced by the top_up that follows.  One
            # that closed the pipe itself and lives on is told to finish and go (HUP; the
            # pid is ours and not yet reaped), so the pool comes back to its size.
            if child.booted and child.kind == "server" and not child.leaving:
                child.leaving = True
                os.kill(child.pid, signal.SIGHUP)
            self._close_ready(child)
            return
        if status.READY in data and not child.booted:
            child.booted = True
            self.scoreboard.booted(child.slot)
            self._boot_failures = 0
            if self._backoff is not None:
                self._backoff.cancel()
                self._backoff = None
            # A child can report after a stop began (the listeners are closed then): nothing to announce.
            if not self.stopping and self.children.serving() >= self.pool_size and \
                    all(c.booted for c in self.children if c.kind == "server"):
                self.notify_ready()
                if self._old_waiting:
                    self.retire_old_generation()
        if status.LEAVING in data:
            child.leaving = True  # top_up forks its replacement now, before it exits

    def _close_ready(self, child: Child) -> None:
        if child.ready_fd >= 0:
            self.events.unwatch(child.ready_fd)
            os.close(child.ready_fd)
            self._parent_fds.discard(child.ready_fd)
            child.ready_fd = -1

    def reap(self, full: bool = False) -> None:
        for child, exit_status in self.children.reap(full or self.stopping):
            self.forget(child, exit_status)

    def forget(self, child: Child, exit_status: int | None) -> None:
        self.delete_child_hook(child.pid)
        self.children.by_pid.pop(child.pid, None)
        if not child.booted and child.ready_fd >= 0:
            # The child may have reported ready, served and exited before the
            # selector showed us its byte (max_requests 1): read it now.
            self._child_reported(child)
        self._close_ready(child)
        self.close_link(child)
        self.scoreboard.release(child.slot)
        self.lock.child_lost(child.pid)
        if child.kind == "old" and not self.children.count("old") and self._old_death_write >= 0:
            os.close(self._old_death_write)  # the previous generation is gone: nobody watches it
            self._parent_fds.discard(self._old_death_write)
            self._old_death_write = -1
        if child.kind != "server" or child.booted or self.stopping:
            if exit_status and child.kind in ("server", "connection") and not self.stopping:
                self.log(1, "Child %d exited abnormally: %s", child.pid, describe_status(exit_status))
            return
        self._boot_failures += 1
        delay = min(0.1 * 2 ** (self._boot_failures - 1), BACKOFF_CAP)
        self.log(1, "Child %d failed to boot (%s); %d in a row, next try in %.1f s", child.pid,
                 describe_status(exit_status), self._boot_failures, delay)
        if self._boot_failures >= BOOT_FAILURE_LIMIT:
            if not self.children.count("old"):
                raise BootFailure(f"children failed to boot {self._boot_failures} times in a row; "
                                  "see the log for their errors")
            if self._boot_failures == BOOT_FAILURE_LIMIT:
                self.log(0, "The new generation cannot boot; the previous one keeps serving while it is retried")
        self._hold_spawning(delay)

    def _warn_about_threads(self) -> None:
        # Threads started through threading are the ones a user hook makes;
        # importing threading here would itself cost every child its at-fork hook.
        threading = sys.modules.get("threading")
        if threading is None or threading.active_count() <= 1:
            return
        names = frozenset(t.name for t in threading.enumerate() if t is not threading.main_thread())
        if names != self._warned_threads:
            self._warned_threads = names
            self.log(1, "Forking while other threads run (%s): a child may deadlock on their locks",
                     ", ".join(sorted(names)))

    # ------------------------------------------------------------ stopping
    def graceful_stop(self, signum: int, fast: bool = False) -> None:
        """The one stop: refuse new work, tell the children, KILL what is left at the deadline.

        Graceful (TERM, QUIT): children get HUP, finish what is in flight and
        close idle connections.  Fast (INT): children get TERM and abandon
        their work at once.  The loop keeps running until the last child is
        reaped; a second, fast stop during a graceful one shortens it.
        """
        if self.stopping and not fast:
            return
        if not self.stopping:
            self.begin_close()  # pre_server_close_hook, before any child is told (Net::Server's order)
            self.log(2, "Received %s: stopping %d children%s", signal_name(signum), len(self.children),
                     " (fast)" if fast else "")
        self.stopping = True
        self.restart.cancel()
        self.close_listeners()
        self.children.signal(signal.SIGTERM if fast else signal.SIGHUP)
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        grace = min(self.options.graceful_timeout, FAST_STOP_GRACE) if fast else self.options.graceful_timeout
        self._kill_timer = self.events.call_later(grace, self._kill_remaining)

    def _kill_remaining(self) -> None:
        if len(self.children):
            self.log(1, "graceful_timeout expired: killing %d children", len(self.children))
            self.children.signal(signal.SIGKILL)

    def handle_sigterm(self, signum: int) -> None:
        self.graceful_stop(signum)

    handle_sigquit = handle_sigterm

    def handle_sigint(self, signum: int) -> None:
        self.graceful_stop(signum, fast=True)

    def handle_sigchld(self, signum: int) -> None:
        self.reap()

    def dispatch_signals(self) -> None:
        for signum in self.signals.take():
            if signum in self.passthrough:
                self.children.signal(signum, "server", "dequeue", "connection")
            self.dispatch_signal(signum)

    def stop_children(self) -> None:
        """From server_close: the loop's stop when the loop itself could not finish (an error)."""
        if len(self.children):
            if not self.stopping:
                self.graceful_stop(signal.SIGTERM)
            while len(self.children):
                # SIGCHLD wakes the wait; the timeout is only a backstop for a lost wakeup.
                self.events.run_once(1.0)
                self.reap(full=True)
        if self.lock is not None:
            self.lock.close()
        self.scoreboard.close()

    # ------------------------------------------------------------ HUP hand-over
    def restart_env(self) -> dict[str, str]:
        if not self.options.leave_children_open_on_hup:
            self.children.signal(signal.SIGTERM)
        # Every child goes on the list, TERMed or not: the new image is still their
        # parent and must reap them, or they would linger as zombies.
        pids = ",".join(f"{child.pid}:{child.slot}" for child in self.children)
        os.set_inheritable(self._death_write, True)
        self.lock.close()
        return {restart.ENV_OLD_CHILDREN: pids, restart.ENV_DEATH_FD: str(self._death_write),
                restart.ENV_SCOREBOARD_FD: self.scoreboard.export()}

    def restart_failed(self) -> None:
        os.set_inheritable(self._death_write, False)
        os.set_inheritable(self.scoreboard.fd, False)
        self.lock = self.make_lock()
        self.log(1, "Serialization restarted; current children keep their old lock until they are recycled")
