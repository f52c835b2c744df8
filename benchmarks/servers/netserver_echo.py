"""netserver's PreForkSimple (or PreFork) as a line-echo server, driven by its own options.

    python netserver_echo.py --port=127.0.0.1:P [--port=127.0.0.1:P2] \
        --max_servers=N --max_requests=0 --serialize=auto --log_level=0 [--once] [--ready_fd=FD]

Every argument is handed to netserver unchanged, so this measures the
package as a user would run it.  ``--once`` is an option this server declares
the way any netserver user would: echo one line and close (workload 1, as the
floors and Perl do), instead of echoing lines until the client's EOF.

NETSERVER_BENCH_PERSONALITY names the personality (default PreForkSimple; the
``netserver-prefork``, ``netserver-fork`` and ``netserver-inet`` peers set PreFork, Fork and INET), so
every netserver peer runs this one handler.

NETSERVER_BENCH_VARIANT (unset for every figure in the tables) selects a
variant that shows the effect of one memory measure (README, "Memory"):

* ``no-freeze``: ``gc.freeze()`` before forking made a no-op;
* ``stdlib-logging``: ``logging`` imported before forking, so every child
  runs ``threading``'s at-fork hook (what netserver's own log writer avoids);
* ``app-in-parent`` / ``app-in-child``: a typical application's modules
  (json, decimal, email, http.client) imported before forking, or by each
  child in ``child_init_hook``;
* ``fork-one-by-one``: the pool forked one child at a time with the parent's
  bookkeeping in between, as before netserver forked it in one burst.
"""

import gc
import os
import sys

import netserver
from netserver import Option
from netserver.options import boolean

VARIANT = os.environ.get("NETSERVER_BENCH_VARIANT", "")
# Looked up by name, so that an older commit (netserver@REV) without Fork or INET still runs PreForkSimple.
BASE = getattr(netserver, os.environ.get("NETSERVER_BENCH_PERSONALITY", "PreForkSimple"))
APP_MODULES = ("json", "decimal", "email.message", "http.client")


def import_app() -> None:
    import importlib

    for name in APP_MODULES:
        importlib.import_module(name)


if VARIANT == "no-freeze":
    gc.freeze = lambda: None
elif VARIANT == "stdlib-logging":
    import logging  # noqa: F401
elif VARIANT == "app-in-parent":
    import_app()
elif VARIANT not in ("", "app-in-child", "fork-one-by-one"):
    sys.exit("NETSERVER_BENCH_VARIANT: unknown variant %r" % VARIANT)

class Echo(BASE):
    declared_options = BASE.declared_options + (
        Option("once", boolean, False, "Echo one line, then close. Default off.", flag=True, metavar="BOOL"),
    )

    def default_values(self):
        values = super().default_values()
        if "proc_name" in self.option_table():  # netserver@REV of an older commit has no titles
            values["proc_name"] = "benchmarks/servers/netserver_echo.py"  # what test_smoke looks for
        return values

    def top_up(self):
        if VARIANT != "fork-one-by-one":
            return super().top_up()
        if self.stopping or self._backoff is not None:
            return
        for _ in range(self.options.max_servers - self.children.count("server")):
            if not self.spawn("server") or self._backoff is not None:
                break
        return None

    def child_init_hook(self):
        if VARIANT == "app-in-child":
            import_app()

    def process_request(self, client):
        if self.options.once:
            client.wfile.write(client.rfile.readline())
            return
        for line in client.rfile:
            client.wfile.write(line)


if __name__ == "__main__":
    Echo().run(argv=sys.argv[1:])
