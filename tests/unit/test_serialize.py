"""Accept-serialization strategies, exercised by real forked processes.

Every child ends in ``os._exit`` inside ``finally`` and arms ``alarm()`` so a
hung one dies on its own; every wait has a deadline; the ``children`` fixture
reaps (killing first if need be) whatever a test left and then asserts that
this process has no child left at all.
"""

from __future__ import annotations

import errno
import mmap
import os
import signal
import stat
import struct
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator

import pytest

from netserver.errors import ConfigError, ExitCode, StartupError
from netserver.serialize import AcceptLock, FlockLock, LockGone, NoLock, PipeLock, SemaphoreLock, make_lock
from support import needs_root

CHILD_ALARM = 20  # seconds before a forked test child is killed by SIGALRM
WAIT = 10.0  # the default deadline for a child to exit
LOCKING = ["flock", "semaphore", "pipe"]
NOBODY = 65534


class Board:
    """Integer slots in a shared anonymous page that forked children write and the test reads."""

    def __init__(self, slots: int = 32) -> None:
        self._page = mmap.mmap(-1, 8 * slots, flags=mmap.MAP_SHARED)

    def __getitem__(self, i: int) -> int:
        return struct.unpack_from("q", self._page, 8 * i)[0]

    def __setitem__(self, i: int, value: int) -> None:
        struct.pack_into("q", self._page, 8 * i, value)


class Children:
    """Forks test children and reaps them with deadlines."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.groups: list[int] = []
        self.adopted: list[int] = []  # grandchildren, ours only if we are a child subreaper

    def fork(self, body: Callable[[], int | None], *, own_group: bool = False) -> int:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                signal.alarm(CHILD_ALARM)
                if own_group:
                    os.setpgid(0, 0)
                status = body() or 0
            except BaseException:  # noqa: BLE001 -- a forked child reports any failure, then exits
                traceback.print_exc()
            finally:
                os._exit(status)
        self.pids.append(pid)
        if own_group:
            self.groups.append(pid)
        return pid

    def wait(self, pid: int, timeout: float = WAIT) -> int:
        """Reap ``pid``; its exit code, or minus the signal that killed it."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids.remove(pid)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                self.pids.remove(pid)
                pytest.fail(f"child {pid} did not exit within {timeout} s")
            time.sleep(0.002)

    def kill(self, pid: int) -> int:
        os.kill(pid, signal.SIGKILL)
        return self.wait(pid)

    def adopt(self, pid: int) -> None:
        """Track a grandchild, which is reparented to us when the conftest made us a subreaper."""
        self.adopted.append(pid)

    def gone(self, pid: int) -> bool:
        """True once ``pid`` has exited: reaped here if it is ours, else gone or a zombie elsewhere."""
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return gone_elsewhere(pid)
        return done == pid

    def cleanup(self) -> None:
        for pid in self.adopted:
            if pid in my_children():  # never signal a pid that may have been recycled
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        self.pids.clear()


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def my_children() -> list[int]:
    me, found = str(os.getpid()), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                found.append(int(entry))
    return found


