"""HTTP under load (reliability.md rows 18-19): a HUP loses no request, a killed child costs only its own.

The clients are wrk and ab, real HTTP clients nobody here wrote, bounded to
a few seconds on 127.0.0.1.  wrk counts every connect, read, write and
timeout error and every non-2xx/3xx answer; ab counts failed requests.
Keep-alive runs 50 connections on 4 children, which hold several each.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from support import procs

pytestmark = pytest.mark.skipif(any(shutil.which(tool) is None for tool in ("wrk", "ab", "ss")),
                                reason="wrk, ab and ss are installed by .ci/run (apt wrk, apache2-utils, iproute2)")
APP = "http_load_apps:slow"


def wrk(url: str, seconds: float, connections: int, close: bool = False) -> dict[str, int]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", url]
    if close:
        command[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    found = re.search(r"(\d+) requests in", out)
    assert found, out
    result = {"requests": int(found.group(1)), "errors": 0, "non2xx": 0}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        result["errors"] = sum(int(n) for n in errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        result["non2xx"] = int(non2xx.group(1))
    result["output"] = out  # type: ignore[assignment]
    return result


def held_connections(port: int) -> dict[int, int]:
    """pid -> established TCP connections it holds on the server's port (ss, over netlink: fast
    even with tens of thousands of TIME_WAIT entries, which make /proc/net/tcp slow to read)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout
    held: dict[int, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        held[int(pid)] = held.get(int(pid), 0) + 1
    return held


def hup_every(server, interval: float, count: int, stop: threading.Event) -> list[float]:
    sent = []
    while len(sent) < count and not stop.wait(interval):
        server.signal(signal.SIGHUP)
        sent.append(time.monotonic())
    return sent


def url(server, path: str = "/") -> str:
    host, port = server.addr
    return f"http://{host}:{port}{path}"


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "close"])
def test_hup_every_2s_under_wrk_load_fails_nothing(serve, close):
    server = serve("--app", APP, "--max_servers", "4", "--max_requests", "0", "--graceful_timeout", "10")
    server.wait_children(4)
    stop = threading.Event()
    hups: list[float] = []
    thread = threading.Thread(target=lambda: hups.extend(hup_every(server, 2.0, 4, stop)))
    thread.start()
    try:
        # Keep-alive: 50 connections on 4 children, each holding several (http_mux).
        result = wrk(url(server), 9, 4 if close else 50, close=close)
    finally:
        stop.set()
        thread.join(10)
    print(f"\nHTTP HUP under wrk ({'close' if close else 'keep-alive'}): {result['requests']} requests, "
          f"{len(hups)} HUPs, {result['errors']} socket errors, {result['non2xx']} non-2xx")
    assert len(hups) == 4
    assert result["requests"] >= 2000, result["output"]
    assert result["errors"] == 0 and result["non2xx"] == 0, result["output"]
    procs.wait_until(lambda: server.log().count("Re-exec server during HUP") >= 4, 10, message="a re-exec per HUP")
    assert procs.alive(server.pid)


def test_hup_under_ab_with_slow_requests_fails_nothing(serve):
    server = serve("--app", APP, "--max_servers", "4", "--max_requests", "50", "--graceful_timeout", "10")
    server.wait_children(4)
    stop = threading.Event()
    thread = threading.Thread(target=hup_every, args=(server, 1.0, 3, stop))
    thread.start()
    try:
        out = subprocess.run(["ab", "-q", "-n", "600", "-c", "4", "-s", "10", url(server, "/slow")],
                             capture_output=True, text=True, timeout=60).stdout
    finally:
        stop.set()
        thread.join(10)
    assert re.search(r"Complete requests:\s+600", out), out
    assert re.search(r"Failed requests:\s+0", out), out
    assert "Non-2xx" not in out, out


@pytest.mark.parametrize("per_child", ["100", "1"], ids=["multiplexing", "one-connection"])
def test_kill_9_a_child_under_wrk_load_costs_only_its_connections(serve, per_child):
    server = serve("--app", APP, "--max_servers", "4", "--max_requests", "0", "--max_connections", per_child)
    first = server.wait_children(4)
    stop = threading.Event()
    killed: list[int] = []
    held: list[int] = []

    def kill_some():
        for _ in range(3):
            if stop.wait(1.0):
                return
            holding = held_connections(server.addr[1])
            victim = max(server.children(), key=lambda pid: holding.get(pid, 0))
            held.append(holding.get(victim, 0))
            killed.append(victim)
            os.kill(victim, signal.SIGKILL)

    thread = threading.Thread(target=kill_some)
    thread.start()
    try:
        result = wrk(url(server), 5, 4)
    finally:
        stop.set()
        thread.join(10)
    print(f"\nHTTP kill -9 under wrk ({per_child} per child): {result['requests']} requests, {len(killed)} kills "
          f"of children holding {held} connections, {result['errors']} socket errors, {result['non2xx']} non-2xx")
    assert len(killed) == 3 and all(held), held
    # A killed child costs at most a request on each connection it held, and nothing elsewhere.
    assert result["errors"] <= sum(held), result["output"]
    assert result["non2xx"] == 0, result["output"]
    assert result["requests"] >= 2000, result["output"]
    after = server.wait_children(4, exclude=killed)
    assert not set(after) & set(killed) and set(after) != set(first)
