"""HUP: validate the new configuration, then re-exec in place keeping the sockets.

The sequence, and why each step is there:

1. Validate first.  The same command line runs in a check-mode subprocess
   (configure, import the handler, resolve users and hosts; try the log
   file, and when the new configuration keeps none of the running ports,
   bind its ports and close them at once, so that a port in use refuses the
   HUP instead of ending the server in the new image),
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

from . import listeners as listen
from .daemon import ENV_PIDFILE
from .signals import block, restore

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import subprocess

    from .events import Timer
    from .server import Server

ENV_RESTART = "NETSERVER_RESTART"
ENV_CHECK = "NETSERVER_CHECK"
ENV_CHECK_PERSONALITY = "NETSERVER_CHECK_PERSONALITY"  # the running one: a HUP cannot change it
ENV_CHECK_HELD = "NETSERVER_CHECK_HELD"  # the running listeners' keys: adopted, so not probed
ENV_OLD_CHILDREN = "NETSERVER_OLD_CHILDREN"
ENV_DEATH_FD = "NETSERVER_DEATH_FD"
ENV_SCOREBOARD_FD = "NETSERVER_SCOREBOARD_FD"
CHECK_TIMEOUT = 30.0
_ENV_KEYS = (ENV_RESTART, ENV_CHECK, ENV_CHECK_PERSONALITY, ENV_CHECK_HELD, ENV_OLD_CHILDREN, ENV_DEATH_FD,
             ENV_SCOREBOARD_FD, listen.ENV_FDS, ENV_PIDFILE)


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


class Restart:
    """HUP, as an object the server owns: ``request()`` and ``cancel()``.

    It uses only the server's public surface: ``log``, ``events`` (the
    check's output is a watched fd, its time limit a timer), ``stopping``,
    ``start_dir``, ``listeners``, ``pid_file`` and the hooks
    ``restart_env()``, ``restart_close_hook()``, ``restart_failed()``.
    A stop cancels a pending restart: the check is killed and reaped and
    nothing is exec'ed.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self._process: subprocess.Popen | None = None
        self._output = b""
        self._timer: Timer | None = None
        self._again = False

    def request(self) -> None:
        """Start validating for a HUP; the event loop finishes it."""
        server = self.server
        if server.stopping:
            return
        if self._process is not None:
            self._again = True
            server.log(2, "Received SIGHUP during a restart check; restarting once more afterwards")
            return
        server.log(2, "Received SIGHUP: checking the configuration before restarting")
        env = dict(os.environ)
        for key in _ENV_KEYS:
            env.pop(key, None)
        env[ENV_CHECK] = "1"
        env[ENV_CHECK_PERSONALITY] = server.personality
        env[ENV_CHECK_HELD] = "\n".join(listener.target.key for listener in server.listeners)
        argv = command_line(server.start_dir)
        import subprocess  # only a HUP needs it: kept out of start-up time

        try:
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, cwd=server.start_dir)
        except OSError as error:
            server.log(0, "HUP: cannot run the configuration check (%s); keeping the running server", error)
            return
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        self._process = process
        self._output = b""
        server.events.watch(process.stdout.fileno(), self._read)
        self._timer = server.events.call_later(CHECK_TIMEOUT, self._expire)

    def cancel(self) -> None:
        """A stop arrived: end the check (if any) and forget the restart."""
        if self._process is None:
            return
        self.server.log(2, "Stopping: the pending restart is cancelled")
        self._process.kill()
        self._again = False
        self._end_check()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            chunk = os.read(self._process.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if chunk:
            self._output = (self._output + chunk)[-8192:]
            return
        self._finish()

    def _expire(self) -> None:
        """The check hangs: kill it and refuse the restart."""
        if self._process is not None:
            self._process.kill()
            self._output += b"\nthe configuration check did not finish within %d s" % CHECK_TIMEOUT
            self._finish()

    def _end_check(self) -> int:
        process = self._process
        assert process is not None and process.stdout is not None
        self.server.events.unwatch(process.stdout.fileno())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        exit_status = process.wait()
        process.stdout.close()
        self._process = None
        return exit_status

    def _finish(self) -> None:
        exit_status = self._end_check()
        server = self.server
        again, self._again = self._again, False
        if server.stopping:
            return
        if exit_status != 0:
            lines = [line for line in self._output.decode("utf-8", "replace").splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {exit_status}"
            server.log(0, "HUP refused, keeping the running server: %s", reason)
        if again:
            # The configuration may have changed since this check read it: only
            # ever exec what a check has seen.
            self.request()
        elif exit_status == 0:
            self.execute()

    def execute(self) -> None:
        """Re-exec this process; on failure log and keep running."""
        server = self.server
        env = dict(os.environ)
        env[ENV_RESTART] = "1"
        env[listen.ENV_FDS] = listen.export_env(server.listeners)
        if server.pid_file is not None and server.pid_file.fd >= 0:
            env[ENV_PIDFILE] = server.pid_file.export()
        env.update(server.restart_env())
        argv = command_line(server.start_dir)
        server.log(2, "Re-exec server during HUP")
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
