"""No per-connection leak in a child (reliability.md D1, D2).

Between connection 1,000 and 10,000 through the same four children
(max_requests 0), each child's descriptor count must not change and its RSS
must grow by at most 256 KiB.  The same check run against a handler that
keeps 1 KiB per request must report it: that is the check's negative control.
"""

from __future__ import annotations

import pytest

from fault import loadgen
from support import procs

RSS_BUDGET_KIB = 256
ACCEPT_WAIT = "do_epoll_wait"


def usage(pids: list[int]) -> dict[int, tuple[int, int]]:
    """pid -> (open descriptors, VmRSS in KiB)."""
    return {pid: (procs.fd_count(pid), int(procs.status_field(pid, "VmRSS").split()[0])) for pid in pids}


def leak_problems(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]],
                  rss_budget_kib: int = RSS_BUDGET_KIB) -> list[str]:
    """What grew between two usage() samples of the same children; empty when nothing leaked."""
    problems = []
    if set(before) != set(after):
        problems.append(f"not the same children: {sorted(before)} then {sorted(after)}")
    for pid in sorted(set(before) & set(after)):
        (fds0, rss0), (fds1, rss1) = before[pid], after[pid]
        if fds1 != fds0:
            problems.append(f"child {pid}: {fds0} descriptors, then {fds1}")
        if rss1 - rss0 > rss_budget_kib:
            problems.append(f"child {pid}: RSS {rss0} KiB, then {rss1} KiB (+{rss1 - rss0} > {rss_budget_kib})")
    return problems


def idle(server, kids: list[int]) -> None:
    """Wait until every child is back in accept, so that no request is half-way through."""
    procs.wait_until(lambda: all(procs.wchan(pid) == ACCEPT_WAIT for pid in kids), 5, message="idle children")


@pytest.mark.parametrize("handler, leaks", [("fault_load_handlers:LinePid", False),
                                            ("fault_load_handlers:LeakyPid", True)],
                         ids=["line", "control-leaky"])
def test_connections_1000_to_10000_leak_nothing_in_the_children(serve, handler, leaks):
    server = serve("--handler", handler, "--max_servers", "4", "--max_requests", "0")
    kids = server.wait_children(4)
    warm = loadgen.run(server.addr, count=1_000, duration=30, answer="pid")
    idle(server, kids)
    before = usage(kids)
    rest = loadgen.run(server.addr, count=9_000, duration=60, answer="pid")
    idle(server, kids)
    after = usage(kids)
    problems = leak_problems(before, after)
    served = warm.pids + rest.pids
    print(f"\n{handler}: {rest.describe()}; requests per child {dict(served)}; "
          f"(fds, RSS KiB) before {before} after {after}")

    assert warm.ok == 1_000 and rest.ok == 9_000, (warm.describe(), rest.describe())
    assert set(served) <= set(kids) and server.children() == kids  # the same children all along
    if leaks:
        assert problems, "the leak check missed 1 KiB kept per request"
        assert any("RSS" in problem for problem in problems)
    else:
        assert problems == []
