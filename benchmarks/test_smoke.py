"""Smoke test of the benchmark suite: a quick run produces its table and JSON.

Runs the two floors and netserver, so it needs gcc but neither Perl nor the network,
and it takes a few seconds.  The real figures come from a full run (see
README.md); nothing here asserts a performance number.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent / "run.py"
SERVER_MARKERS = ("benchmarks/servers/pyfloor.py", "benchmarks/build/cfloor", "benchmarks/servers/netserver_echo.py")


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