def gone_elsewhere(pid: int) -> bool:
    """True once ``pid``, not our child, has exited (a zombie of another reaper counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def semaphores() -> dict[int, tuple[int, int, int, int]]:
    """Semaphore id -> (uid, gid, cuid, cgid), from /proc/sysvipc/sem."""
    with open("/proc/sysvipc/sem") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return {int(r[1]): (int(r[4]), int(r[5]), int(r[6]), int(r[7])) for r in rows if r}


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.cleanup()
    assert my_children() == [], "a test left a child process behind"


@pytest.fixture
def make() -> Iterator[Callable[..., AcceptLock]]:
    """make(kind, **options): make_lock() + prepare(), closed at teardown."""
    made: list[AcceptLock] = []

    def _make(kind: str, **options: object) -> AcceptLock:
        lock = make_lock(kind, **options)  # type: ignore[arg-type]
        lock.prepare()
        made.append(lock)
        return lock

    yield _make
    semids = [lock.semaphore_id for lock in made if isinstance(lock, SemaphoreLock)]
    for lock in made:
        lock.close()
    assert not set(semids) & set(semaphores()), "a semaphore outlived close()"


def contend(children: Children, lock: AcceptLock, *, rounds: int, hold: float, init: bool = True) -> int:
    """Four children each take the lock ``rounds`` times; returns how often one saw another inside.

    Each child flags only its own slot and then looks at the others', so no
    read-modify-write race on a shared counter can hide an overlap.
    """
    n = 4
    board = Board()  # [0, n): inside; [n, 2n): overlaps seen; [2n, 3n): rounds done

    def body(i: int) -> int:
        if init:
            lock.child_init()
        for _ in range(rounds):
            while not lock.acquire():
                pass
            board[i] = 1
            if any(board[j] for j in range(n) if j != i):
                board[n + i] += 1
            time.sleep(hold)
            if any(board[j] for j in range(n) if j != i):
                board[n + i] += 1
            board[i] = 0
            board[2 * n + i] += 1
            lock.release()
        lock.close_in_child()
        return 0

    pids = [children.fork(lambda i=i: body(i)) for i in range(n)]
    assert [children.wait(pid, 30) for pid in pids] == [0] * n
    assert sum(board[2 * n + i] for i in range(n)) == n * rounds
    return sum(board[n + i] for i in range(n))


# -- the factory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fcntl", "", "posixsem", "flock "])
def test_unknown_kind_is_a_config_error(kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_lock(kind)
    assert info.value.option == "serialize"
    assert info.value.exit_code == ExitCode.USAGE
    assert str(info.value).startswith("serialize: ")
    assert "is not one of flock, semaphore, pipe, none" in str(info.value)


@pytest.mark.parametrize(
    ("kind", "cls"), [("flock", FlockLock), ("SEMAPHORE", SemaphoreLock), ("pipe", PipeLock), ("none", NoLock)]
)
def test_factory_returns_the_named_strategy(kind: str, cls: type) -> None:
    lock = make_lock(kind)
    assert type(lock) is cls
    assert lock.name == kind.lower()


def test_none_is_a_no_op() -> None:
    lock = make_lock("none")
    lock.prepare()
    lock.child_init()
    assert lock.acquire() is True
    lock.release()
    lock.child_lost(1)
    lock.sweep(set())
    lock.parent_gone()
    lock.close_in_child()
    lock.close()


def test_trace_at_level_4_only(make: Callable[..., AcceptLock]) -> None:
    seen: list[tuple[object, ...]] = []
    lock = make("pipe", log=lambda *args: seen.append(args), log_level=4)
    assert lock.acquire()
    lock.release()
    assert [(level, fmt % tuple(args)) for level, fmt, *args in seen] == [
        (4, "accept lock (pipe) acquired"),
        (4, "accept lock (pipe) released"),
    ]
    seen.clear()
    quiet = make("pipe", log=lambda *args: seen.append(args), log_level=3)
    assert quiet.acquire()
    quiet.release()
    assert seen == []


# -- exclusion -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", LOCKING)
def test_exclusion(children: Children, make: Callable[..., AcceptLock], kind: str) -> None:
    lock = make(kind)
    assert contend(children, lock, rounds=200, hold=0.0002) == 0


def test_exclusion_with_given_lock_file(children: Children, make: Callable[..., AcceptLock], tmp_path) -> None:
    path = tmp_path / "accept.lock"
    lock = make("flock", lock_file=str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert contend(children, lock, rounds=200, hold=0.0002) == 0
    lock.close()
    assert path.exists(), "a given lock_file is never unlinked"


def test_none_lets_children_overlap(children: Children, make: Callable[..., AcceptLock]) -> None:
    # The negative control: the harness does see overlap when nothing excludes.
    assert contend(children, make("none"), rounds=20, hold=0.005) > 0


def test_flock_on_the_inherited_description_excludes_nothing(
    children: Children, make: Callable[..., AcceptLock]
) -> None:
    # Why child_init reopens: skip it and every child shares one description.
    assert contend(children, make("flock"), rounds=20, hold=0.005, init=False) > 0


# -- a holder killed with kill -9 ----------------------------------------------------------------


def hold_forever(lock: AcceptLock, board: Board, slot: int) -> Callable[[], int]:
    def body() -> int:
        lock.child_init()
        assert lock.acquire()
        board[slot] = os.getpid()
        while True:
            time.sleep(1)

    return body


def acquire_once(lock: AcceptLock, board: Board, ready: int, got: int) -> Callable[[], int]:
    def body() -> int:
        lock.child_init()
        board[ready] = 1
        while not lock.acquire():
            pass
        board[got] = 1
        lock.release()
        lock.close_in_child()
        return 0

    return body


@pytest.mark.parametrize("kind", LOCKING)
def test_holder_killed_does_not_wedge(children: Children, make: Callable[..., AcceptLock], kind: str) -> None:
    lock, board = make(kind), Board()
    holder = children.fork(hold_forever(lock, board, 0))
    assert wait_until(lambda: board[0] == holder, 5)
    waiter = children.fork(acquire_once(lock, board, 1, 2))
    assert wait_until(lambda: board[1] == 1, 5)
    time.sleep(0.3)
    assert board[2] == 0, "the waiter got the lock while the holder held it"

    assert children.kill(holder) == -signal.SIGKILL
    lock.child_lost(holder)  # what the parent does after reaping any child
    killed = time.monotonic()
    assert wait_until(lambda: board[2] == 1, 1.0), f"{kind}: nobody acquired within 1 s of the kill"
    assert time.monotonic() - killed < 1.0
    assert children.wait(waiter) == 0


# -- signals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", LOCKING)
def test_signal_interrupts_acquire(children: Children, make: Callable[..., AcceptLock], kind: str) -> None:
    lock, board = make(kind), Board()
    # board: 0 holder pid, 1 release now, 2 waiter ready, 3 first acquire (1 False, 2 True),
    # 4 signals recorded, 5 second acquire returned True

    def holder_body() -> int:
        lock.child_init()
        assert lock.acquire()
        board[0] = os.getpid()
        while not board[1]:
            time.sleep(0.005)
        lock.release()
        return 0

    def waiter_body() -> int:
        recorded: list[int] = []
        signal.signal(signal.SIGUSR1, lambda signum, frame: recorded.append(signum))
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        if kind == "pipe":
            lock.wakeup_fd = wake_r  # flock and semaphore get EINTR without it
        lock.child_init()
        board[2] = 1
        board[3] = 2 if lock.acquire() else 1
        os.read(wake_r, 100)  # the caller drains the wakeup fd
        board[4] = len(recorded)
        board[5] = int(lock.acquire())  # the token or lock was not lost to the signal
        lock.release()
        return 0

    holder = children.fork(holder_body)
    assert wait_until(lambda: board[0] == holder, 5)
    waiter = children.fork(waiter_body)
    assert wait_until(lambda: board[2] == 1, 5)
    time.sleep(0.3)  # let the waiter block inside acquire()
    assert board[3] == 0
    os.kill(waiter, signal.SIGUSR1)
    assert wait_until(lambda: board[3] != 0, 2), "acquire() did not return after the signal"
    assert board[3] == 1, "acquire() returned True while another child held the lock"
    assert wait_until(lambda: board[4] == 1, 2)
    board[1] = 1
    assert children.wait(holder) == 0
    assert children.wait(waiter) == 0
    assert board[5] == 1


@pytest.mark.parametrize("kind", LOCKING)
def test_readable_wakeup_fd_returns_false_without_taking(make: Callable[..., AcceptLock], kind: str) -> None:
    lock = make(kind)
    lock.child_init()
    wake_r, wake_w = os.pipe()
    try:
        os.write(wake_w, b"\0")
        lock.wakeup_fd = wake_r
        assert lock.acquire() is False
        assert os.read(wake_r, 10) == b"\0", "acquire() must leave the wakeup fd to the caller"
        assert lock.acquire() is True  # nothing was taken by the failed attempt
        lock.release()
    finally:
        os.close(wake_r)
        os.close(wake_w)


# -- flock: files --------------------------------------------------------------------------------


def test_generated_lock_file_leaves_nothing(children: Children, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert os.listdir(tmp_path) == []
    lock = make_lock("flock")
    lock.prepare()
    try:
        assert os.listdir(tmp_path) == []
        assert isinstance(lock, FlockLock)
        assert os.readlink(f"/proc/self/fd/{lock._fd}").endswith("(deleted)")
    finally:
        lock.close()

    # kill -9 of a "parent" whose child holds the lock: still nothing behind.
    board = Board()

    def server() -> int:
        lock = make_lock("flock")
        lock.prepare()
        parent = os.getpid()

        def child() -> int:
            lock.child_init()
            assert lock.acquire()
            board[1] = os.getpid()
            while os.getppid() == parent:
                time.sleep(0.01)
            return 0

        children.fork(child)
        board[0] = 1
        while True:
            time.sleep(1)

    server_pid = children.fork(server, own_group=True)
    assert wait_until(lambda: board[0] == 1 and board[1] != 0, 5)
    children.adopt(board[1])
    assert children.kill(server_pid) == -signal.SIGKILL
    assert wait_until(lambda: children.gone(board[1]), 3), "the lock holder outlived its parent"
    assert os.listdir(tmp_path) == []


def test_unusable_temp_dir_is_a_startup_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    missing = str(tmp_path / "missing")
    monkeypatch.setattr(tempfile, "tempdir", missing)
    with pytest.raises(StartupError, match=f"serialize flock: cannot create a lock file in {missing!r}"):
        make_lock("flock").prepare()


def lock_fds() -> int:
    """How many of this process's fds point at a generated lock file."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += "/netserver-lock-" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the fd listdir itself used, already closed
    return count


