"""Accept serialization: which pre-forked child may be in the accept path.

PreForkSimple and PreFork children all accept on the same listening sockets;
only the holder of the accept lock waits on them, so a connection wakes one
child instead of all.  One small interface (:class:`AcceptLock`), four
strategies and a factory (:func:`make_lock`) that refuses unknown names.

What each strategy does about a holder killed with ``kill -9``: ``flock``
(default): the kernel drops the lock; the generated file is unlinked as soon
as it is open, so nothing is left even if the parent is killed (``O_TMPFILE``
needs no name at all, but some filesystems refuse it).  ``semaphore``: SysV
with ``SEM_UNDO``, so the kernel undoes the operation (POSIX semaphores have
no undo).  ``pipe``: nothing returns a one-byte token, so the parent re-primes
it from ``child_lost`` and ``sweep``, using a shared page naming the holder.
``none``: no lock; fine for one listener on Linux, where accept() wakes one.

Children's signal handlers only record and write to the wakeup fd.  CPython
installs them without ``SA_RESTART``, so ``flock``/``semop`` called through
ctypes return ``EINTR`` (PEP 475 retries only CPython's own calls) and
``acquire`` returns False for the caller to check its flags.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import select
import stat
import struct
import termios
from collections.abc import Callable

from .errors import ConfigError, StartupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["AcceptLock", "FlockLock", "LockGone", "NoLock", "PipeLock", "SemaphoreLock", "make_lock"]

Log = Callable[..., None]

# <sys/ipc.h>, <sys/sem.h> and <sys/file.h> on Linux.
_IPC_PRIVATE, _IPC_CREAT, _IPC_RMID, _IPC_SET, _IPC_STAT = 0, 0o1000, 0, 1, 2
_SETVAL, _SEM_UNDO = 16, 0x1000
_LOCK_EX, _LOCK_UN = 2, 8
_SEMID_DS_SIZE = 256  # more than sizeof(struct semid_ds), 104 on x86_64 and aarch64
_IPC_PERM_IDS = struct.Struct("=II")  # uid_t uid, gid_t gid at offset 4 of struct ipc_perm
_HOLDER = struct.Struct("=iI")  # the pipe token's holder pid, and a count of acquisitions


class LockGone(Exception):
    """The accept lock no longer exists (the semaphore was removed): stop accepting."""


class _SemBuf(ctypes.Structure):
    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short), ("sem_flg", ctypes.c_short)]


class AcceptLock:
    """The contract of every accept-serialization strategy.

    Caller API, and the process that runs each method:

    * PARENT ``prepare()``: once, before forking; creates the shared resources.
    * CHILD ``child_init()``: right after the fork, before chroot and the
      privilege drop, so it may open files only root can open.
    * CHILD ``acquire() -> bool``: blocks until the lock is held (True).
      Returns False, without raising, when a signal interrupted the wait or
      ``wakeup_fd`` was already readable; the caller drains the wakeup fd,
      checks its flags and calls again.  Raises :class:`LockGone` when the
      lock was removed.
    * CHILD ``release()``: a no-op unless this process holds the lock.
    * PARENT ``child_lost(pid)``: a child was reaped.
    * PARENT ``sweep(live_pids)``: periodic health check.
    * CHILD ``parent_gone()``: the child noticed that its parent died.
    * PARENT ``close()``: at stop and before a re-exec; idempotent.
    * CHILD ``close_in_child()``: before exit, and in helpers that must hold
      nothing.

    Subclasses override ``acquire`` and ``release``; every other method is a
    hook that defaults to a no-op.  ``wakeup_fd`` (the fd given to
    ``signal.set_wakeup_fd``) may be set any time before ``acquire``.  The
    constructor does nothing process-wide.
    """

    name = "abstract"

    def __init__(self, *, log: Log | None = None, log_level: int = 4, wakeup_fd: int | None = None) -> None:
        self.wakeup_fd = wakeup_fd
        self._log = log
        # Decided once, so the per-accept trace costs one attribute test when
        # the level is lower.  Without a log_level every message goes to log().
        self._trace = log is not None and log_level >= 4
        self._held = False

    # Hooks: no-ops unless a strategy needs them; the class docstring says who calls each.
    def prepare(self) -> None: ...
    def child_init(self) -> None: ...
    def child_lost(self, pid: int) -> None: ...
    def sweep(self, live_pids: set[int]) -> None: ...
    def parent_gone(self) -> None: ...
    def close(self) -> None: ...
    def close_in_child(self) -> None: ...

    def acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def _logf(self, level: int, fmt: str, *args: object) -> None:
        if self._log is not None:
            self._log(level, fmt, *args)

    def _signalled(self) -> bool:
        # A signal landing after the caller drained the wakeup fd but before
        # the blocking call starts would not interrupt it; its byte is in the
        # wakeup fd already, so look there first.
        if self.wakeup_fd is None:
            return False
        poller = select.poll()
        poller.register(self.wakeup_fd, select.POLLIN)
        return bool(poller.poll(0))

    def _got(self) -> bool:
        self._held = True
        if self._trace:
            self._logf(4, "accept lock (%s) acquired", self.name)
        return True

    def _let_go(self) -> None:
        self._held = False
        if self._trace:
            self._logf(4, "accept lock (%s) released", self.name)


class NoLock(AcceptLock):
    """``serialize none``: every method is a no-op and ``acquire`` returns True."""

    name = "none"

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


class FlockLock(AcceptLock):
    """``serialize flock``: ``flock(LOCK_EX)`` on each child's own open file description.

    A lock taken through a description shared across fork excludes nothing,
    so each child opens its own in ``child_init``, always by reopening the
    parent's fd through ``/proc/self/fd``, never by path: every child then
    locks the very file the parent opened.  Without ``lock_file`` the file is
    created 0600 and exclusively in a private directory, and both are removed
    at once.  A given ``lock_file`` must be a regular file owned by us or root
    and not writable by group or others; it is never unlinked.  Deleting or
    replacing it while the server runs (temp cleaners do) changes nothing:
    the parent's ``sweep`` logs it once and the server keeps using the file
    it opened.  A HUP re-exec opens the path afresh.
    """

    name = "flock"

    def __init__(self, lock_file: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.lock_file = lock_file
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self._path_seen: tuple[int, int] | None = None  # what lock_file named at the last sweep
        self._flock = ctypes.CDLL(None, use_errno=True).flock
        self._flock.argtypes = [ctypes.c_int, ctypes.c_int]

    def prepare(self) -> None:
        if self.lock_file is not None:
            self._fd = self._open_given(os.O_CREAT)
            info = os.fstat(self._fd)
            self._identity = self._path_seen = (info.st_dev, info.st_ino)
            return
        try:
            import tempfile  # only a generated flock file needs it: kept out of start-up time

            directory = tempfile.mkdtemp(prefix="netserver-lock-")
        except OSError as exc:
            where = tempfile.gettempdir()
            raise StartupError(f"serialize flock: cannot create a lock file in {where!r}: {exc.strerror}") from None
        path = os.path.join(directory, "accept.lock")
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.unlink(path)
        finally:
            os.rmdir(directory)

    def _open_given(self, create: int) -> int:
        path = self.lock_file
        assert path is not None
        # O_NONBLOCK keeps a FIFO planted at the path from hanging start-up;
        # it changes nothing for flock on a regular file.
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK | create
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StartupError(f"lock_file: {path!r} is a symbolic link; refusing to follow it") from None
            if exc.errno == errno.EISDIR:
                raise StartupError(f"lock_file: {path!r} is not a regular file") from None
            raise StartupError(f"lock_file: cannot open {path!r}: {exc.strerror}") from None
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_uid not in (0, os.geteuid()):
            problem = f"belongs to uid {info.st_uid}, neither us nor root"
        elif info.st_mode & 0o022:
            problem = "is writable by group or others; chmod go-w it"
        if problem is not None:
            os.close(fd)
            raise StartupError(f"lock_file: {path!r} {problem}")
        return fd

    def child_init(self) -> None:
        if self._fd < 0:
            return
        inherited = self._fd
        # The magic link opens a new description of the file the parent holds,
        # even one that has no name any more or whose name now means another
        # file.  Opening lock_file by path here would fail once it is deleted
        # (every new child a boot failure) or lock a replacement that the
        # older children do not use.
        try:
            self._fd = os.open(f"/proc/self/fd/{inherited}", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise StartupError(f"serialize flock: cannot reopen the lock file: {exc.strerror}") from None
        os.close(inherited)

    def sweep(self, live_pids: set[int]) -> None:
        if self.lock_file is None or self._fd < 0:
            return
        try:
            info = os.lstat(self.lock_file)
            there: tuple[int, int] | None = (info.st_dev, info.st_ino)
        except FileNotFoundError:
            there = None
        except OSError:
            return
        if there == self._path_seen:
            return
        self._path_seen = there
        if there is None:
            self._logf(1, "lock_file %s was deleted; the server keeps locking the file it opened", self.lock_file)
        elif there == self._identity:
            self._logf(2, "lock_file %s names the server's lock file again", self.lock_file)
        else:
            self._logf(1, "lock_file %s was replaced by another file; the server keeps locking the one it "
                       "opened and does not follow the new one", self.lock_file)

    def acquire(self) -> bool:
        if self._signalled():
            return False
        if self._flock(self._fd, _LOCK_EX) == 0:
            return self._got()
        err = ctypes.get_errno()
        if err == errno.EINTR:
            return False
        raise OSError(err, f"flock: {os.strerror(err)}")

    def release(self) -> None:
        if self._held:
            self._flock(self._fd, _LOCK_UN)
            self._let_go()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._held = False

    close_in_child = close  # closing the child's own description drops its lock


class SemaphoreLock(AcceptLock):
    """``serialize semaphore``: a SysV semaphore operated with ``SEM_UNDO``.

    ``owner`` (uid, gid) hands the semaphore to the user the children become,
    so that after the privilege drop they can still operate it and, from
    ``parent_gone``, remove it.  ``semaphore_id`` is the id ``ipcs -s`` shows.
    """

    name = "semaphore"

    def __init__(self, owner: tuple[int, int] | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.owner = owner
        self.semaphore_id = -1
        libc = ctypes.CDLL(None, use_errno=True)
        self._semget, self._semctl, self._semop = libc.semget, libc.semctl, libc.semop
        self._semget.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        # semctl is variadic and its fourth argument a union semun passed in a
        # register: a pointer-sized integer carries ``val`` on the
        # little-endian 64-bit targets we support.
        self._semctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        self._semop.argtypes = [ctypes.c_int, ctypes.POINTER(_SemBuf), ctypes.c_size_t]

    def _ctl(self, cmd: int, arg: int | None = None) -> None:
        if self._semctl(self.semaphore_id, 0, cmd, arg) == -1:
            err = ctypes.get_errno()
            raise OSError(err, f"semctl: {os.strerror(err)}")

    def prepare(self) -> None:
        self.semaphore_id = self._semget(_IPC_PRIVATE, 1, _IPC_CREAT | 0o600)
        if self.semaphore_id == -1:
            reason = os.strerror(ctypes.get_errno())
            raise StartupError(f"serialize semaphore: cannot create a semaphore: {reason}")
        try:
            self._ctl(_SETVAL, 1)
            if self.owner is not None and tuple(self.owner) != (os.geteuid(), os.getegid()):
                # IPC_SET takes the whole structure back; patch only uid and gid.
                buf = ctypes.create_string_buffer(_SEMID_DS_SIZE)
                self._ctl(_IPC_STAT, ctypes.addressof(buf))
                _IPC_PERM_IDS.pack_into(buf, 4, *self.owner)
                self._ctl(_IPC_SET, ctypes.addressof(buf))
        except OSError as exc:
            self.close()  # a half-made semaphore would outlive us
            raise StartupError(f"serialize semaphore: cannot set up semaphore: {exc.strerror}") from None

    def _op(self, delta: int) -> int:
        op = _SemBuf(0, delta, _SEM_UNDO)
        return 0 if self._semop(self.semaphore_id, ctypes.byref(op), 1) == 0 else ctypes.get_errno()

    def acquire(self) -> bool:
        if self._signalled():
            return False
        err = self._op(-1)
        if err == 0:
            return self._got()
        if err == errno.EINTR:
            return False
        if err in (errno.EIDRM, errno.EINVAL):
            raise LockGone(f"semaphore {self.semaphore_id} was removed")
        raise OSError(err, f"semop: {os.strerror(err)}")

    def release(self) -> None:
        if not self._held:
            return
        err = self._op(1)
        self._let_go()
        # A removed semaphore has nothing left to release; the next acquire
        # reports LockGone.
        if err not in (0, errno.EIDRM, errno.EINVAL):
            raise OSError(err, f"semop: {os.strerror(err)}")

    def close(self) -> None:
        if self.semaphore_id != -1:
            try:
                self._ctl(_IPC_RMID)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EIDRM):
                    raise
            self.semaphore_id = -1

    def parent_gone(self) -> None:
        # After a kill -9 of the parent nobody else would remove it: the first
        # child to notice does, and the others get LockGone.
        try:
            self.close()
        except OSError:
            pass

    def close_in_child(self) -> None:
        self.release()


class PipeLock(AcceptLock):
    """``serialize pipe``: a one-byte token in a pipe, and a record of its holder.

    The holder's pid and a count of acquisitions live in a shared anonymous
    page, so the parent can replace a token lost with its holder:
    ``child_lost`` does when the reaped child held it, ``sweep`` when the pipe
    stays empty, with no live holder and no acquisition, over two sweeps.
    Without a ``wakeup_fd`` no signal can interrupt ``acquire``.
    """

    name = "pipe"
    TOKEN = b"."

    def __init__(self, **common: Any) -> None:
        super().__init__(**common)
        self._rfd = self._wfd = -1
        self._page: mmap.mmap | None = None
        self._suspect: int | None = None  # the acquisition count at a suspicious sweep

    def prepare(self) -> None:
        self._rfd, self._wfd = os.pipe()
        # O_NONBLOCK is on the shared description: children wait in poll and
        # never block in read, so a signal cannot cost them the token.
        os.set_blocking(self._rfd, False)
        self._page = mmap.mmap(-1, _HOLDER.size, flags=mmap.MAP_SHARED)
        os.write(self._wfd, self.TOKEN)

    def _record(self) -> tuple[int, int]:
        assert self._page is not None
        return _HOLDER.unpack_from(self._page)

    def _set_holder(self, pid: int) -> None:
        # Only the token's holder, or the parent replacing a lost token, writes.
        page = self._page
        assert page is not None
        count = _HOLDER.unpack_from(page)[1] + (1 if pid else 0)
        _HOLDER.pack_into(page, 0, pid, count & 0xFFFFFFFF)

    def acquire(self) -> bool:
        poller = select.poll()
        poller.register(self._rfd, select.POLLIN)
        if self.wakeup_fd is not None:
            poller.register(self.wakeup_fd, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self.wakeup_fd in ready:
                return False  # the caller drains the wakeup fd
            try:
                if not os.read(self._rfd, 1):
                    raise LockGone("the accept pipe was closed")
            except BlockingIOError:
                continue  # another child took the token first
            self._set_holder(os.getpid())
            return self._got()

    def release(self) -> None:
        if self._held:
            self._set_holder(0)
            os.write(self._wfd, self.TOKEN)
            self._let_go()

    def _prime(self) -> None:
        self._set_holder(0)
        self._suspect = None
        os.write(self._wfd, self.TOKEN)

    def child_lost(self, pid: int) -> None:
        if pid > 0 and self._page is not None and self._record()[0] == pid:
            self._logf(2, "child %d died holding the accept token; putting in a new one", pid)
            self._prime()

    def sweep(self, live_pids: set[int]) -> None:
        if self._page is None:
            return
        waiting = struct.unpack("i", fcntl.ioctl(self._rfd, termios.FIONREAD, b"\0\0\0\0"))[0]
        holder, count = self._record()
        if waiting or (holder and holder in live_pids):
            self._suspect = None
        elif self._suspect != count:
            # The token may just be between a child's read and its holder
            # record; a token really lost shows no acquisition by the next sweep.
            self._suspect = count
        else:
            self._logf(1, "accept token lost (holder pid %d is not alive); putting in a new one", holder)
            self._prime()

    def close(self) -> None:
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                os.close(fd)
        self._rfd = self._wfd = -1
        if self._page is not None:
            self._page.close()
            self._page = None
        self._held = False

    def close_in_child(self) -> None:
        if self._wfd >= 0:
            self.release()
        self.close()


_STRATEGIES: dict[str, type[AcceptLock]] = {
    "flock": FlockLock,
    "semaphore": SemaphoreLock,
    "pipe": PipeLock,
    "none": NoLock,
}


def make_lock(
    kind: str,
    *,
    lock_file: str | None = None,
    owner: tuple[int, int] | None = None,
    log: Log | None = None,
    log_level: int = 4,
    wakeup_fd: int | None = None,
) -> AcceptLock:
    """Return the accept lock named ``kind``: flock, semaphore, pipe or none.

    PARENT, before forking; call ``prepare()`` on the result.  ``lock_file``
    is used by flock only and ``owner`` (the uid and gid the children will run
    as) by semaphore only.  ``log(level, fmt, *args)`` takes Net::Server
    levels 0-4; acquire and release are traced at level 4, skipped at no cost
    when ``log_level`` is lower.  Any other ``kind`` raises ConfigError: a
    typo never falls back to another strategy.
    """
    cls = _STRATEGIES.get(kind.lower()) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError("serialize", kind, None, "is not one of flock, semaphore, pipe, none")
    common: dict[str, Any] = {"log": log, "log_level": log_level, "wakeup_fd": wakeup_fd}
    if cls is FlockLock:
        return FlockLock(lock_file, **common)
    if cls is SemaphoreLock:
        return SemaphoreLock(owner, **common)
    return cls(**common)
