"""The HTTP peers: each serves the hello-world application of the HTTP workloads.

Python peers serve ``servers/hello_wsgi.py`` (imported as
``servers.hello_wsgi:app``: every server runs from benchmarks/, and ``python
-m`` puts that directory on sys.path), the Perl ones ``servers/hello.psgi``;
both return the same 14-byte body with its Content-Length.  Every pool is N
workers (the HTTP workloads run N = 4), access logs off, no request limit
per worker.

Accept path tokens as in peers.py, plus ``futex`` for granian, whose workers'
main threads wait on a futex while its Rust runtime serves; since that token
says little, the HTTP workloads also check every server with one GET before
measuring it.
"""

from __future__ import annotations

import sys

from . import tools
from .peers import ACCEPT, EPOLL, LOCKS, SELECT, Launch, NetServer, Peer

SERVERS = tools.BENCH_DIR / "servers"
WSGI_APP = "servers.hello_wsgi:app"
PSGI_APP = str(SERVERS / "hello.psgi")
FUTEX = "futex"
HTTP_WORKERS = 4  # every HTTP workload runs pools of 4 workers, whatever --workers says


def netserver_http_command(launch: Launch, personality: tuple[str, ...] = ()) -> list[str]:
    """netserver --app on the hello app (the netserver and netserver@REV peers under HTTP)."""
    return (
        [sys.executable, "-S", "-m", "netserver", "--app", WSGI_APP, "--port=127.0.0.1:%d" % launch.ports[0]]
        + (list(personality) or ["--max_servers=%d" % launch.workers])
        + ["--max_requests=0", "--log_level=0"]
    )


class HTTPPeer(Peer):
    protocols = ("http",)
    module = ""  # the Python module prepare() checks, and pip installs when missing
    package = ""  # its PyPI name

    def prepare(self, may_install: bool) -> str | None:
        probe = "import " + self.module
        if tools.python_can_import(probe)[0]:
            return None
        if not may_install:
            return "%s is not installed (pip install %s) and --no-install was given" % (self.module, self.package)
        ok, tail = tools.pip_install(self.package)
        if ok and tools.python_can_import(probe)[0]:
            return None
        return "could not pip install %s: %s" % (self.package, tail)

    def env(self) -> dict[str, str]:
        return tools.python_env()


class HTTPFloor(HTTPPeer):
    name = "http-floor"
    label = "httptools floor, 1 conn/child"
    wchan = (ACCEPT,)
    module = package = "httptools"
    flags: tuple[str, ...] = ()
    note = "benchmarks/servers/httpfloor.py: N children block in accept(), each serves one connection until it closes"

    def command(self, launch: Launch) -> list[str]:
        args = ("--port", "127.0.0.1:%d" % launch.ports[0], "--workers", str(launch.workers), *self.flags)
        return tools.python_command(SERVERS / "httpfloor.py", *args)


class HTTPFloorEpoll(HTTPFloor):
    name = "http-floor-epoll"
    label = "httptools floor, epoll"
    wchan = (EPOLL,)
    flags = ("--epoll",)
    note = "servers/httpfloor.py --epoll: each of N children multiplexes the listener and its connections with epoll"


class NetServerPreForkHTTP(NetServer):
    name = "netserver-prefork-http"
    label = "netserver PreFork"
    protocols = ("http",)
    note = "netserver --app --server_type PreFork, pool pinned to N (min = max = N, spares 1 and N - 1)"

    def command(self, launch: Launch) -> list[str]:
        n = launch.workers
        pool = ("--server_type=PreFork", "--min_servers=%d" % n, "--max_servers=%d" % n)
        pool += ("--min_spare_servers=1", "--max_spare_servers=%d" % max(1, n - 1))
        return netserver_http_command(launch, pool)


