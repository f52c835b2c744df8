"""PreForkSimple: exactly max_servers children, each serving up to max_requests.

The parent binds, forks the pool and then only supervises: it never reads a
client byte.  It waits in one selector on the signal wakeup fd, one "ready"
pipe per child and the HUP check's output, so a child that exits is
replaced as soon as SIGCHLD arrives (Net::Server's parent could sleep up to
10 s through the race between its signal check and its select).

A child reports "ready" on its pipe when it first enters its accept loop.
One that exits before that is a boot failure: those are respawned with
backoff, and ten in a row with no successful boot stop the server (exit 3)
rather than fork-looping forever.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

from .. import restart, serialize
from ..children import Child, ChildTable, describe_status
from ..errors import BootFailure, ConfigError
from ..options import PREFORK_SIMPLE_OPTIONS
from ..server import Server
from ..signals import HANDLED, block, restore, signal_name
from .prefork_child import PreForkChild

BOOT_FAILURE_LIMIT = 10


class PreForkSimple(PreForkChild, Server):
    """A parent and a fixed pool of pre-forked children.

    Parent signals: TERM, INT, QUIT stop gracefully (listeners closed,
    children HUPed, killed after graceful_timeout); HUP validates and
    re-execs, keeping the sockets; CHLD reaps; PIPE ignored; the
    sig_passthrough signals are forwarded.  Child signals: HUP finishes the
    current connection and exits (at once when idle); TERM, INT, QUIT run
    child_finish_hook and exit at once.

    Hooks in addition to Server's: ``child_init_hook()`` and
    ``child_finish_hook()`` (each child), ``dequeue()`` / ``run_dequeue()``
    (dequeue children; ``self.is_dequeue`` tells a hook where it runs).
    """

    personality = "PreForkSimple"
    declared_options = Server.declared_options + PREFORK_SIMPLE_OPTIONS

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.children = ChildTable()
        self.passthrough: tuple[int, ...] = ()
        self.lock: serialize.AcceptLock | None = None
        self.parent_pid = 0
        self._parent_fds: set[int] = set()
        self._death_read = self._death_write = self._old_death_write = -1
        self._boot_failures = 0
        self._next_spawn = 0.0
        self._stop_deadline = 0.0
        self._old_deadline = 0.0
        self._old_hup_at = 0.0
        self._timers: dict[str, float] = {}
        self._warned_threads: frozenset[str] = frozenset()
        self._hup = self._parent_gone = False

    # ------------------------------------------------------------ configuration
    def post_configure(self) -> None:
        super().post_configure()
        options = self.options
        self.passthrough = tuple(dict.fromkeys(getattr(signal, "SIG" + name) for name in options.sig_passthrough))
        if options.check_for_dequeue is not None and not self._has_dequeue():
            raise ConfigError("check_for_dequeue", options.check_for_dequeue,
                              self.option_origins["check_for_dequeue"],
                              "is set but neither dequeue() nor run_dequeue() is overridden")

    def _has_dequeue(self) -> bool:
        cls = type(self)
        return cls.dequeue is not PreForkSimple.dequeue or cls.run_dequeue is not PreForkSimple.run_dequeue

    def serialize_kind(self) -> str:
        kind = self.options.serialize
        if kind == "auto":
            return "flock" if len(self.listeners) > 1 else "none"
        return kind

    # ------------------------------------------------------------ parent start-up
    def post_bind(self) -> None:
        old = os.environ.get(restart.ENV_OLD_CHILDREN, "") if self.restarting else ""
        death = os.environ.get(restart.ENV_DEATH_FD, "") if self.restarting else ""
        super().post_bind()
        self.parent_pid = os.getpid()
        owner = (self.identity.uid, self.identity.gid) if self.identity and not self.identity.is_current() else None
        self.lock = serialize.make_lock(self.serialize_kind(), lock_file=self.options.lock_file, owner=owner,
                                        log=self.log, log_level=self.options.log_level)
        self.lock.prepare()
        self.log(3, "Setting up serialization via %s", self.lock.name)
        if death.isdigit():
            # The previous generation watches this fd for our death: keep it open until they are gone.
            self._old_death_write = int(death)
            os.set_inheritable(self._old_death_write, False)
            self._parent_fds.add(self._old_death_write)
        for pid in filter(str.isdigit, old.split(",")):
            self.children.add(Child(int(pid), "old", booted=True))
        self._death_read, self._death_write = os.pipe()
        self._parent_fds.add(self._death_write)
        self.signals.install(HANDLED + self.passthrough, None)
        self._parent_fds.update((self.signals.read_fd, self.signals.write_fd))

    def loop(self) -> None:
        self.watch_fd(self.signals.fileno(), self.dispatch_signals)
        self._parent_fds.add(self.selector.fileno())
        now = time.monotonic()
        self._timers = {"dead": now + self.options.check_for_dead}
        if self.options.check_for_dequeue is not None:
            self._timers["dequeue"] = now + self.options.check_for_dequeue
        if self.children.count("old"):
            self._old_hup_at = now + 5.0
        gc.freeze()  # keep the parent's objects out of the children's collections: pages stay shared
        self.top_up()
        while True:
            self.run_events(self._next_wait())
            self.reap(full=self.stopping)
            if self.stopping:
                if not len(self.children):
                    break
                if time.monotonic() >= self._stop_deadline:
                    self.log(1, "graceful_timeout expired: killing %d children", len(self.children))
                    self.children.signal(signal.SIGKILL)
                    self._stop_deadline = time.monotonic() + 3600
                continue
            self.run_timers()
            self.top_up()

    def _next_wait(self) -> float:
        deadlines = list(self._timers.values())
        for deadline in (self._next_spawn, self._old_hup_at, self._old_deadline):
            if deadline:
                deadlines.append(deadline)
        if self.stopping:
            deadlines.append(self._stop_deadline)
        if self._check is not None:
            deadlines.append(self._check.started + restart.CHECK_TIMEOUT)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0

    def run_timers(self) -> None:
        now = time.monotonic()
        if now >= self._timers["dead"]:
            self._timers["dead"] = now + self.options.check_for_dead
            self.check_for_dead()
        if "dequeue" in self._timers and now >= self._timers["dequeue"]:
            self._timers["dequeue"] = now + self.options.check_for_dequeue
            if self.children.count("dequeue") < (self.options.max_dequeue or 1):
                self.spawn("dequeue")
        if self._old_hup_at and now >= self._old_hup_at:
            self.retire_old_generation()
        if self._old_deadline and now >= self._old_deadline:
            self._old_deadline = 0.0
            if self.children.count("old"):
                self.log(1, "Killing %d children of the previous generation after graceful_timeout",
                         self.children.count("old"))
                self.children.signal(signal.SIGKILL, "old")
        restart.expire(self)

    def check_for_dead(self) -> None:
        """A backstop for a lost SIGCHLD, or a child reaped by someone else: ask about each pid."""
        self.reap(full=True)
        for child in self.children:
            try:
                os.kill(child.pid, 0)
            except ProcessLookupError:
                self.forget(child, None)
        self.lock.sweep(set(self.children.pids()))

    def top_up(self) -> None:
        if self.stopping or time.monotonic() < self._next_spawn:
            return
        missing = self.options.max_servers - self.children.count("server")
        if missing <= 0:
            return
        if not self._next_spawn:
            self.spawn("server", missing)
        elif not any(not child.booted for child in self.children if child.kind == "server"):
            # Backing off after a boot failure: one probe at a time, until one boots.
            self.spawn("server", 1)

    def retire_old_generation(self) -> None:
        self._old_hup_at = 0.0
        if self.children.count("old"):
            self.log(2, "Sending HUP to %d children of the previous generation", self.children.count("old"))
            self.children.signal(signal.SIGHUP, "old")
            self._old_deadline = time.monotonic() + self.options.graceful_timeout

    # ------------------------------------------------------------ children
    def spawn(self, kind: str, count: int = 1) -> bool:
        """Fork ``count`` children of ``kind`` in one burst; False if a fork failed.

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
                self._next_spawn = time.monotonic() + 1.0
                return False
            # Out of descriptors part-way: fork as many as have a pipe.
            self.log(1, "cannot create more than %d pipes for new children: %s", len(pipes), error.strerror)
        forked: list[int] = []
        failure = None
        mask = block(self.signals.installed)
        for _, ready_write in pipes:
            try:
                pid = os.fork()
            except OSError as error:
                failure = error
                break
            if pid == 0:
                self._become_child(kind, pipes, ready_write)
            forked.append(pid)
        restore(mask)
        for pid, (ready_read, ready_write) in zip(forked, pipes, strict=False):
            child = Child(pid, kind, ready_read)
            self.children.add(child)
            if ready_write >= 0:
                os.close(ready_write)
                os.set_blocking(ready_read, False)
                self._parent_fds.add(ready_read)
                self.watch_fd(ready_read, lambda child=child: self._child_reported(child))
            self.log(4, "Child Preforked (%d) %s", pid, kind)
        for pair in pipes[len(forked):]:
            for fd in pair:
                if fd >= 0:
                    os.close(fd)
        if failure is not None:
            self.log(0, "fork failed: %s; retrying in 1 s", failure.strerror)
            self._next_spawn = time.monotonic() + 1.0
            return False
        return True

    def _become_child(self, kind: str, pipes: list[tuple[int, int]], ready_write: int) -> None:
        """In a new child: run it, then leave the process; never returns."""
        status = 1
        try:
            for pair in pipes:  # this burst's other pipes, and our own read end
                for fd in pair:
                    if fd >= 0 and fd != ready_write:
                        os.close(fd)
            status = self.run_child(kind, ready_write)
        except SystemExit as leaving:
            code = leaving.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException:
            self.log(0, "child %d failed", os.getpid(), exc_info=True)
        finally:
            os._exit(status)

    def _child_reported(self, child: Child) -> None:
        try:
            data = os.read(child.ready_fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if not child.booted:
                child.booted = True
                self._boot_failures = 0
                self._next_spawn = 0.0
                if all(c.booted for c in self.children if c.kind == "server") and \
                        self.children.count("server") >= self.options.max_servers:
                    self.notify_ready()
                    if self._old_hup_at:
                        self.retire_old_generation()
            return
        self._close_ready(child)

    def _close_ready(self, child: Child) -> None:
        if child.ready_fd >= 0:
            self.unwatch_fd(child.ready_fd)
            os.close(child.ready_fd)
            self._parent_fds.discard(child.ready_fd)
            child.ready_fd = -1

    def reap(self, full: bool = False) -> None:
        for child, status in self.children.reap(full):
            self.forget(child, status)

    def forget(self, child: Child, status: int | None) -> None:
        self.children.by_pid.pop(child.pid, None)
        if not child.booted and child.ready_fd >= 0:
            # The child may have reported ready, served and exited before the
            # selector showed us its byte (max_requests 1): read it now.
            self._child_reported(child)
        self._close_ready(child)
        self.lock.child_lost(child.pid)
        if child.kind == "old" and not self.children.count("old") and self._old_death_write >= 0:
            os.close(self._old_death_write)  # the previous generation is gone: nobody watches it
            self._parent_fds.discard(self._old_death_write)
            self._old_death_write = -1
        if child.kind != "server" or child.booted or self.stopping:
            if status and child.kind == "server" and not self.stopping:
                self.log(1, "Child %d exited abnormally: %s", child.pid, describe_status(status))
            return
        self._boot_failures += 1
        delay = min(0.1 * 2 ** (self._boot_failures - 1), 5.0)
        self.log(1, "Child %d failed to boot (%s); %d in a row, next try in %.1f s", child.pid,
                 describe_status(status), self._boot_failures, delay)
        if self._boot_failures >= BOOT_FAILURE_LIMIT:
            raise BootFailure(f"children failed to boot {self._boot_failures} times in a row; "
                              "see the log for their errors")
        self._next_spawn = time.monotonic() + delay

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

    # ------------------------------------------------------------ parent signals
    def handle_sigterm(self, signum: int) -> None:
        if self.stopping:
            return
        self.log(2, "Received %s: stopping %d children", signal_name(signum), len(self.children))
        self.stopping = True
        self.close_listeners()
        self.children.signal(signal.SIGHUP)
        self._stop_deadline = time.monotonic() + self.options.graceful_timeout

    handle_sigint = handle_sigquit = handle_sigterm

    def handle_sigchld(self, signum: int) -> None:
        self.reap()

    def dispatch_signals(self) -> None:
        for signum in self.signals.take():
            if signum in self.passthrough:
                self.children.signal(signum, "server", "dequeue")
            handler = getattr(self, "handle_" + signal_name(signum).lower(), None)
            if handler is not None:
                handler(signum)

    def restart_env(self) -> dict[str, str]:
        if not self.options.leave_children_open_on_hup:
            self.children.signal(signal.SIGTERM)
        # Every child goes on the list, TERMed or not: the new image is still their
        # parent and must reap them, or they would linger as zombies.
        pids = ",".join(str(pid) for pid in self.children.pids())
        os.set_inheritable(self._death_write, True)
        self.lock.close()
        return {restart.ENV_OLD_CHILDREN: pids, restart.ENV_DEATH_FD: str(self._death_write)}

    def restart_failed(self) -> None:
        os.set_inheritable(self._death_write, False)
        self.lock = serialize.make_lock(self.serialize_kind(), lock_file=self.options.lock_file, log=self.log)
        self.lock.prepare()
        self.log(1, "Serialization restarted; current children keep their old lock until they are recycled")

    def stop_children(self) -> None:
        if not len(self.children):
            self._close_lock()
            return
        if not self.stopping:
            self.handle_sigterm(signal.SIGTERM)
        deadline = self._stop_deadline
        while len(self.children):
            self.reap(full=True)
            if time.monotonic() >= deadline:
                self.children.signal(signal.SIGKILL)
                deadline = time.monotonic() + 3600
            time.sleep(0.01)
        self._close_lock()

    def _close_lock(self) -> None:
        if self.lock is not None:
            self.lock.close()
