"""netserver at another commit as a peer: ``--servers netserver@REV``.

An A/B of two commits is measured in one run, so that both sides meet the
same machine: the suite checks REV out into a detached git worktree of this
repository under ``benchmarks/.worktrees/``, byte-compiles its ``src/`` as it
does the work tree's, and runs it exactly as the ``netserver`` peer runs the
work tree: this tree's ``servers/netserver_echo.py`` (so the handler does the
same work on both sides), the same options, ``python -S`` with that tree's
``src/`` first on ``PYTHONPATH``.

A worktree rather than ``git archive``: git checks out exactly the commit's
files and ``git worktree remove`` takes them and their registration away.
Every run makes its own worktrees (named by sha and the run's pid, so two
runs never share or remove each other's) and removes them when it ends;
leftovers of a run that was killed are removed by the next run.

Where the package lies changes its figures: the path is in every module's
``__file__``, spec and code objects, and its length shifts how the parent's
objects fall on pages, so how many pages a child un-shares.  Identical code
at ``/work/wt-c/src`` and in a worktree here measured 782 and 750 KiB of USS
per child at N = 32 (medians of 12 alternated starts; paths of equal length
measured alike).  So in an A/B the work tree's ``src/`` is copied, as it is
when the run starts, to a path here of the same length as the commits'
(snapshot()), and both sides run from equal-length paths.
"""

from __future__ import annotations

import compileall
import os
import shutil
from pathlib import Path

from . import tools
from .peers import NetServer

PREFIX = "netserver@"
WORKTREES = tools.BENCH_DIR / ".worktrees"


class RevisionError(ValueError):
    pass


def _git(*args: str, cwd: Path = tools.REPO_DIR, timeout: float = 120) -> tuple[bool, str]:
    """Run git in cwd; (succeeded, stripped stdout, or the last lines of stderr on failure)."""
    proc = tools.run_captured(["git", "-C", str(cwd), *args], timeout)
    if isinstance(proc, str):
        return False, proc
    if proc.returncode != 0:
        return False, " | ".join(proc.stderr.strip().splitlines()[-2:]) or "git exited %d" % proc.returncode
    return True, proc.stdout.strip()


def resolve(rev: str) -> tuple[str, str, str]:
    """(full sha, short sha, subject) of the commit rev names in this repository."""
    if not rev:
        raise RevisionError("no revision after %r (write e.g. netserver@HEAD~1)" % PREFIX)
    ok, sha = _git("rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}")
    if not ok or not sha:
        raise RevisionError("%r is not a commit in %s (git rev-parse: %s)" % (rev, tools.REPO_DIR, sha or "no output"))
    ok, short = _git("rev-parse", "--short", sha)
    ok_subject, subject = _git("log", "-1", "--format=%s", sha)
    return sha, short if ok else sha[:7], subject if ok_subject else ""


def _owner_alive(path: Path) -> bool:
    """Whether the run that made the worktree at path (``<sha>-<pid>``) may still be running."""
    pid = path.name.rpartition("-")[2]
    return pid.isdigit() and os.path.exists("/proc/%s" % pid)


class Worktrees:
    """The worktrees one run made; remove_all() takes them away again."""

    def __init__(self, root: Path = WORKTREES):
        self.root = root
        self.made: list[Path] = []

    def sweep(self) -> list[str]:
        """Remove worktrees left by runs that are gone (killed before their clean-up); their names."""
        if not self.root.is_dir():
            return []
        gone = [p for p in sorted(self.root.iterdir()) if p.is_dir() and not _owner_alive(p)]
        for path in gone:
            self._remove(path)
        return [p.name for p in gone]

    def _path(self, tag: str) -> Path:
        # Every tree's name has the same length (12 characters, then the pid): see the module docstring.
        return self.root / ("%s-%d" % (tag[:12].ljust(12, "_"), os.getpid()))

    def checkout(self, sha: str) -> Path:
        """A detached worktree of commit sha."""
        path = self._path(sha)
        if path in self.made:
            return path
        self.root.mkdir(parents=True, exist_ok=True)
        ok, out = _git("worktree", "add", "--detach", "--quiet", str(path), sha)
        if not ok:
            raise RevisionError("git worktree add %s %s failed: %s" % (path, sha[:12], out))
        self.made.append(path)
        return path

    def snapshot(self) -> Path:
        """A copy of the work tree's src/ as it is now (uncommitted changes included), byte-compiled;
        the copied src/ directory."""
        path = self._path("worktree")
        src = path / "src"
        if path not in self.made:
            self.made.append(path)
            shutil.copytree(tools.REPO_DIR / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
            compileall.compile_dir(str(src), quiet=1)
        return src

    def remove_all(self) -> None:
        while self.made:
            self._remove(self.made.pop())

    def _remove(self, path: Path) -> None:
        worktree = (path / ".git").exists()
        # --force: the tree holds the bytecode the run wrote, which git counts as untracked.
        if worktree and _git("worktree", "remove", "--force", str(path))[0]:
            return
        # A snapshot, or a worktree git would not remove: just files.  Pruning then
        # drops only registrations whose directories no longer exist.
        shutil.rmtree(path, ignore_errors=True)
        if worktree:
            _git("worktree", "prune")


class NetServerAt(NetServer):
    """The netserver peer run from a worktree of another commit."""

    def __init__(self, rev: str, worktrees: Worktrees):
        self.rev = rev
        self.sha, self.short, self.subject = resolve(rev)
        self.name = self.label = PREFIX + self.short
        self.note = "netserver at commit %s (%s), from a detached git worktree" % (self.short, self.subject)
        self.worktrees = worktrees
        self.src = WORKTREES / "not-checked-out"

    def prepare(self, may_install: bool) -> str | None:
        try:
            tree = self.worktrees.checkout(self.sha)
        except RevisionError as exc:
            return str(exc)
        self.src = tree / "src"
        if not (self.src / "netserver").is_dir():
            return "commit %s has no src/netserver" % self.short
        compileall.compile_dir(str(self.src), quiet=1)
        return super().prepare(may_install)

    def describe(self) -> dict:
        return {"rev": self.rev, "sha": self.sha, "subject": self.subject, "src": str(self.src)}


def rev_of(name: str) -> str | None:
    """REV of a ``netserver@REV`` name, None for any other name."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else None
