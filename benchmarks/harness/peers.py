"""Server adapters: one small class per peer.

An adapter says how to make the peer available (build or install it), the
command that starts it with N workers on given ports with a serialization
mode, which kernel wait channels mean "this child is waiting for a
connection" (its accept path), and what it supports (listeners, modes, HUP).
Everything else (starting, readiness, stopping) is shared in servers.py.

To add a peer: subclass Peer, fill in the class attributes and command(),
and add it to PEERS.  The HTTP peers (http_peers.py: gunicorn, granian,
Starman, the httptools floors) plug in the same way with protocols =
("http",); each workload runs only the peers that speak its protocol.

Accept path tokens (substrings of /proc/PID/wchan):
  inet_csk_accept         blocked in accept()
  poll_schedule_timeout   blocked in select()/poll() on the listeners
  do_epoll_wait           blocked in epoll_wait() on the listeners
  locks_lock_inode_wait   waiting for the flock() accept lock
  semtimedop              waiting for the SysV semaphore accept lock
  pipe_read               waiting for the pipe token accept lock
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import tools

ACCEPT = "inet_csk_accept"
SELECT = "poll_schedule_timeout"
EPOLL = "do_epoll_wait"
LOCKS = ("locks_lock_inode_wait", "semtimedop", "pipe_read")


@dataclass(frozen=True)
class Launch:
    """What one server start asks for."""

    ports: tuple[int, ...]
    workers: int
    variant: str  # "default", a serialize mode ("flock", "semaphore", "pipe", "select"), or "growth"
    once: bool  # the workload sends one request per connection
    protocol: str = "line"  # "line" (the echo workloads) or "http" (http_workloads.py)


class Peer:
    """Base adapter; subclasses override the attributes and command()."""

    name = ""  # the --servers name
    label = ""  # how the report names it
    wchan: tuple[str, ...] = (ACCEPT,)
    max_listeners = 1
    # Variants run with two listeners; "select" = no lock, every child selects on both.
    multi_listener_variants: tuple[str, ...] = ()
    supports_hup = False
    protocols: tuple[str, ...] = ("line",)  # what it serves: "line" echo, "http" (the hello-world app)
    note = ""  # one line for the README's peer table
    workloads: tuple[str, ...] = ("1", "2", "3", "4")  # the workloads this peer takes part in
    # False: no pre-forked pool (Fork): the parent itself waits in the accept path, and children
    # exist only while they serve, so workload 4 has start-up only.
    pool = True
    perl_peer = "perl"  # the Perl peer its "x Perl" ratio divides by: the same process model
    grows = False  # a dynamic pool: runs the growth workload (workload 6)

    def prepare(self, may_install: bool) -> str | None:
        """Make the peer runnable; None when it is, else why it is skipped."""
        return None

    def takes(self, workload: str, protocol: str) -> bool:
        """Whether this peer runs in a workload: it speaks the protocol, and a line workload is one of its own."""
        return protocol in self.protocols and (protocol != "line" or workload in self.workloads)

    def command(self, launch: Launch) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def variants(self, listeners: int) -> tuple[str, ...]:
        if listeners == 1:
            return ("default",)
        if listeners <= self.max_listeners:
            return self.multi_listener_variants
        return ()


def floor_args(launch: Launch) -> list[str]:
    """The command line both floors share: --workers N, --port HOST:P per port, --once."""
    args = ["--workers", str(launch.workers)]
    for p in launch.ports:
        args += ["--port", "127.0.0.1:%d" % p]
    return args + (["--once"] if launch.once else [])


class CFloor(Peer):
    name = "c-floor"
    label = "C floor"
    wchan = (ACCEPT, SELECT)
    max_listeners = 2
    multi_listener_variants = ("select",)
    note = "benchmarks/servers/cfloor.c: N children block in accept(); two listeners: poll() + non-blocking accept()"

    def command(self, launch: Launch) -> list[str]:
        return [str(tools.binary("cfloor")), *floor_args(launch)]


class PythonFloor(Peer):
    name = "python-floor"
    label = "Python floor"
    wchan = (ACCEPT, SELECT)
    max_listeners = 2
    multi_listener_variants = ("select",)
    note = "benchmarks/servers/pyfloor.py: plain Python, N children block in accept(); two listeners: select()"

    def env(self) -> dict[str, str]:
        return tools.python_env()

    def command(self, launch: Launch) -> list[str]:
        return tools.python_command(tools.BENCH_DIR / "servers" / "pyfloor.py", *floor_args(launch))


class Perl(Peer):
    name = "perl"
    label = "Perl PreForkSimple"
    wchan = (ACCEPT, SELECT) + LOCKS
    max_listeners = 2
    multi_listener_variants = ("flock", "semaphore", "pipe")
    supports_hup = True
    note = "Net::Server::PreForkSimple (Debian libnet-server-perl); its default serialize is flock even for one port"

    def prepare(self, may_install: bool) -> str | None:
        probe = ["perl", "-MNet::Server::PreForkSimple", "-e", "1"]
        ok, _ = tools.run_quiet(probe, timeout=30)
        if ok:
            return None
        if not may_install:
            return "Net::Server is not installed (apt-get install -y libnet-server-perl) and --no-install was given"
        ok, tail = tools.apt_install("libnet-server-perl")
        if ok and tools.run_quiet(probe, timeout=30)[0]:
            return None
        return "could not install libnet-server-perl: %s" % tail

    def command(self, launch: Launch) -> list[str]:
        cmd = ["perl", str(tools.BENCH_DIR / "servers" / "perl_preforksimple.pl")]
        cmd += ["--port=127.0.0.1:%d" % p for p in launch.ports]
        cmd += ["--max_servers=%d" % launch.workers, "--max_requests=1000000000", "--log_level=0", "--listen=1024"]
        if launch.variant != "default":
            cmd.append("--serialize=%s" % launch.variant)
        return cmd + (["--once"] if launch.once else [])


# The growth workload: the pool starts at GROWTH_FROM children (Launch.workers, so readiness
# waits for them) and must cover GROWTH_TO held connections; both PreForks get these settings.
GROWTH_FROM, GROWTH_TO = 2, 32
GROWTH_SPARES = (2, 10)  # min_spare_servers, max_spare_servers (Net::Server's defaults)


def pool_args(launch: Launch) -> list[str]:
    """PreFork's pool options: pinned to N (min = max = N; spares can move nothing), or the growth settings."""
    if launch.variant == "growth":
        sizes = (launch.workers, GROWTH_TO) + GROWTH_SPARES
    else:
        sizes = (launch.workers, launch.workers, 1, max(1, launch.workers - 1))
    names = ("min_servers", "max_servers", "min_spare_servers", "max_spare_servers")
    return ["--%s=%d" % pair for pair in zip(names, sizes, strict=True)]