class GunicornSync(HTTPPeer):
    name = "gunicorn-sync"
    label = "gunicorn sync"
    wchan = (SELECT,)
    module = package = "gunicorn"
    worker_args: tuple[str, ...] = ()
    note = "gunicorn -w N (sync workers: one request at a time, no keep-alive)"

    def command(self, launch: Launch) -> list[str]:
        return [sys.executable, "-S", "-m", "gunicorn", "-w", str(launch.workers), *self.worker_args]  + [
            "-b", "127.0.0.1:%d" % launch.ports[0], "--log-level", "warning", WSGI_APP]  # fmt: skip


class GunicornGthread(GunicornSync):
    name = "gunicorn-gthread"
    label = "gunicorn gthread x4"
    wchan = (EPOLL,)
    worker_args = ("-k", "gthread", "--threads", "4")
    note = "gunicorn -w N -k gthread --threads 4 (keep-alive, 4 threads per worker)"


class Granian(HTTPPeer):
    name = "granian"
    label = "granian WSGI"
    wchan = (FUTEX, EPOLL)
    module = package = "granian"
    note = (
        "granian --interface wsgi --workers N, its defaults: 1 runtime thread per worker and a pool of blocking "
        "threads that grows on demand (the threads seen per worker after each run are in the JSON)"
    )

    def command(self, launch: Launch) -> list[str]:
        return [sys.executable, "-S", "-m", "granian", "--interface", "wsgi", "--workers", str(launch.workers)] + [
            "--host", "127.0.0.1", "--port", str(launch.ports[0]), "--no-log", WSGI_APP]  # fmt: skip


class PerlHTTPPeer(Peer):
    protocols = ("http",)
    wchan = (ACCEPT, SELECT) + LOCKS
    apt_package = "libnet-server-perl"
    probe: tuple[str, ...] = ()

    def prepare(self, may_install: bool) -> str | None:
        if tools.run_quiet(list(self.probe), timeout=30)[0]:
            return None
        if not may_install:
            return "%s is missing (apt-get install -y %s) and --no-install was given" % (self.name, self.apt_package)
        ok, tail = tools.apt_install(self.apt_package)
        if ok and tools.run_quiet(list(self.probe), timeout=30)[0]:
            return None
        return "could not install %s: %s" % (self.apt_package, tail)


class Starman(PerlHTTPPeer):
    name = "starman"
    label = "Starman"
    apt_package = "starman"
    probe = ("starman", "--version")
    note = "Starman (Debian starman), on Net::Server::PreFork: --workers N, keep-alive on (its default), "
    note += "--max-requests 10^9 (its default 1000 would recycle workers mid-run)"

    def command(self, launch: Launch) -> list[str]:
        return ["starman", "--workers", str(launch.workers), "--listen", "127.0.0.1:%d" % launch.ports[0]] + [
            "--max-requests", "1000000000", "--backlog", "1024", PSGI_APP]  # fmt: skip


class PerlPSGI(PerlHTTPPeer):
    name = "perl-http"
    label = "Perl Net::Server::HTTP"
    probe = ("perl", "-MNet::Server::PSGI", "-e", "1")
    note = "Net::Server::PSGI (Net::Server::HTTP's PSGI class) on PreFork pinned to N, servers/perl_psgi.pl; "
    note += "HTTP/1.0, closes after every response"

    def command(self, launch: Launch) -> list[str]:
        return ["perl", str(SERVERS / "perl_psgi.pl"), "--port=127.0.0.1:%d" % launch.ports[0]] + [
            "--workers=%d" % launch.workers]  # fmt: skip


HTTP_PEERS: dict[str, type[Peer]] = {
    cls.name: cls
    for cls in (NetServerPreForkHTTP, HTTPFloor, HTTPFloorEpoll, GunicornSync, GunicornGthread, Granian, Starman)
    + (PerlPSGI,)
}
GRANIAN = Granian.name
MUX_FLOOR = HTTPFloorEpoll.name
STARMAN = Starman.name