def test_flock_child_holds_one_fd_then_none(children: Children, make: Callable[..., AcceptLock]) -> None:
    lock = make("flock")
    assert lock_fds() == 1  # the parent's

    def child() -> int:
        lock.child_init()
        if lock_fds() != 1:
            return 3  # the inherited description must be closed, not kept beside our own
        assert lock.acquire()
        lock.close_in_child()
        return 4 if lock_fds() else 0

    assert children.wait(children.fork(child)) == 0


def test_symlinked_lock_file_is_refused(tmp_path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"do not touch\n")
    os.chmod(target, 0o644)
    before = target.stat()
    link = tmp_path / "accept.lock"
    link.symlink_to(target)
    with pytest.raises(StartupError) as info:
        make_lock("flock", lock_file=str(link)).prepare()
    assert str(info.value) == f"lock_file: {str(link)!r} is a symbolic link; refusing to follow it"
    after = target.stat()
    assert target.read_bytes() == b"do not touch\n"
    assert (after.st_mtime_ns, after.st_size, after.st_mode) == (before.st_mtime_ns, before.st_size, before.st_mode)


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        (lambda p: p.mkdir(), "is not a regular file"),
        (lambda p: os.mkfifo(p), "is not a regular file"),
        (lambda p: (p.touch(), os.chmod(p, 0o664)), "is writable by group or others"),
        (lambda p: (p.touch(), os.chown(p, NOBODY, NOBODY)), "belongs to uid 65534"),
    ],
    ids=["directory", "fifo", "group-writable", "foreign-owner"],
)
def test_unsafe_lock_file_is_refused(tmp_path, setup: Callable[..., object], problem: str) -> None:
    if problem.startswith("belongs") and os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    path = tmp_path / "accept.lock"
    setup(path)
    with pytest.raises(StartupError) as info:
        make_lock("flock", lock_file=str(path)).prepare()
    assert str(info.value).startswith(f"lock_file: {str(path)!r} {problem}")


