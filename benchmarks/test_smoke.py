"""Smoke test of the benchmark suite: a quick run produces its table and JSON.

Runs the two floors and netserver, and an A/B of netserver at HEAD (from a
git worktree) against the work tree, so it needs gcc and git but neither Perl
nor the network, and it takes a few seconds.  The real figures come from a
full run (see README.md); nothing here asserts a performance number.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent
RUN = BENCH / "run.py"
sys.path.insert(0, str(BENCH))

from harness import ab, revisions  # noqa: E402

SERVER_MARKERS = (
    "benchmarks/servers/pyfloor.py",
    "benchmarks/build/cfloor",
    "benchmarks/servers/netserver_echo.py",
    "benchmarks/servers/httpfloor.py",
    "servers.hello_wsgi:app",
    "servers/hello.psgi",
)  # a titled netserver process keeps them: netserver_echo.py names itself, the app is in the title


def suite_servers() -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(marker in cmdline for marker in SERVER_MARKERS):
            found.add(int(name))
    return found


def test_quick_run_writes_table_and_json(tmp_path):
    before = suite_servers()
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--servers", "python-floor,c-floor,netserver", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = sorted(tmp_path.glob("*.json"))
    assert len(runs) == 1, list(tmp_path.iterdir())
    data = json.loads(runs[0].read_text())
    assert {r["peer"] for r in data["results"]} == {"python-floor", "c-floor", "netserver"}
    assert {r["workload"] for r in data["results"]} == {"1", "4"}
    for r in data["results"]:
        assert "error" not in r["metrics"], r
        if r["workload"] == "1":
            assert r["metrics"]["requests"] > 0 and r["metrics"]["errors"] == 0, r
    table = runs[0].with_suffix(".md").read_text()
    assert "| Python floor | 4 |" in table and "| C floor | 4 |" in table and "| netserver | 4 |" in table
    assert "| Python floor | 4 |" in proc.stdout
    assert suite_servers() <= before, "servers left running: %s" % (suite_servers() - before)


def test_quick_run_of_the_fork_and_inet_peers(tmp_path):
    before = suite_servers()
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--servers", "netserver-fork,netserver-inet", "--workloads", "1,4,5",
         "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(sorted(tmp_path.glob("*.json"))[0].read_text())
    got = {(r["peer"], r["workload"]) for r in data["results"]}
    inet = ("netserver-inet", "5") if shutil.which("systemd-socket-activate") else None
    assert got == {("netserver-fork", "1"), ("netserver-fork", "4")} | ({inet} if inet else set()), got
    for r in data["results"]:
        assert "error" not in r["metrics"], r
        if r["workload"] == "1":
            assert r["metrics"]["requests"] > 0 and r["metrics"]["errors"] == 0, r
    table = sorted(tmp_path.glob("*.md"))[0].read_text()
    assert "| netserver Fork | 4 |" in table
    assert not inet or "| netserver INET |" in table
    assert suite_servers() <= before, "servers left running: %s" % (suite_servers() - before)


HTTP_PEERS = ("http-floor", "netserver", "gunicorn-sync", "starman")
HTTP_WORKLOADS = ("http-keepalive", "http-close", "http-fairness")


def test_quick_http_run_writes_its_tables(tmp_path):
    """The HTTP workloads with the floor, netserver --app and issue 13's gunicorn sync and Starman rows.

    The floor and netserver need httptools (netserver's http extra); gunicorn and Starman are
    skipped by the suite when absent (--quick installs nothing), with the reason in the JSON."""
    missing = [tool for tool in ("wrk", "h2load") if shutil.which(tool) is None]
    if missing:
        pytest.skip("%s not installed (apt-get install -y wrk nghttp2-client)" % " and ".join(missing))
    if importlib.util.find_spec("httptools") is None:
        pytest.skip("httptools is not installed (pip install httptools, netserver's http extra)")
    before = suite_servers()
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--workloads", "http", "--servers", ",".join(HTTP_PEERS)]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    ran = {p for p in HTTP_PEERS if data["peers"][p]["available"]}
    assert {"http-floor", "netserver"} <= ran, data["peers"]
    for p in set(HTTP_PEERS) - ran:
        assert data["peers"][p]["reason"], data["peers"][p]  # skipped, saying why
    got = {(r["peer"], r["workload"]) for r in data["results"]}
    assert {(p, w) for p in ("http-floor", "netserver") for w in HTTP_WORKLOADS} <= got, (got, data["notes"])
    for p, w in {(p, w) for p in ran for w in HTTP_WORKLOADS} - got:  # a peer's run failed: the notes say why
        assert any(p in n and w in n for n in data["notes"]), (p, w, data["notes"])
    for r in data["results"]:
        assert "error" not in r["metrics"] and r["metrics"]["requests"] > 0, r
    fairness = [r["metrics"] for r in data["results"] if r["workload"] == "http-fairness"]
    assert all(0.0 <= m["fairness"] <= 1.0 for m in fairness), fairness
    table = next(tmp_path.glob("*.md")).read_text()
    for key in HTTP_WORKLOADS:
        assert "## Workload %s:" % key in table
    assert "| httptools floor, 1 conn/child | 4 |" in table and "| netserver | 4 |" in table
    assert suite_servers() <= before, "servers left running: %s" % (suite_servers() - before)


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(BENCH.parent), *args], capture_output=True, text=True, timeout=30)


def worktrees() -> set[str]:
    listing = git("worktree", "list", "--porcelain").stdout
    return {line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("worktree ")}


def test_ab_run_of_head_against_the_work_tree(tmp_path):
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        pytest.skip("not a git checkout, so there is no commit to build netserver@HEAD from: %s" % head.stderr)
    old = "netserver@" + head.stdout.strip()
    before, trees_before = suite_servers(), worktrees()
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--repeat", "2", "--servers", "netserver@HEAD,netserver"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert {(r["peer"], r["workload"]) for r in data["results"]} == {
        (peer, wl) for peer in (old, "netserver") for wl in ("1", "4")
    }
    assert all("error" not in r["metrics"] for r in data["results"]), data["results"]
    assert data["peers"][old]["rev"] == "HEAD" and data["peers"][old]["available"], data["peers"]
    # Both builds ran from copies at paths of one length, which the run removed again.
    sources = [Path(data["peers"][p]["src"]) for p in (old, "netserver")]
    assert len(str(sources[0])) == len(str(sources[1])) and sources[0] != sources[1], sources
    assert not any(src.exists() for src in sources), sources
    (comparison,) = data["ab"]
    assert (comparison["a"], comparison["b"]) == (old, "netserver")
    assert {(r["workload"], r["figure"]) for r in comparison["rows"]} >= {("1", "rps"), ("4", "startup_ms")}
    # Each repetition measured both, the order rotated: A then B, then B then A.
    assert comparison["order"]["W1 N=4"] == "AB BA", comparison["order"]
    table = next(tmp_path.glob("*.md")).read_text()
    assert "## A/B: %s (A) against netserver (B)" % old in table
    assert "| %s | 4 |" % old in table and "| netserver | 4 |" in table
    assert worktrees() == trees_before, "worktrees left: %s" % (worktrees() - trees_before)
    assert suite_servers() <= before, "servers left running: %s" % (suite_servers() - before)


def test_unknown_revision_is_refused_before_anything_starts():
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--servers", "netserver@no-such-rev,netserver"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--servers: 'netserver@no-such-rev': 'no-such-rev' is not a commit" in proc.stderr


def record(peer: str, rep: int, workload: str, metrics: dict) -> dict:
    return {"workload": workload, "workers": 4, "peer": peer, "variant": "default", "rep": rep,
            "discarded": False, "metrics": metrics}  # fmt: skip


def test_ab_bars():
    """W1 passes at exactly 0.97 x A; a start-up above A's highest repetition fails; respawn is reported."""
    results = []
    for rep, (a_rps, b_rps, a_up, b_up) in enumerate(((100, 97, 10, 12.5), (100, 99, 11, 12.5), (100, 97, 12, 13))):
        results += [record("netserver@a", rep, "1", {"rps": a_rps}), record("netserver", rep, "1", {"rps": b_rps})]
        results += [
            record("netserver@a", rep, "4", {"startup_ms": a_up, "respawn_ms": 3.0}),
            record("netserver", rep, "4", {"startup_ms": b_up, "respawn_ms": 1.5}),
        ]
    assert ab.pairs(["perl", "netserver@a", "netserver"]) == [("netserver@a", "netserver")]
    rows = {r["figure"]: r for r in ab.compare(results, "netserver@a", "netserver")["rows"]}
    assert rows["rps"]["met"] is True and rows["rps"]["ratio"] == pytest.approx(0.97)
    assert (rows["rps"]["ratio_min"], rows["rps"]["ratio_max"]) == pytest.approx((0.97, 0.99))
    assert rows["startup_ms"]["met"] is False and rows["startup_ms"]["verdict"] == "worse"
    assert rows["respawn_ms"]["met"] is None and rows["respawn_ms"]["verdict"] == "better"


def test_sweep_removes_only_trees_of_runs_that_are_gone(tmp_path):
    done = subprocess.Popen(["true"])
    done.wait(timeout=10)  # reaped: its pid no longer runs
    gone, mine = tmp_path / ("worktree____-%d" % done.pid), tmp_path / ("worktree____-%d" % os.getpid())
    for tree in (gone, mine):
        (tree / "src").mkdir(parents=True)
    assert revisions.Worktrees(tmp_path).sweep() == [gone.name]
    assert not gone.exists() and mine.exists()
