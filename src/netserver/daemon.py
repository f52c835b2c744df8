"""Daemon duties: the pid file, backgrounding, identities and privilege drop.

The pid file is a lock, not just a note: it is opened without following
symlinks and flock'ed for the server's lifetime (the lock survives a HUP
re-exec because the fd does).  A held lock means "already running"; a file
with no lock is stale, whatever pid it names, so a recycled pid can never
block a start (Net::Server probed /proc and could be fooled either way).

Privileges are dropped by each child, never by the parent, which keeps the
identity it started with so that HUP can re-exec, re-bind privileged ports
and remove the pid file.  Every name is looked up in the parent before any
fork, so a chrooted child needs no passwd file.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import grp
import os
import pwd
import stat
import sys

from .errors import ConfigError, StartupError
from .records import Record

ENV_PIDFILE = "NETSERVER_PIDFILE_FD"


class PidFile:
    """A locked pid file.  ``acquire`` before binding; ``write`` once forked."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.pid = 0
        self.created = False  # so a failed start removes the empty file it made
        self.stale = ""  # what a stale file named, for the log once it is open

    def acquire(self) -> None:
        """Lock the file, or raise StartupError; a stale file's old pid is left in ``stale``.

        Taken before the log is opened (so that a refused instance creates
        nothing), hence the warning about a stale file is the caller's.
        """
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                self.created = True
            except FileExistsError:
                fd = os.open(self.path, flags)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise StartupError(f"pid_file: {self.path!r} is a symbolic link; refusing to follow it") from None
            raise StartupError(f"pid_file: cannot open {self.path!r}: {error.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StartupError(f"pid_file: {self.path!r} is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise StartupError(f"already running (pid {owner}, pid_file {self.path!r})") from None
            self.stale = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except BaseException:
            if self.created:
                os.unlink(self.path)
            os.close(fd)
            raise
        self.fd = fd

    def adopt(self, fd: int) -> None:
        """Take over the locked fd handed across a HUP re-exec (same process, same pid)."""
        os.set_inheritable(fd, False)
        self.fd = fd
        self.pid = os.getpid()

    @classmethod
    def inherited(cls, exported: str) -> PidFile | None:
        """The pid file ``export()`` handed across a HUP re-exec: ``FD:PATH``."""
        fd, _, path = exported.partition(":")
        if not fd.isdigit():
            return None
        held = cls(path)
        held.adopt(int(fd))
        return held

    def is_at(self, path: str) -> bool:
        """Is the file we hold the one at ``path`` (however the path is spelled)?"""
        try:
            there, mine = os.stat(path), os.fstat(self.fd)
        except OSError:
            return False
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    def write(self, pid: int) -> None:
        self.pid = pid
        # Write, then cut to length: a reader (a HUP's re-write, a monitoring script) never
        # sees the file empty, as it would between a truncate and the write.
        data = f"{pid}\n".encode()
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

    def export(self) -> str:
        os.set_inheritable(self.fd, True)
        return f"{self.fd}:{self.path}"

    def remove(self) -> None:
        """Unlink the file only if it is still ours (same inode, our pid)."""
        if self.fd < 0:
            return
        try:
            mine = os.fstat(self.fd)
            there = os.lstat(self.path)
            content = os.pread(self.fd, 32, 0).decode("ascii", "replace").strip()
            ours = content == str(self.pid) or (self.created and not content)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino) and ours:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1

    def close_in_child(self) -> None:
        """A child must not share the lock's open file description."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Identity(Record):
    """Who children run as: uid, gid, the exact supplementary groups."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str

    def is_current(self) -> bool:
        return (os.geteuid(), os.getegid()) == (self.uid, self.gid) and set(os.getgroups()) == set(self.groups)


