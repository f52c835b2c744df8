"""Building the suite's C programs and installing peers from Debian or PyPI.

Everything here is bounded in time, and an install that fails becomes a
reason string that the report shows, never an exception that stops the run.
"""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"

C_PROGRAMS = {
    "loadgen": BENCH_DIR / "client" / "loadgen.c",
    "procwatch": BENCH_DIR / "client" / "procwatch.c",
    "cfloor": BENCH_DIR / "servers" / "cfloor.c",
}

INSTALL_TIMEOUT_S = 300


class BuildError(RuntimeError):
    pass


def binary(name: str) -> Path:
    return BUILD_DIR / name


def build_all(may_install: bool) -> dict[str, Path]:
    """Compile every C program with gcc -O2 into build/, when its source is newer."""
    gcc = shutil.which("gcc")
    if gcc is None and may_install:
        apt_install("gcc")
        gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildError(
            "gcc not found: the load client is C and must be compiled; install it with `apt-get install -y gcc`"
        )
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, src in C_PROGRAMS.items():
        dst = binary(name)
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            proc = subprocess.run(
                [gcc, "-O2", "-Wall", "-pthread", "-o", str(dst), str(src)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode != 0:
                raise BuildError("gcc failed on %s:\n%s" % (src, proc.stderr))
        out[name] = dst
    return out


def run_captured(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess | str:
    """Run cmd with no input and its output captured; the finished process, or why it could not run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)


def run_quiet(cmd: list[str], timeout: float = INSTALL_TIMEOUT_S, env: dict | None = None) -> tuple[bool, str]:
    """Run cmd; (succeeded, last lines of its output)."""
    proc = run_captured(cmd, timeout, env)
    if isinstance(proc, str):
        return False, proc
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    return proc.returncode == 0, tail


def apt_install(package: str) -> tuple[bool, str]:
    if shutil.which("apt-get") is None:
        return False, "apt-get not found"
    if os.geteuid() != 0:
        return False, "installing %s with apt-get needs root" % package
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    ok, tail = run_quiet(["apt-get", "install", "-y", "-q", package], env=env)
    if not ok:
        # A fresh machine has no package lists yet; fetch them once and retry.
        run_quiet(["apt-get", "update", "-q"], env=env)
        ok, tail = run_quiet(["apt-get", "install", "-y", "-q", package], env=env)
    return ok, tail


def pip_install(package: str) -> tuple[bool, str]:
    return run_quiet([sys.executable, "-m", "pip", "install", "-q", package])


def python_can_import(code: str, env: dict | None = None) -> tuple[bool, str]:
    return run_quiet([sys.executable, "-c", code], timeout=60, env=env)


def python_command(script: Path, *args: str) -> list[str]:
    """How every Python peer is started: ``python -S script args``.

    ``-S`` skips ``site``, and with it the ``.pth`` start-up hooks of this
    machine's site-packages (here one imports certifi, ~18 ms per interpreter
    start), which belong to no server; :func:`python_env` puts the
    site-packages directories on ``PYTHONPATH`` instead, so the same packages
    are importable.  All Python peers are started the same way.
    """
    return [sys.executable, "-S", str(script), *args]


def site_dirs() -> list[str]:
    dirs = []
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in dirs and os.path.isdir(path):
            dirs.append(path)
    return dirs


def python_env(first: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of a Python peer: ``first``, then the site-packages directories, on PYTHONPATH."""
    path = [*first, *site_dirs()]
    old = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path + ([old] if old else [])))


def compile_python() -> None:
    """Write the bytecode of netserver and the Python servers, as ``pip install`` does.

    A checkout run with PYTHONDONTWRITEBYTECODE set (as this machine's
    environment is) would otherwise compile every module at every start
    (~20 ms for netserver), which no installed copy pays.
    """
    for path in (REPO_DIR / "src", BENCH_DIR / "servers"):
        compileall.compile_dir(str(path), quiet=1)
