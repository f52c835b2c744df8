"""PreFork under load (issue 11): a HUP and runtime pool changes lose no request.

The load client opens one connection per request and never retries (see
test_load_hup.py, whose negative controls show it sees such losses).
"""

from __future__ import annotations

import signal
import time

from fault import loadgen
from support import procs

POOL = ("--server_type", "PreFork", "--handler", "fault_load_handlers:Line", "--min_servers", "2",
        "--max_servers", "8", "--min_spare_servers", "1", "--max_spare_servers", "3", "--check_for_waiting", "0.5",
        "--min_child_ttl", "0", "--max_requests", "100", "--graceful_timeout", "10")


def test_hup_under_load_on_prefork_fails_nothing(serve):
    server = serve(*POOL)
    server.wait_children(2)
    hups = 0
    with loadgen.Load(server.addr, duration=7.0, slow_workers=2, slow_ms=150) as load:
        next_hup = time.monotonic() + 1.0
        while not load.done:
            if hups < 3 and time.monotonic() >= next_hup:
                server.signal(signal.SIGHUP)
                hups += 1
                next_hup += 2.0
            time.sleep(0.05)
    summary = load.summary
    print(f"\nPreFork HUP under load: {summary.describe()}; {hups} HUPs")
    assert hups == 3
    assert summary.total >= 5_000 and summary.failed == 0, (summary.describe(), summary.failures[:20])
    procs.wait_until(lambda: server.log().count("Re-exec server during HUP") >= 2, 10, message="the re-execs")
    assert procs.alive(server.pid) and 2 <= len(server.children()) <= 8


def test_ttin_and_ttou_under_load_on_prefork_fail_nothing(serve):
    server = serve(*POOL)
    server.wait_children(2)
    sent = []
    with loadgen.Load(server.addr, duration=5.0, slow_workers=2, slow_ms=100) as load:
        time.sleep(0.5)
        for signum in (signal.SIGTTIN, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTTIN, signal.SIGTTOU,
                       signal.SIGTTOU, signal.SIGTTOU):
            if load.done:
                break
            server.signal(signum)  # one at a time: standard signals pending together merge
            sent.append(signum)
            time.sleep(0.4)
    summary = load.summary
    print(f"\nPreFork TTIN/TTOU under load: {summary.describe()}; {len(sent)} signals")
    assert len(sent) == 7
    assert summary.failed == 0, (summary.describe(), summary.failures[:20])
    log = server.log()
    assert log.count("Received SIGTTIN: min_servers") == 3 and log.count("Received SIGTTOU: min_servers") >= 3
    assert procs.alive(server.pid)