def try_appending(path: str) -> None:
    """Open ``path`` for appending, as a log is, and close it: OSError if it cannot be.

    For check mode, which must leave nothing behind: a file made for the try is removed.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))
    except FileNotFoundError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        os.unlink(path)


def resolve_identity(user: str | None, group: str | None, origins: dict[str, str]) -> Identity | None:
    """Look up user and group names now; unknown ones are configuration errors."""
    if user is None and group is None:
        return None
    if user is not None:
        entry = _lookup_user(user, origins.get("user"))
        uid, name, primary = (entry.pw_uid, entry.pw_name, entry.pw_gid) if entry else (int(user), user, None)
    else:
        uid, name, primary = os.geteuid(), str(os.geteuid()), None
    if group is not None:
        gids = [_lookup_group(word, origins.get("group")) for word in group.replace(",", " ").split()]
        if not gids:
            raise ConfigError("group", group, origins.get("group"), "names no group")
        return Identity(uid, gids[0], tuple(dict.fromkeys(gids)), name)
    if primary is None and uid != os.geteuid():
        # No passwd entry, so no group of its own: the parent's (root's, as a rule) would be kept.
        raise ConfigError("user", user, origins.get("user"),
                          "has no passwd entry, so it has no group to run in: name one with group "
                          "(e.g. group nogroup)")
    gid = primary if primary is not None else os.getegid()
    groups = tuple(os.getgrouplist(name, gid)) if primary is not None else (gid,)
    return Identity(uid, gid, groups, name)


def _lookup_user(user: str, origin: str | None):
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():
            return None
        raise ConfigError("user", user, origin, "is not a known user") from None


def _lookup_group(word: str, origin: str | None) -> int:
    if word.isdigit():
        return int(word)
    try:
        return grp.getgrnam(word).gr_gid
    except KeyError:
        raise ConfigError("group", word, origin, "is not a known group") from None


def check_can_become(identity: Identity | None, chroot: str | None) -> None:
    """Refuse at start-up what a child could not do later."""
    if chroot is not None and not os.path.isdir(chroot):
        raise StartupError(f"chroot: {chroot!r} is not a directory")
    if os.geteuid() == 0:
        return
    if chroot is not None:
        raise StartupError(f"chroot: changing root to {chroot!r} needs root (running as uid {os.geteuid()})")
    if identity is not None and not identity.is_current():
        raise StartupError(f"user: becoming {identity.name!r} needs root (running as uid {os.geteuid()})")


def drop_privileges(identity: Identity | None, chroot: str | None) -> None:
    """chroot, then groups, gid, uid: each call needs the privilege the next one drops."""
    if chroot is not None:
        os.chroot(chroot)
        os.chdir("/")
    if identity is None or identity.is_current():
        return
    os.setgroups(list(identity.groups))
    os.setresgid(identity.gid, identity.gid, identity.gid)
    os.setresuid(identity.uid, identity.uid, identity.uid)


PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
# Resolved here, in the parent: the first attribute lookup on a CDLL builds
# function objects, which in every child would cost ~170 KiB of private pages.
# The arguments are plain ints, with no argtypes: ctypes passes each as a C int
# (libffi widens it to the register), which touches no ctypes object; ready-made
# c_int/c_ulong values cost a child ~14 pages more, argtypes more still.  No
# use_errno either: the result is not checked, and swapping errno costs the child
# another page.  One harmless call now (PR_GET_DUMPABLE reads a flag) binds
# libffi's lazily bound symbols in the parent, so no child runs the dynamic
# linker for them.  Measured in a fresh fork: the call went from ~118 us and 45
# page faults to ~23 us and 7.
_prctl = ctypes.CDLL(None).prctl
_prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)


def set_parent_death_signal(signum: int) -> None:
    """Ask the kernel to signal us when the parent dies.

    It must come after any uid/gid change (which clears it), and the caller
    must then compare getppid() with the recorded parent: a parent that died
    before this call sends nothing.
    """
    _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def background() -> int:
    """Detach: fork, setsid, fork.  Returns, in the daemon, the status fd.

    The launcher stays in the foreground until the daemon writes ``READY``
    (exit 0) or ``EXIT <status> <message>`` on the status fd, or closes it
    (exit 1), so whoever started us learns whether the server really came up
    and why not; the launcher prints the message on its own stderr, since the
    daemon has let go of the terminal.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        os._exit(_launcher_wait(read_fd, pid))
    os.close(read_fd)
    os.setsid()
    if os.fork():
        os._exit(0)
    return write_fd


def _launcher_wait(read_fd: int, middle: int) -> int:
    try:
        os.waitpid(middle, 0)
    except ChildProcessError:
        pass
    data = b""
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        data += chunk
        if b"\n" in data:
            break
    line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    if line.startswith("READY"):
        return 0
    if line.startswith("EXIT "):
        word, _, message = line[5:].partition(" ")
        if message:
            print(f"netserver: {message}", file=sys.stderr)
        return int(word) if word.isdigit() else 1
    return 1


def detach_stdio(log_file: str | None) -> None:
    """Point stdin and stdout at /dev/null, stderr at the log file or /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    target = null
    if log_file and log_file.lower() not in ("syslog", "sys::syslog"):
        try:
            target = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            target = null
    os.dup2(target, 2)
    for fd in {null, target}:
        if fd > 2:
            os.close(fd)
