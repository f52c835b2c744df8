"""HUP: validate the new configuration, then re-exec in place keeping the sockets.

The sequence, and why each step is there:

1. Validate first.  The same command line runs in a check-mode subprocess
   (configure, import the handler, resolve users and hosts, bind nothing),
   watched from the parent's selector so the parent keeps reaping and
   respawning meanwhile.  A bad conf file is logged and the running server
   goes on unchanged (nginx's behaviour; Apache 1.3 died here).
2. Block the handled signals across the exec: a second HUP or a TERM that
   arrives while the new image starts is queued by the kernel (the mask and
   pending signals survive exec) and delivered once the new image has its
   handlers, instead of killing it with the default action.
3. Exec ``sys.executable`` with ``sys.orig_argv``, the script made absolute
   against the start-up directory (Net::Server exec'ed a relative ``$0`` and
   died).  The pid does not change, so the children stay ours.
4. The environment carries the listening fds, the pid file's locked fd, the
   previous generation's pids and the parent-death pipe; everything else is
   close-on-exec.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from . import listeners as listen
from .daemon import ENV_PIDFILE
from .signals import block, restore

if TYPE_CHECKING:  # pragma: no cover
    import subprocess

    from .server import Server

ENV_RESTART = "NETSERVER_RESTART"
ENV_CHECK = "NETSERVER_CHECK"
ENV_CHECK_PERSONALITY = "NETSERVER_CHECK_PERSONALITY"  # the running one: a HUP cannot change it
ENV_OLD_CHILDREN = "NETSERVER_OLD_CHILDREN"
ENV_DEATH_FD = "NETSERVER_DEATH_FD"
CHECK_TIMEOUT = 30.0
_ENV_KEYS = (ENV_RESTART, ENV_CHECK, ENV_OLD_CHILDREN, ENV_DEATH_FD, listen.ENV_FDS, ENV_PIDFILE)


def command_line(start_dir: str) -> list[str]:
    """The argv to exec: interpreter options kept, the script path made absolute."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
    index = 1
    while index < len(argv):
        word = argv[index]
        if word in ("-m", "-c"):
            break
        if word in ("-W", "-X", "-Q"):
            index += 2
            continue
        if word.startswith("-") and word != "-":
            index += 1
            continue
        if not os.path.isabs(word):
            argv[index] = os.path.join(start_dir, word)
        break
    return [sys.executable] + argv[1:]


class Check:
    """A running validation subprocess."""

    def __init__(self, process: subprocess.Popen, started: float) -> None:
        self.process = process
        self.started = started
        self.output = b""


def request(server: Server) -> None:
    """Start validating for a HUP; the parent loop finishes it (see ``poll``)."""
    if server.stopping:
        return
    if getattr(server, "_check", None) is not None:
        server._hup_again = True
        server.log(2, "Received SIGHUP during a restart check; restarting once more afterwards")
        return
    server.log(2, "Received SIGHUP: checking the configuration before restarting")
    env = dict(os.environ)
    env[ENV_CHECK] = "1"
    env[ENV_CHECK_PERSONALITY] = server.personality
    for key in (listen.ENV_FDS, ENV_PIDFILE, ENV_OLD_CHILDREN, ENV_DEATH_FD, ENV_RESTART):
        env.pop(key, None)
    argv = command_line(server._start_dir)
    import subprocess  # only a HUP needs it: kept out of start-up time

    try:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, cwd=server._start_dir)
    except OSError as error:
        server.log(0, "HUP: cannot run the configuration check (%s); keeping the running server", error)
        return
    os.set_blocking(process.stdout.fileno(), False)
    server._check = Check(process, time.monotonic())
    server.watch_fd(process.stdout.fileno(), lambda: _read_check(server))


def _read_check(server: Server) -> None:
    check = server._check
    try:
        chunk = os.read(check.process.stdout.fileno(), 65536)
    except BlockingIOError:
        return
    if chunk:
        check.output = (check.output + chunk)[-8192:]
        return
    server.unwatch_fd(check.process.stdout.fileno())
    finish(server)


def expire(server: Server) -> None:
    """Called from the parent loop's timers: kill a check that hangs."""
    check = getattr(server, "_check", None)
    if check is not None and time.monotonic() - check.started > CHECK_TIMEOUT:
        check.process.kill()
        server.unwatch_fd(check.process.stdout.fileno())
        check.output += b"\nthe configuration check did not finish within %d s" % CHECK_TIMEOUT
        finish(server)


def finish(server: Server) -> None:
    check = server._check
    status = check.process.wait()
    check.process.stdout.close()
    server._check = None
    again, server._hup_again = server._hup_again, False
    if status != 0:
        lines = [line for line in check.output.decode("utf-8", "replace").splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {status}"
        server.log(0, "HUP refused, keeping the running server: %s", reason)
    if again:
        # The configuration may have changed since this check read it: only
        # ever exec what a check has seen.
        request(server)
    elif status == 0:
        execute(server)


def execute(server: Server) -> None:
    """Re-exec this process; on failure log and keep running."""
    env = dict(os.environ)
    env[ENV_RESTART] = "1"
    env[listen.ENV_FDS] = listen.export_env(server.listeners)
    if server.pid_file is not None and server.pid_file.fd >= 0:
        env[ENV_PIDFILE] = server.pid_file.export()
    env.update(server.restart_env())
    argv = command_line(server._start_dir)
    server.log(0, "Re-exec server during HUP")
    server.restart_close_hook()
    server.log.flush()
    mask = block()
    try:
        os.execve(argv[0], argv, env)
    except OSError as error:
        restore(mask)
        for listener in server.listeners:
            os.set_inheritable(listener.fileno(), False)
        if server.pid_file is not None and server.pid_file.fd >= 0:
            os.set_inheritable(server.pid_file.fd, False)
        server.restart_failed()
        server.log(0, "HUP: exec of %s failed (%s); keeping the running server", argv[0], error.strerror)


def forget_restart_env() -> None:
    """Children and user subprocesses must not see the hand-over variables."""
    for key in _ENV_KEYS:
        os.environ.pop(key, None)