class PerlPreFork(Perl):
    name = "perl-prefork"
    label = "Perl PreFork"
    perl_peer = "perl-prefork"
    grows = True
    note = (
        "Net::Server::PreFork (the same Debian package), servers/perl_preforksimple.pl --personality=PreFork; "
        "throughput with the pool pinned (min_servers = max_servers = N)"
    )

    def command(self, launch: Launch) -> list[str]:
        cmd = super().command(Launch(launch.ports, launch.workers, "default" if launch.variant == "growth"
                                     else launch.variant, launch.once))
        cmd = [arg for arg in cmd if not arg.startswith("--max_servers=")]
        return cmd[:2] + ["--personality=PreFork"] + cmd[2:] + pool_args(launch)


class PyPrefork(Peer):
    name = "py-prefork"
    label = "py-prefork-server"
    wchan = (EPOLL, ACCEPT)
    note = (
        "PyPI py-prefork-server 0.5.0: children epoll() on the shared socket, then a blocking accept(); "
        "one listener only, no HUP restart (the handler is a no-op)"
    )

    def prepare(self, may_install: bool) -> str | None:
        probe = "import preforkserver"
        if tools.python_can_import(probe)[0]:
            return None
        if not may_install:
            return "py-prefork-server is not installed (pip install py-prefork-server) and --no-install was given"
        ok, tail = tools.pip_install("py-prefork-server")
        if ok and tools.python_can_import(probe)[0]:
            return None
        return "could not pip install py-prefork-server: %s" % tail

    def env(self) -> dict[str, str]:
        return tools.python_env()

    def command(self, launch: Launch) -> list[str]:
        cmd = tools.python_command(
            tools.BENCH_DIR / "servers" / "pyprefork_echo.py",
            "--workers",
            str(launch.workers),
            "--port",
            "127.0.0.1:%d" % launch.ports[0],
        )
        return cmd + (["--once"] if launch.once else [])