def test_a_deleted_lock_file_still_excludes_and_is_logged_once(children: Children, make: Callable[..., AcceptLock],
                                                               tmp_path) -> None:
    path = tmp_path / "accept.lock"
    seen: list[str] = []
    lock = make("flock", lock_file=str(path), log=lambda level, fmt, *args: seen.append(fmt % args), log_level=2)
    os.unlink(path)
    # Children opened after the deletion reopen the parent's file: they still exclude each other.
    assert contend(children, lock, rounds=100, hold=0.0002) == 0
    lock.sweep(set())
    lock.sweep(set())
    assert seen == [f"lock_file {path} was deleted; the server keeps locking the file it opened"]
    assert not path.exists(), "a deleted lock_file is not made again"


def test_a_replaced_lock_file_is_logged_and_not_followed(children: Children, make: Callable[..., AcceptLock],
                                                        tmp_path) -> None:
    path = tmp_path / "accept.lock"
    seen: list[str] = []
    lock = make("flock", lock_file=str(path), log=lambda level, fmt, *args: seen.append(fmt % args), log_level=2)
    original = os.stat(path).st_ino
    os.unlink(path)
    path.touch(mode=0o600)
    board = Board()

    def body() -> int:
        lock.child_init()
        board[0] = os.fstat(lock._fd).st_ino  # type: ignore[attr-defined]
        lock.close_in_child()
        return 0

    assert children.wait(children.fork(body)) == 0
    assert board[0] == original != path.stat().st_ino
    lock.sweep(set())
    assert len(seen) == 1 and "was replaced by another file" in seen[0] and "does not follow" in seen[0]


