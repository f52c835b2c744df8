"""What importing netserver loads: the modules kept out of start-up stay out.

``threading`` matters most: its at-fork hook runs Python code in every forked
child, which on CPython 3.11 un-shares about 400 KiB per child (benchmarks/README.md,
"Memory").  The others only cost start-up time, and are imported where they are needed
(syslog, a HUP, a generated lock file).  ``typing`` is never imported at run time
(netserver/records.py says how): ~3 ms of every start, and a HUP starts twice.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

KEPT_OUT = ("threading", "logging", "typing", "subprocess", "tempfile", "dataclasses", "inspect", "traceback", "asyncio",
            "difflib", "netserver.usage")  # the last two: only a mistyped option and --help need them


def modules_after(code: str, *paths: str) -> set[str]:
    # -S: this machine's site hooks may import anything; netserver alone is under test.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(SRC), *paths)))
    result = subprocess.run([sys.executable, "-S", "-c", code + "; import sys; print(*sys.modules)"],
                            capture_output=True, text=True, env=env, timeout=60, check=True)
    return set(result.stdout.split())


def test_importing_the_package_and_the_command_keeps_heavy_modules_out():
    loaded = modules_after("import netserver, netserver.cli, netserver.personalities.prefork_simple")
    assert "netserver.personalities.prefork_simple" in loaded
    assert sorted(loaded & set(KEPT_OUT)) == []


def test_a_personality_is_imported_only_when_named():
    loaded = modules_after("import netserver, netserver.cli; netserver.PreForkSimple")
    others = {"netserver.personalities." + name for name in ("fork", "inet", "prefork", "single")}
    assert sorted(loaded & others) == []
    named = modules_after("import netserver; netserver.Fork; from netserver.personalities import find; find('inet')")
    assert {"netserver.personalities.fork", "netserver.personalities.inet"} <= named


@pytest.mark.skipif(importlib.util.find_spec("setproctitle") is None, reason="setproctitle is not installed")
def test_the_process_title_function_comes_without_threading():
    # The setproctitle package imports logging, and so threading: its C function is loaded alone.
    site = str(Path(importlib.util.find_spec("setproctitle").origin).parent.parent)
    loaded = modules_after("from netserver.proctitle import load; load()('netserver: test')", site)
    assert "setproctitle" not in loaded  # the package's __init__ never ran
    assert sorted(loaded & set(KEPT_OUT)) == []
