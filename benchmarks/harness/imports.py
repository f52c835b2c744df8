"""netserver's import-time budget: what ``import netserver`` adds to every start.

Measured the way the servers start (``python -S``, byte-compiled): the wall
time of the import statement inside the interpreter (median of several
fresh interpreters), the interpreter's own start for scale, and the
``python -X importtime`` breakdown of the slowest modules by self time.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import tools

#: The budget checked in the Targets table, in ms on the measuring machine: about 25% above
#: what the import took when it was set (22-24 ms), so a heavy new import (asyncio, logging,
#: subprocess) shows up as a miss; tests/unit/test_imports.py names the modules kept out.
BUDGET_MS = 30.0
STATEMENT = "import netserver.personalities.prefork_simple"
_TIMED = "import time; t = time.perf_counter(); %s; print((time.perf_counter() - t) * 1e3)" % STATEMENT


def _env(src: Path) -> dict[str, str]:
    return tools.python_env(first=(str(src),))


def _run(args: list[str], src: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-S", *args], capture_output=True, text=True, env=_env(src), timeout=60, check=True
    )


def breakdown(stderr: str) -> list[dict]:
    """``-X importtime`` lines as {module, self_ms, cumulative_ms}, slowest self time first."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, self_us, cumulative_us, name = (part.strip() for part in line.replace("import time:", "|", 1).split("|"))
        rows.append({"module": name, "self_ms": int(self_us) / 1e3, "cumulative_ms": int(cumulative_us) / 1e3})
    return sorted(rows, key=lambda r: -r["self_ms"])


def measure(repeat: int, srcs: dict[str, Path] | None = None) -> dict[str, dict]:
    """The import figures of each named source tree (default: this work tree's, as "netserver").

    With several trees (an A/B) the timed imports take turns, one of each
    tree per round, so machine drift hits every tree alike.
    """
    srcs = srcs or {"netserver": tools.REPO_DIR / "src"}
    runs = max(repeat, 5)
    imports: dict[str, list[float]] = {name: [] for name in srcs}
    for _ in range(runs):
        for name, src in srcs.items():
            imports[name].append(float(_run(["-c", _TIMED], src).stdout))
    starts = []
    for _ in range(runs):
        began = time.perf_counter()
        _run(["-c", "pass"], tools.REPO_DIR / "src")
        starts.append((time.perf_counter() - began) * 1e3)
    out = {}
    for name, src in srcs.items():
        rows = breakdown(_run(["-X", "importtime", "-c", STATEMENT], src).stderr)
        own = [r for r in rows if r["module"].startswith("netserver")]
        out[name] = {
            "statement": STATEMENT,
            "import_ms": statistics.median(imports[name]),
            "import_ms_min": min(imports[name]),
            "import_ms_max": max(imports[name]),
            "import_samples_ms": imports[name],
            "budget_ms": BUDGET_MS,
            "interpreter_ms": statistics.median(starts),
            "modules": len(rows),
            "netserver_self_ms": sum(r["self_ms"] for r in own),
            "stdlib_self_ms": sum(r["self_ms"] for r in rows if not r["module"].startswith("netserver")),
            "top": rows[:10],
        }
    return out