# -- semaphore -----------------------------------------------------------------------------------


def test_semaphore_close_removes_it(make: Callable[..., AcceptLock]) -> None:
    lock = make("semaphore")
    assert isinstance(lock, SemaphoreLock)
    semid = lock.semaphore_id
    assert semid in semaphores()
    lock.close()
    assert semid not in semaphores()
    lock.close()  # idempotent


def test_semaphore_parent_gone_removes_it(children: Children, make: Callable[..., AcceptLock]) -> None:
    lock = make("semaphore")
    semid = lock.semaphore_id  # type: ignore[attr-defined]

    def child() -> int:
        lock.child_init()
        lock.parent_gone()
        lock.parent_gone()  # errors (already removed) are ignored
        return 0

    assert children.wait(children.fork(child)) == 0
    assert semid not in semaphores()
    lock.close()  # the parent's close() tolerates a removed semaphore


def test_removed_semaphore_raises_lock_gone(children: Children, make: Callable[..., AcceptLock]) -> None:
    lock, board = make("semaphore"), Board()
    holder = children.fork(hold_forever(lock, board, 0))
    assert wait_until(lambda: board[0] == holder, 5)

    def waiter() -> int:
        lock.child_init()
        board[1] = 1
        try:
            lock.acquire()
        except LockGone:
            return 3
        return 0

    waiter_pid = children.fork(waiter)
    assert wait_until(lambda: board[1] == 1, 5)
    time.sleep(0.2)
    lock.close()
    assert children.wait(waiter_pid) == 3
    children.kill(holder)


def test_semaphore_gone_after_parent_killed(children: Children) -> None:
    board = Board()  # 0: semaphore id; 1, 2: the server's children

    def server() -> int:
        lock = make_lock("semaphore")
        lock.prepare()
        parent = os.getpid()

        def child() -> int:
            lock.child_init()
            try:
                while True:
                    while not lock.acquire():
                        pass
                    time.sleep(0.01)
                    if os.getppid() != parent:
                        lock.parent_gone()
                        return 0
                    lock.release()
            except LockGone:
                return 0

        board[1] = children.fork(child)
        board[2] = children.fork(child)
        board[0] = lock.semaphore_id  # type: ignore[attr-defined]
        while True:
            time.sleep(1)

    server_pid = children.fork(server, own_group=True)
    assert wait_until(lambda: board[0] != 0, 5)
    semid = board[0]
    assert semid in semaphores()
    children.adopt(board[1])
    children.adopt(board[2])
    assert children.kill(server_pid) == -signal.SIGKILL
    assert wait_until(lambda: children.gone(board[1]) and children.gone(board[2]), 3), "children outlived the parent"
    assert semid not in semaphores()


