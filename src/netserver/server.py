"""The Server base class: Net::Server's ``run()`` lifecycle, one phase per line.

Read ``Server._lifecycle`` and ``Server.run_client_connection`` top to
bottom: that is the order of the process.  Each phase is a method a
subclass may override; each ``*_hook`` is a documented no-op meant for
users.  Personalities (Single, PreForkSimple) override only how connections
are accepted and where they run: ``loop``, ``post_bind`` additions and the
stop/restart steps.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from types import MappingProxyType

from . import config, daemon, restart
from . import listeners as listen
from .access import AccessPolicy, Resolver, confirmed_hostname
from .connection import Connection, Datagram, LineTooLong, timeval
from .errors import ConfigError, ExitCode, NetServerError
from .events import EventLoop
from .log import Log, RateLimit, StreamSink, make_sink
from .options import BASE_OPTIONS, Option, collect
from .signals import IGNORED, STOP_TOO, Signals, signal_name
from .status import NullReporter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class StopServer(BaseException):
    """Raised from a signal handler to abandon the current request and stop.

    A BaseException, so a handler's ``except Exception`` cannot swallow it.
    """


class Server:
    """A network server: configure, bind, then serve connections.

    Caller API: ``Server(**options).run(argv=None, **options)``.  Without
    ``argv`` it reads ``sys.argv`` (``--help``/``-h``: print the help and exit 0)
    and, on a configuration or start-up error, prints one line to stderr and
    exits with the status of ``ExitCode``; with ``argv`` (a list) it raises
    ``ConfigError``/``StartupError`` instead.

    Hooks (override in a subclass; every default does nothing unless said):

    ==================================  =======  ====================================
    hook                                process  default
    ==================================  =======  ====================================
    configure_hook()                    parent   nothing; runs before any parsing
    default_values() -> dict            parent   {}: lowest-precedence option values
    post_configure_hook()               parent   nothing; options are in self.options
    post_bind_hook()                    parent   nothing; sockets bound, still privileged
    pre_loop_hook()                     parent   nothing; just before serving
    child_init_hook()                   child    nothing; after fork and privilege drop
    post_accept_hook(client)            child*   nothing
    allow_deny_hook(client) -> bool     child*   True
    request_denied_hook(client)         child*   nothing; client is closed afterwards
    process_request(client)             child*   the demo line service
    post_process_request_hook(client, ok)  child*  nothing; ok = allowed
    post_client_connection_hook(client) child*   nothing; after the client is closed
    child_finish_hook()                 child    nothing; before the child exits
    pre_server_close_hook()             parent   nothing; a stop's first step, before
                                                 listeners close and children are told
    post_child_cleanup_hook()           parent   nothing; the children are gone
    restart_open_hook()                 parent   nothing; the new image after a HUP,
                                                 before it adopts the listeners
    restart_close_hook()                parent   nothing; just before a HUP re-exec
    pre_fork_hook()                     parent   nothing; before each fork (forking
                                                 personalities)
    run_n_children_hook(count)          parent   nothing; before forking count pool children
    delete_child_hook(pid)              parent   nothing; a child was reaped
    idle_loop_hook()                    parent   nothing; each pass of the parent's loop
                                                 (forking personalities)
    pre_accept_hook()                   parent   nothing; Fork, before each accept
    done() -> bool                      child*   False; True after a connection ends the loop
    dequeue()                           dequeue  run_dequeue(), which must be overridden
    ==================================  =======  ====================================

    ``child*``: the process that accepted the connection (the server itself
    for Single).  Phases a personality or protocol may override, in order:
    configure, post_configure, pre_bind, bind, post_bind, loop, accept,
    post_accept, get_client_info, allow_deny, post_process_request,
    server_close.  Runtime state: ``self.options`` (frozen), ``self.listeners``,
    ``self.children``, ``self.signals``, ``self.lock``, ``self.log``,
    ``self.events`` (the parent's one wait), ``self.restart`` (HUP).

    Options: each class lists only its own in ``declared_options``; the
    server's table is collected along the MRO when the class is created
    (``option_table()``), so a protocol mixin with options composes with any
    personality, and two unrelated classes declaring one option differently
    is an error then, naming both.
    """

    declared_options: tuple[Option, ...] = BASE_OPTIONS
    personality = "Server"
    _options_table: Mapping[str, Option] = MappingProxyType({})  # Server's own is set below the class
    #: DNS lookups for reverse_lookups; tests may substitute an object with
    #: the same ``reverse``/``forward`` methods.
    resolver: Any = Resolver()
    connection_class = Connection

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._options_table = MappingProxyType(collect(cls))
        _refuse_hidden_mixin_methods(cls)

    @classmethod
    def option_table(cls) -> dict[str, Option]:
        """Name -> Option for this class: its own declarations and every base's."""
        return dict(cls._options_table)

    def __init__(self, **options: Any) -> None:
        # Nothing process-wide here: a constructor may run before a fork.
        self._constructor_options = options
        self.options: Any = None
        self.option_origins: dict[str, str] = {}
        self.listeners: list[listen.Listener] = []
        self.signals = Signals()
        self.log = Log()
        self.pid_file: daemon.PidFile | None = None
        self._pid_file_moved_from: daemon.PidFile | None = None
        self.identity: daemon.Identity | None = None
        self.access: AccessPolicy | None = None
        self.targets: list[listen.Target] = []
        self.requests = 0
        self.is_child = False
        self.is_dequeue = False
        self.stopping = False
        self.restarting = os.environ.get(restart.ENV_RESTART) == "1"
        self.exit_code = ExitCode.OK
        self.events = EventLoop()
        self.restart = restart.Restart(self)
        #: In a child: writes its scoreboard slot (a no-op where there is none).
        self.status: Any = NullReporter()
        #: The one question a serving loop asks before each accept or request:
        #: stop taking work (a stop, HUP, the parent's death, max_requests).
        self.draining = False
        #: True in a process that accepts clients (a child, or Single): what it forks is isolated.
        self.serves_clients = False
        #: The connection being served (None between connections): what a stop may close.
        self.client: Connection | Datagram | None = None
        self._in_request = False
        self._stop_requested = False
        self._closed = False
        self._close_begun = False  # pre_server_close_hook has run
        self._title: Any = None      # sets the process title (title_processes), or None
        self._serving = False
        self._status_fd = -1
        self.ready_fds: list[int] = []
        self._ready_sent = False
        self.start_dir = os.getcwd()
        self._opened = False
        self.denials: RateLimit | None = None

    # ------------------------------------------------------------------ lifecycle
    def run(self, argv: list[str] | None = None, **options: Any) -> None:
        embedded = argv is not None
        args = list(argv) if embedded else sys.argv[1:]
        if not embedded and ("--help" in args or "-h" in args):
            from .usage import help_text, print_help  # only --help needs the text

            print_help(help_text(type(self), os.path.basename(sys.argv[0] or "netserver")))
            sys.exit(int(ExitCode.OK))
        try:
            self._lifecycle(args, options)
        except NetServerError as error:
            self._report_failure(error)
            if embedded:
                raise
            print(f"{os.path.basename(sys.argv[0] or 'netserver')}: {error}", file=sys.stderr)
            sys.exit(int(error.exit_code))
        if self.exit_code and not embedded:
            sys.exit(int(self.exit_code))

    def _lifecycle(self, argv: list[str], run_options: dict[str, Any]) -> None:
        self.configure_hook()                # user: before any parsing
        self.configure(argv, run_options)    # every source -> self.options (errors: exit 2)
        self.post_configure()                # resolve users, hosts, rules; no side effects
        try:
            self.open_files()                # pid file lock, then the log (check mode: stderr only)
            self.post_configure_hook()       # user: its lines reach log_file
            self._warn_about_perl_hooks()    # Net::Server hooks defined here that nothing calls
            if self.check_only():
                return                       # --check_config / HUP validation stops here
            self.pre_bind()                  # what the children share: the denied-log rate limit
            self.bind()                      # listeners (adopted across a HUP re-exec)
            self.post_bind_hook()            # user: bound, still privileged
            self.post_bind()                 # background, pid written, signals
            self.pre_loop_hook()             # user
            self._serving = True
            self.loop()                      # serve until stopped
        except NetServerError as error:
            if self.restarting:
                # After a HUP re-exec stderr may lead nowhere (a daemon's): the log says why it ended.
                self.log(0, "The restart failed and the server stops: %s", error)
            raise
        finally:
            self.server_close()              # children, listeners, pid file

    def configure(self, argv: list[str], run_options: dict[str, Any]) -> None:
        table = self.option_table()
        layered = config.build(table=table, constructor=self._constructor_options, argv=argv,
                               run_kwargs=run_options, default_values=self.default_values(),
                               foreign=self.foreign_options)
        self.options = config.freeze(layered.values)
        self.option_origins = layered.origins
        self._check_class_options()

    def _check_class_options(self) -> None:
        """server_type and handler may only confirm the class, never ask for another one.

        The netserver command builds its class from them before configuring;
        a script's class is fixed, so a conf file naming another personality
        is a mistake to point out, not a wish to ignore.
        """
        cls, options, origins = type(self), self.options, self.option_origins
        if options.server_type:
            # A list is Net::Server's MultiType: the first that loads.  This class is fixed, so
            # it is the one that loaded, and the list must name it.
            wanted = {name.lower().removeprefix("net::server::") for name in options.server_type}
            mine = {klass.personality.lower() for klass in cls.__mro__
                    if "personality" in vars(klass) and klass is not Server}
            if not wanted & mine:
                raise ConfigError("server_type", ",".join(options.server_type), origins["server_type"],
                                  f"names another personality than this server's: {cls.__name__} is a "
                                  f"{cls.personality}")
        if options.handler is not None and options.handler != getattr(cls, "handler_spec", None):
            raise ConfigError("handler", options.handler, origins["handler"],
                              f"is read by the netserver command only; this server's class is {cls.__name__}")

    def post_configure(self) -> None:
        options, origins = self.options, self.option_origins
        specs = listen.parse_ports(options.port, options.host, options.proto, options.ipv,
                                   origins["port"])
        self.targets = [target for spec in specs for target in listen.resolve(spec, origins["host"])]
        self.identity = daemon.resolve_identity(options.user, options.group, origins)
        daemon.check_can_become(self.identity, options.chroot)
        self.access = AccessPolicy.compile(allow=options.allow, deny=options.deny,
                                           cidr_allow=options.cidr_allow, cidr_deny=options.cidr_deny,
                                           sources=origins)
        if options.log_file is not None and options.log_file.lower() not in ("syslog", "sys::syslog"):
            folder = os.path.dirname(os.path.abspath(options.log_file))
            if not os.path.isdir(folder):
                raise ConfigError("log_file", options.log_file, origins["log_file"],
                                  f"is in a directory that does not exist ({folder})")

    def check_only(self) -> bool:
        if not self.in_check_mode():
            return False
        hup_check = os.environ.get(restart.ENV_CHECK) == "1"
        running = os.environ.get(restart.ENV_CHECK_PERSONALITY) if hup_check else None
        if running and running != self.personality:
            # The re-exec keeps the pid and the old children: another process model could not
            # take them over (server_type or handler changed in the conf file).
            origins = self.option_origins
            source = origins["server_type"] if origins["server_type"] != "default" else origins["handler"]
            raise ConfigError("server_type", self.personality, source,
                              f"cannot replace the running {running} on a HUP; stop and start the server")
        if hup_check:
            self._check_restart_can_start()
        else:
            # stdout, as nginx -T and gunicorn --print-config do, in conf-file syntax so that it
            # can be saved and read back; the HUP check's output is only read for a refusal.
            table = self.option_table()
            lines = config.effective_lines(self.options.as_dict(), self.option_origins, table)
            print("\n".join(lines), flush=True)
        print(f"configuration OK ({self.personality})", file=sys.stderr)
        return True

    def _check_restart_can_start(self) -> None:
        """What the new image must do before it serves, tried now: a failure there ends the server.

        The re-exec keeps the pid and hands the old children to the new
        image, so an image that cannot start takes the whole server down
        with it.  Opening the log file (which the running server is about
        to do anyway, in ``open_files``) and, when the new configuration keeps
        none of the running ports, binding its ports catch the usual causes:
        a new log path that cannot be written, a port another program has.
        """
        held = set(os.environ.get(restart.ENV_CHECK_HELD, "").split("\n"))
        if not held & {target.key for target in self.targets}:
            # Keeping a port, the new image skips a new one it cannot bind (and logs it); with
            # every port changed, a port it cannot bind ends it.
            listen.probe(self.targets, held)

    def in_check_mode(self) -> bool:
        """--check_config, or the HUP's validation subprocess: configure, bind nothing, open nothing."""
        return bool(self.options.check_config) or os.environ.get(restart.ENV_CHECK) == "1"

    def open_files(self) -> None:
        """Take the pid file's lock, then open the log; before post_configure_hook, as Net::Server does.

        The hook's lines then reach log_file at log_level.  The pid file
        comes first (Net::Server opens the log first) so that an instance
        refused as "already running" leaves nothing behind, not even an empty
        log file; a log that then fails to open gives the pid file back in
        server_close.  In check mode nothing is created or written: the log
        goes to stderr at log_level, and the pid file is not touched.
        """
        options = self.options
        if self.in_check_mode():
            self.log.configure(options.log_level, StreamSink())
            self._try_log_file()
            return
        self._opened = True
        if options.umask is not None:
            os.umask(options.umask)  # before the first file we create
        notes = self.lock_pid_file()
        try:
            sink = make_sink(options.log_file, options.syslog_ident, options.syslog_facility, options.syslog_logsock)
        except (OSError, ValueError) as error:
            raise self._log_file_error(error) from None
        self.log.configure(options.log_level, sink)
        for note in notes:
            self.log(*note)

    def _try_log_file(self) -> None:
        """Check mode: would the log open?  Tried as it will be, leaving no file behind."""
        options = self.options
        if options.log_file is None:
            return
        try:
            if options.log_file.lower() in ("syslog", "sys::syslog"):
                make_sink(options.log_file, options.syslog_ident, options.syslog_facility,
                          options.syslog_logsock).close()
            else:
                daemon.try_appending(options.log_file)
        except (OSError, ValueError) as error:
            raise self._log_file_error(error) from None

    def _log_file_error(self, error: Exception) -> daemon.StartupError:
        reason = getattr(error, "strerror", None) or str(error)
        return daemon.StartupError(f"log_file: cannot open {self.options.log_file!r} "
                                   f"({self.option_origins['log_file']}): {reason}")

    def lock_pid_file(self) -> list[tuple[Any, ...]]:
        """Take the pid file's lock; after a HUP re-exec adopt the one held, or move it.

        A pid_file changed across a HUP is moved: the new path is locked (and
        written in post_bind) before the old one is removed, so the server is
        never without its "already running" guard.  If the new path cannot
        be locked the old file is kept, with a log line.  Runs before the log
        is open: returns the (level, format, *args) lines to log once it is.
        """
        wanted = self.options.pid_file
        inherited = os.environ.pop(daemon.ENV_PIDFILE, "") if self.restarting else ""
        held = daemon.PidFile.inherited(inherited) if inherited else None
        if held is None:
            if wanted:
                pid_file = daemon.PidFile(wanted)
                try:
                    pid_file.acquire()
                except daemon.StartupError as error:
                    if not self.restarting:
                        raise
                    # Added by a HUP: the running server must not die of it (it ran without one).
                    return [(0, "pid_file %s not taken after the restart: %s", wanted, error)]
                self.pid_file = pid_file
                if pid_file.stale:
                    return [(1, "pid_file %s names pid %s, which holds no lock: stale, replacing it", wanted,
                             pid_file.stale)]
            return []
        if wanted and (held.is_at(wanted) or not held.path):
            self.pid_file = held
            return []
        if not wanted:
            held.remove()
            return [(2, "pid_file is no longer configured: removed %s", held.path)]
        moved = daemon.PidFile(wanted)
        try:
            moved.acquire()
        except daemon.StartupError as error:
            self.pid_file = held
            return [(1, "pid_file stays %s: cannot move it to %s (%s)", held.path, wanted, error)]
        self.pid_file, self._pid_file_moved_from = moved, held
        return []

    def pre_bind(self) -> None:
        # Made before any fork, so that every child shares one limit.
        self.denials = RateLimit()
        if self.access.deny_only:
            self.log(1, "Only deny rules are configured: every client will be denied")

    def bind(self) -> None:
        if self.restarting:
            self.restart_open_hook()
        inherited = listen.import_env(os.environ.pop(listen.ENV_FDS, None), self.targets)
        restarted = bool(inherited)
        inherited.update(listen.import_systemd(self.targets, self.log))
        if inherited:
            self.log(2, "Binding open file descriptors")
        self.listeners = listen.bind_all(self.targets, self.options.listen, inherited, self.log,
                                         skip_failures=restarted)
        limit = timeval(self.options.timeout) if self.options.timeout else None
        for listener in self.listeners:
            if limit is not None and listener.proto != "udp":
                # Accepted sockets inherit these: the kernel enforces the client timeout.
                listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
                listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)

    def post_bind(self) -> None:
        options = self.options
        if (options.background or options.setsid) and not self.restarting:
            self._status_fd = daemon.background()
            # Let go of the terminal before any child inherits it; later start-up
            # errors travel to the launcher over the status fd instead.
            daemon.detach_stdio(options.log_file)
        # Logged once everything is bound, so a failed start prints only its
        # error, and after backgrounding, so the pid is the daemon's.
        self.log(2, "%s (type %s) starting! pid(%d)", type(self).__name__, self.personality, os.getpid())
        for listener in self.listeners:
            self.log(2, "%s %s", "Reassociated" if listener.inherited else "Bound to", listener.display())
        if self.pid_file is not None:
            self.pid_file.write(os.getpid())
        if self._pid_file_moved_from is not None:
            self.log(2, "pid_file moved from %s to %s", self._pid_file_moved_from.path, self.pid_file.path)
            self._pid_file_moved_from.remove()
            self._pid_file_moved_from = None
        # Where READY goes; children forked before it is written close these.
        self.ready_fds = [self._status_fd] if self._status_fd >= 0 else []
        if options.ready_fd is not None and not self.restarting:
            self.ready_fds.append(options.ready_fd)
        restart.forget_restart_env()
        self.title_processes()

    #: This process's part in its process title (a supervisor's is "parent").
    title_role = "server"

    def title_processes(self) -> None:
        """Name the processes in ps and top, where setproctitle is installed; else leave them be."""
        from .proctitle import load  # imported here, once the server is bound: start-up errors never pay for it

        setproctitle = load()  # the proctitle extra, loaded once, in the parent
        if setproctitle is None:
            return
        options = self.options
        app = getattr(options, "app", None)
        name = options.proc_name or (app if isinstance(app, str) else None) or options.handler or type(self).__name__
        self._title = lambda role: setproctitle(f"netserver: {role} [{name}]")
        self.set_title(self.title_role)

    def set_title(self, role: str) -> None:
        """``netserver: ROLE [NAME]`` (children get theirs before the fork); nothing without setproctitle."""
        if self._title is not None:
            self._title(role)

    def loop(self) -> None:
        raise NotImplementedError("a personality defines loop()")

    def server_close(self) -> None:
        if self._closed or self.is_child:
            return
        self._closed = True
        if not self._opened:
            return  # the configuration failed, or check mode: nothing was opened
        if not self.log.configured:
            if self.pid_file is not None:
                self.pid_file.remove()  # the log failed to open right after the lock was taken
            return
        self.begin_close()
        if self._serving:
            self.log(2, "Server closing!")
        self.close_listeners()
        self.stop_children()
        self.post_child_cleanup_hook()
        for listener in self.listeners:
            listener.remove_socket_file()
        if self.pid_file is not None:
            self.pid_file.remove()
        self.signals.close()

    def _warn_about_perl_hooks(self) -> None:
        for name, instead in _HOOKS_NOT_CALLED.items():
            if hasattr(self, name):
                self.log(1, "%s is a Net::Server hook that netserver never calls: %s", name, instead)

    def begin_close(self) -> None:
        """The stop's first step: ``pre_server_close_hook``, once, before a child is told to stop."""
        if not self._close_begun:
            self._close_begun = True
            self.pre_server_close_hook()

    # ------------------------------------------------------------- readiness
    def notify_ready(self) -> None:
        """Tell ready_fd (and a waiting background launcher) that we accept."""
        if self._ready_sent:
            return
        self._ready_sent = True
        line = ("READY pid=%d %s\n" % (os.getpid(), " ".join(each.describe() for each in self.listeners))).encode()
        self.log(2, "Ready: %s", line.decode().strip())  # logged first: whoever we tell may read the log
        for fd in self.ready_fds:
            try:
                os.write(fd, line)
                os.close(fd)
            except OSError as error:
                self.log(1, "Could not write the READY line to fd %d: %s", fd, error.strerror)
        self.ready_fds = []
        self._status_fd = -1

    def _report_failure(self, error: NetServerError) -> None:
        if self._status_fd >= 0:
            message = str(error).replace("\n", " ")
            try:
                os.write(self._status_fd, f"EXIT {int(error.exit_code)} {message}\n".encode())
            except OSError:
                pass

    def isolate_forks(self) -> None:
        """Once, before the first fork: what a handler forks gets no listener of ours.

        A process that a handler forks (``os.fork()``, multiprocessing's fork)
        would otherwise keep the listening sockets after the server stops, so
        the kernel would go on queueing connections nobody accepts and a
        restart would fail with "address already in use".  The new process
        also loses the accept lock (a copy of a flock description would keep a
        lock its dead holder took from ever being released) and gets the
        default signal handlers back, so TERM ends it instead of running the
        server's handler in a copy of the child.  It acts only in a process
        forked from one that serves clients (``serves_clients``: a child, or
        Single itself); in the children the supervisor forks it returns at
        once.  Registered in the parent, because registering in each child
        cost every child about 50 KiB of private memory (measured).
        """
        os.register_at_fork(after_in_child=self._forget_server_in_fork)

    def _forget_server_in_fork(self) -> None:
        if not self.serves_clients:
            return  # a child the supervisor itself forked: it sets itself up in run_child
        self.serves_clients = False
        for listener in self.listeners:
            listener.close()
        lock = getattr(self, "lock", None)
        if lock is not None:
            lock.close_in_child()
        self.signals.reset_in_child()

    # ------------------------------------------------------------- stopping
    def close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()

    def stop_children(self) -> None:
        """Forking personalities stop and reap their children here."""

    # ------------------------------------------------------------- signals
    def on_signal(self, signum: int) -> None:
        """Python-level handler (Single): INT abandons the request; TERM, QUIT close an idle client."""
        if signum == signal.SIGINT:
            self.draining = self._stop_requested = True
            if self._in_request:
                raise StopServer(signum)
        elif signum in (signal.SIGTERM, signal.SIGQUIT):
            self.draining = True
            self.close_idle_client()
        elif signum == signal.SIGHUP:
            self.close_idle_client()  # the re-exec waits for the loop, which waits for this client

    def close_idle_client(self) -> None:
        """A graceful stop or a HUP: the current client ends at its next idle point."""
        client = self.client
        if client is not None:
            client.close_when_idle()

    def dispatch_signals(self) -> None:
        for signum in self.signals.take():
            self.dispatch_signal(signum)

    def dispatch_signal(self, signum: int) -> None:
        """Run ``handle_<signal>``; the signals table (signals.py) says what the rest do."""
        name = signal_name(signum)
        handler = getattr(self, "handle_" + name.lower(), None)
        if handler is not None:
            handler(signum)
        elif signum in STOP_TOO:
            self.log(1, "Received %s: stopping as for SIGTERM", name)
            self.handle_sigterm(signum)
        elif signum in IGNORED and signum not in getattr(self, "passthrough", ()):
            self.log(2, "Received %s: ignored", name)

    def handle_sigterm(self, signum: int) -> None:
        self.log(2, "Received %s: stopping", signal_name(signum))
        self.stopping = True
        self.restart.cancel()

    handle_sigint = handle_sigquit = handle_sigterm

    def handle_sighup(self, signum: int) -> None:
        self.restart.request()

    # --------------------------------------------------------- one connection
    def accept_from(self, listener: listen.Listener, client_class: type | None = None) -> Connection | Datagram | None:
        """Take one client from a ready listener; None if another process won.

        ``client_class`` (default ``connection_class``) makes the client of a stream connection.
        """
        sock = listener.sock
        try:
            if listener.proto == "udp":
                data, peer = sock.recvfrom(self.options.udp_recv_len)
                return Datagram(sock, data, peer, listener)
            # socket.accept() converts family and type to enums on every call;
            # with the listener's family kept as an int, the wrapper's work is one line.
            fd, peer = sock._accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._fd_exhausted(error)
                return None
            if error.errno in (errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.EHOSTUNREACH):
                return None
            raise
        conn = socket.socket(listener.family, socket.SOCK_STREAM, 0, fd)
        return (client_class or self.connection_class)(conn, peer, listener, self.options.max_line_length,
                                                       self.options.timeout)

    _emfile_logged = 0.0

    def _fd_exhausted(self, error: OSError) -> None:
        # Out of descriptors: the connection stays queued; back off instead of spinning.
        now = time.monotonic()
        if now - self._emfile_logged >= 1.0:
            self._emfile_logged = now
            self.log(1, "accept failed: %s; backing off", error.strerror)
        time.sleep(0.1)

    def run_client_connection(self, client: Connection | Datagram) -> None:
        self.requests += 1
        ok = False
        try:
            self.client = client
            self._in_request = True
            if self._stop_requested:
                raise StopServer(15)
            ok = self.admit(client)                         # setup, client info, allow/deny
            if ok:
                self.process_request(client)                # user: the service
            else:
                self.request_denied_hook(client)            # user: denied clients
            self.post_process_request_hook(client, ok)      # user
        except LineTooLong as error:
            client.drain_on_close = False
            self.log(2, "Closing connection from %s: %s", self._peer(client), error)
        except (TimeoutError, BlockingIOError):
            client.drain_on_close = False
            self.log(2, "Timed out waiting for %s; closing the connection", self._peer(client))
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as error:
            self.log(3, "Client %s went away: %s", self._peer(client), error.strerror or error)
        except Exception:
            self.log(1, "process_request failed for %s", self._peer(client), exc_info=True)
        finally:
            self._in_request = False
            self.client = None
            self.post_process_request(client)               # close the client
        self.post_client_connection_hook(client)            # user

    def admit(self, client: Connection | Datagram) -> bool:
        """The phases before the service, in order; True if the client is allowed.

        run_client_connection and the HTTP multiplexer (which admits a
        connection when it is accepted, and serves it later) both use it.
        """
        self.post_accept(client)                            # per-connection setup
        self.get_client_info(client)                        # peer names, CONNECT log line
        self.post_accept_hook(client)                       # user
        allowed = self.allow_deny(client)
        ok = bool(allowed and self.allow_deny_hook(client))
        if allowed and not ok:
            self.log_denied(client, "allow_deny_hook")
        return ok

    @staticmethod
    def _peer(client: Connection | Datagram) -> str:
        if client.proto in ("unix", "pipe"):
            return client.listener.display()
        return listen.display_address(client.peeraddr, client.peerport)

    def post_accept(self, client: Connection | Datagram) -> None:
        """Per-connection setup before anything reads from the client."""

    def get_client_info(self, client: Connection | Datagram) -> None:
        if self.options.reverse_lookups and client.proto not in ("unix", "pipe"):
            name = confirmed_hostname(client.peeraddr, self.resolver, self.log)
            client.peerhost = name or client.peeraddr
        if self.log.level >= 3:
            self.log(3, 'CONNECT %s Peer: "%s" Local: "%s"', client.proto.upper(), self._peer(client),
                     client.listener.display())

    def allow_deny(self, client: Connection | Datagram) -> bool:
        policy = self.access
        if policy is None or policy.empty:
            return True
        name = client.peerhost if client.peerhost != client.peeraddr else None
        decision = policy.decide(client.proto, client.peeraddr, name)
        if not decision.allowed:
            self.log_denied(client, decision.rule)
        return decision.allowed

    def log_denied(self, client: Connection | Datagram, rule: str) -> None:
        """A level-2 line per denied client, rate-limited server-wide so that a scan cannot flood the log."""
        if not self.log.enabled(2):
            return
        if self.denials is None:
            self.denials = RateLimit()  # a server built without pre_bind: this process only
        left_out = self.denials.admit()
        if left_out is None:
            return
        if left_out:
            self.log(2, "%d more denied connections were not logged (at most %d lines a second)",
                     left_out, self.denials.per_second)
        self.log(2, "Denied connection from %s: %s", self._peer(client), rule)

    def post_process_request(self, client: Connection | Datagram) -> None:
        client.close()

    def done(self) -> bool:
        """Checked after each connection: True ends the loop (Net::Server's done)."""
        return False

    # ------------------------------------------------------------- the service
    def process_request(self, client: Connection | Datagram) -> None:
        """The demo service: a welcome line, then an echo of each line; 'quit' ends it."""
        name = type(self).__name__.encode()
        pid = os.getpid()
        if client.proto == "udp":
            client.send(b'You said "%s"' % (client.data or b"").rstrip(b"\r\n"))
            return
        client.wfile.write(b'Welcome to "%s" (%d)\r\n' % (name, pid))
        for line in client.rfile:
            line = line.rstrip(b"\r\n")
            if line.strip() == b"quit":
                return
            client.wfile.write(b'%s:%d: You said "%s"\r\n' % (name, pid, line))

    # ------------------------------------------------------------- hooks
    def configure_hook(self) -> None: ...
    def default_values(self) -> dict[str, Any]: return {}
    def post_configure_hook(self) -> None: ...
    def post_bind_hook(self) -> None: ...
    def pre_loop_hook(self) -> None: ...
    def child_init_hook(self) -> None: ...
    def child_finish_hook(self) -> None: ...
    def post_accept_hook(self, client: Any) -> None: ...
    def allow_deny_hook(self, client: Any) -> bool: return True
    def request_denied_hook(self, client: Any) -> None: ...
    def post_process_request_hook(self, client: Any, ok: bool) -> None: ...
    def post_client_connection_hook(self, client: Any) -> None: ...
    def pre_server_close_hook(self) -> None: ...
    def post_child_cleanup_hook(self) -> None: ...
    def restart_open_hook(self) -> None: ...
    def restart_close_hook(self) -> None: ...
    def pre_fork_hook(self) -> None: ...
    def run_n_children_hook(self, count: int) -> None: ...
    def delete_child_hook(self, pid: int) -> None: ...
    def idle_loop_hook(self) -> None: ...
    def pre_accept_hook(self) -> None: ...

    # ------------------------------------------------------------- restart support
    def restart_env(self) -> dict[str, str]:
        """Extra variables the next image needs (PreForkSimple: its children)."""
        return {}

    def restart_failed(self) -> None:
        """The exec failed: undo what restart_env prepared."""

    # ------------------------------------------------------------- helpers
    @classmethod
    def foreign_options(cls) -> dict[str, str]:
        """Options only other personalities declare -> this server's personality, for
        'max_servers: is not valid for Single' messages.

        The personalities are found as the subclasses of Server that name
        themselves (``personality`` in their own class body), so this base
        class names none of them.  Each is imported only when first named, so
        this loads the registry's modules first; it is asked only when an
        option is unknown, so a start-up that goes right never pays for them.
        """
        from . import personalities

        for name in personalities.PERSONALITIES:
            personalities.load(name)
        mine = cls._options_table
        foreign: dict[str, str] = {}
        pending = list(Server.__subclasses__())
        while pending:
            klass = pending.pop()
            pending.extend(klass.__subclasses__())
            if "personality" in klass.__dict__:
                for name in klass._options_table:
                    if name not in mine:
                        foreign[name] = cls.personality
        return foreign