class NetServer(Peer):
    name = "netserver"
    label = "netserver"
    wchan = (ACCEPT, SELECT, EPOLL) + LOCKS
    max_listeners = 2
    multi_listener_variants = ("flock", "semaphore", "pipe")
    supports_hup = True
    protocols = ("line", "http")
    note = "this project (src/netserver), PreForkSimple with serialize=auto for one port"
    src = tools.REPO_DIR / "src"  # the tree whose package runs (revisions.NetServerAt: another commit's)

    def env(self) -> dict[str, str]:
        # Works from a checkout without `pip install -e`; an installed copy
        # comes later on sys.path than src/, so the checkout wins.
        return tools.python_env(first=(str(self.src),))

    def prepare(self, may_install: bool) -> str | None:
        # Started as the server is (python -S, this env), so the check sees the
        # package the server will import, and that it is the one in self.src.
        probe = "import netserver; netserver.PreForkSimple; print(netserver.__file__)"
        ok, tail = tools.run_quiet([sys.executable, "-S", "-c", probe], timeout=60, env=self.env())
        if not ok:
            return "the netserver package is not importable yet (import netserver; netserver.PreForkSimple: %s)" % (
                tail.splitlines()[-1] if tail else "failed"
            )
        found = Path(tail.splitlines()[-1]).resolve()
        if not found.is_relative_to(self.src.resolve()):
            return "netserver was imported from %s, not from %s" % (found, self.src)
        return None

    def command(self, launch: Launch) -> list[str]:
        if launch.protocol == "http":
            from .http_peers import netserver_http_command

            return netserver_http_command(launch)
        cmd = tools.python_command(tools.BENCH_DIR / "servers" / "netserver_echo.py")
        cmd += ["--port=127.0.0.1:%d" % p for p in launch.ports]
        cmd += self.pool_args(launch) + ["--max_requests=0", "--log_level=0"]
        cmd.append("--serialize=%s" % ("auto" if launch.variant in ("default", "growth") else launch.variant))
        return cmd + (["--once"] if launch.once else [])

    def pool_args(self, launch: Launch) -> list[str]:
        return ["--max_servers=%d" % launch.workers]


class NetServerPreFork(NetServer):
    """netserver's PreFork: the same script and handler on PreFork (NETSERVER_BENCH_PERSONALITY)."""

    name = "netserver-prefork"
    label = "netserver PreFork"
    protocols = ("line",)  # its HTTP twin is http_peers' netserver-prefork-http
    perl_peer = "perl-prefork"
    grows = True
    note = "this project's PreFork, the same handler; throughput with the pool pinned (min_servers = max_servers = N)"

    def env(self) -> dict[str, str]:
        return dict(super().env(), NETSERVER_BENCH_PERSONALITY="PreFork")

    def pool_args(self, launch: Launch) -> list[str]:
        return pool_args(launch)


class ForkPeer(Peer):
    """A fork-per-connection server (workloads 1 and 4): N is its max_servers; no pool, no HUP figure."""

    max_listeners = 1
    multi_listener_variants = ()
    supports_hup = False
    workloads = ("1", "4")
    pool = False
    perl_peer = "perl-fork"

    @staticmethod
    def fork_args(launch: Launch) -> list[str]:
        args = ["--port=127.0.0.1:%d" % p for p in launch.ports]
        args += ["--max_servers=%d" % launch.workers, "--log_level=0", "--listen=1024"]
        return args + (["--once"] if launch.once else [])