@needs_root
def test_semaphore_owner_lets_unprivileged_children_use_it(children: Children, make: Callable[..., AcceptLock]) -> None:
    lock = make("semaphore", owner=(NOBODY, NOBODY))
    semid = lock.semaphore_id  # type: ignore[attr-defined]
    assert semaphores()[semid] == (NOBODY, NOBODY, 0, 0)

    def as_nobody(then_remove: bool) -> Callable[[], int]:
        def body() -> int:
            lock.child_init()  # before the privilege drop, as the server does
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            for _ in range(3):
                assert lock.acquire()
                lock.release()
            if then_remove:
                lock.parent_gone()
            return 0

        return body

    assert children.wait(children.fork(as_nobody(False))) == 0
    assert children.wait(children.fork(as_nobody(True))) == 0
    assert semid not in semaphores()


@needs_root
def test_semaphore_without_owner_refuses_unprivileged_children(
    children: Children, make: Callable[..., AcceptLock]
) -> None:
    lock = make("semaphore")

    def body() -> int:
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        try:
            lock.acquire()
        except PermissionError as exc:
            return 4 if exc.errno == errno.EACCES else 1
        return 0

    assert children.wait(children.fork(body)) == 4


# -- pipe ----------------------------------------------------------------------------------------


def test_pipe_sweep_replaces_a_lost_token(children: Children, make: Callable[..., AcceptLock]) -> None:
    logged: list[tuple[object, ...]] = []
    lock, board = make("pipe", log=lambda *args: logged.append(args), log_level=1), Board()
    holder = children.fork(hold_forever(lock, board, 0))
    assert wait_until(lambda: board[0] == holder, 5)
    assert children.kill(holder) == -signal.SIGKILL  # and the parent never calls child_lost
    waiter = children.fork(acquire_once(lock, board, 1, 2))
    assert wait_until(lambda: board[1] == 1, 5)

    lock.sweep(set())
    time.sleep(0.2)
    assert board[2] == 0, "one sweep must not re-prime: the token may be in transit"
    lock.sweep(set())
    assert wait_until(lambda: board[2] == 1, 1.0)
    assert children.wait(waiter) == 0
    assert [entry[0] for entry in logged] == [1]


def test_pipe_never_duplicates_a_live_token(children: Children, make: Callable[..., AcceptLock]) -> None:
    lock, board = make("pipe"), Board()
    holder = children.fork(hold_forever(lock, board, 0))
    assert wait_until(lambda: board[0] == holder, 5)
    waiter = children.fork(acquire_once(lock, board, 1, 2))
    assert wait_until(lambda: board[1] == 1, 5)

    for _ in range(3):
        lock.sweep({holder, waiter})
    lock.child_lost(waiter)  # not the holder: nothing to replace
    time.sleep(0.3)
    assert board[2] == 0, "a second token appeared while the holder was alive"
    children.kill(holder)
    lock.child_lost(holder)
    assert wait_until(lambda: board[2] == 1, 1.0)
    assert children.wait(waiter) == 0


def test_pipe_close_in_child_returns_the_token(children: Children, make: Callable[..., AcceptLock]) -> None:
    lock, board = make("pipe"), Board()

    def leaver() -> int:
        lock.child_init()
        assert lock.acquire()
        lock.close_in_child()
        return 0

    assert children.wait(children.fork(leaver)) == 0
    waiter = children.fork(acquire_once(lock, board, 1, 2))
    assert wait_until(lambda: board[2] == 1, 1.0)
    assert children.wait(waiter) == 0