Server._options_table = MappingProxyType(collect(Server))


#: Net::Server hooks with no place here, and what to use instead.
_HOOKS_NOT_CALLED = {
    "write_to_log_hook": "records go to log_file or syslog, through self.log",
    "fatal_hook": "a start-up error is raised (ConfigError, StartupError) and printed by run()",
    "can_read_hook": "the server reads no listener on the application's behalf",
    "parent_read_hook": "with child_communication the parent calls child_is_talking_hook(sock)",
    "cleanup_dead_child_hook": "delete_child_hook(pid) runs for every child reaped",
    "other_child_died_hook": "the parent reaps only its own children",
}


def _refuse_hidden_mixin_methods(cls: type) -> None:
    """A mixin listed after the personality would have its methods hidden by netserver's defaults.

    ``class App(PreForkSimple, Protocol)`` puts Protocol after Server in the
    MRO, so Server's demo ``process_request`` (and every no-op hook) wins
    over the protocol's, silently.  Its options would still be collected, so
    nothing else would tell: refuse the class, naming the order that works.
    """
    mro = cls.__mro__
    after = mro[mro.index(Server) + 1:-1]  # what comes after Server, object left out
    for mixin in after:
        for name in vars(mixin):
            if name.startswith("__") or name == "declared_options":
                continue
            owner = next(klass for klass in mro if name in vars(klass))
            if owner is not mixin and issubclass(owner, Server) and owner.__module__.startswith("netserver."):
                base = next(klass for klass in cls.__bases__ if issubclass(klass, Server))
                raise TypeError(
                    f"{cls.__name__}: {mixin.__name__}.{name} is hidden by {owner.__name__}.{name}, because "
                    f"{mixin.__name__} comes after {base.__name__} in the MRO; list the mixin first: "
                    f"class {cls.__name__}({mixin.__name__}, {base.__name__})")