class PerlFork(ForkPeer, Perl):
    name = "perl-fork"
    label = "Perl Fork"
    wchan = (SELECT,)
    note = "Net::Server::Fork (Debian libnet-server-perl): the parent select()s, accepts and forks per connection"

    def command(self, launch: Launch) -> list[str]:
        return ["perl", str(tools.BENCH_DIR / "servers" / "perl_fork.pl"), *self.fork_args(launch)]


class NetServerFork(ForkPeer, NetServer):
    name = "netserver-fork"
    label = "netserver Fork"
    protocols = ("line",)
    wchan = (EPOLL,)
    note = "this project's Fork: the parent epoll()s, accepts and forks per connection, at most max_servers"

    def env(self) -> dict[str, str]:
        return dict(super().env(), NETSERVER_BENCH_PERSONALITY="Fork")

    def command(self, launch: Launch) -> list[str]:
        return tools.python_command(tools.BENCH_DIR / "servers" / "netserver_echo.py", *self.fork_args(launch))


class PerlInet(Perl):
    """Started per connection by the superserver (workload 5); never on a port of its own."""

    name = "perl-inet"
    label = "Perl INET"
    workloads = ("5",)
    perl_peer = "perl-inet"
    note = "Net::Server::INET (Debian libnet-server-perl) under systemd-socket-activate --inetd -a"

    def inet_command(self) -> list[str]:
        return ["perl", str(tools.BENCH_DIR / "servers" / "perl_inet.pl"), "--log_level=0", "--once"]


class NetServerInet(NetServer):
    name = "netserver-inet"
    label = "netserver INET"
    protocols = ("line",)
    workloads = ("5",)
    perl_peer = "perl-inet"
    note = "this project's INET under systemd-socket-activate --inetd -a (python -S, as the other Python peers)"

    def env(self) -> dict[str, str]:
        return dict(super().env(), NETSERVER_BENCH_PERSONALITY="INET")

    def inet_command(self) -> list[str]:
        return tools.python_command(tools.BENCH_DIR / "servers" / "netserver_echo.py", "--log_level=0", "--once")


class NetServerVariant(NetServer):
    """netserver with one memory measure changed (servers/netserver_echo.py, NETSERVER_BENCH_VARIANT)."""

    variant = ""

    def env(self) -> dict[str, str]:
        return dict(super().env(), NETSERVER_BENCH_VARIANT=self.variant)


def _variant(variant: str, what: str) -> type[NetServerVariant]:
    attrs = {
        "name": "netserver-" + variant,
        "label": "netserver, " + what,
        "variant": variant,
        "note": "memory effect: " + what,
    }
    return type("NetServer_" + variant.replace("-", "_"), (NetServerVariant,), attrs)


PEERS: dict[str, type[Peer]] = {
    cls.name: cls
    for cls in (CFloor, PythonFloor, Perl, PerlPreFork, PyPrefork, NetServer, NetServerPreFork, PerlFork,
                NetServerFork, PerlInet, NetServerInet)
}
#: Not run unless named in --servers: each shows the effect of one memory measure.
VARIANTS: dict[str, type[Peer]] = {
    cls.name: cls
    for cls in (
        _variant("no-freeze", "no gc.freeze()"),
        _variant("stdlib-logging", "stdlib logging imported"),
        _variant("app-in-parent", "app modules imported before fork"),
        _variant("app-in-child", "app modules imported in each child"),
        _variant("fork-one-by-one", "children forked one by one"),
    )
}
# The HTTP peers subclass Peer and NetServer above, so they are imported last.
from .http_peers import HTTP_PEERS  # noqa: E402

PEERS.update(HTTP_PEERS)
FLOOR = PythonFloor.name
PERL = Perl.name

#: Every peer --servers may name, in the order tables list them.
ALL: dict[str, type[Peer]] = {**PEERS, **VARIANTS}
