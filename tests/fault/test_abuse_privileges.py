"""Abuse: privilege drop from a root parent that carries extra groups (reliability.md G1).

The server is started as root with supplementary groups 0 and nstestextra
(os.setgroups in the preexec_fn, as ``setpriv --groups`` would) and told
``--user nstest``.  Each child's /proc/PID/status must show nstest's uid and
gid in all four fields, exactly nstest's one group on the Groups line (so
neither 0 nor nstestextra leaks through), and no effective or permitted
capability.  The parent keeps its identity: uid 0 and the groups it started
with.  The negative control runs the same server without --user: the same
check must report the children as failures, and they must show the extra
groups that a correct drop removes (so the Groups check is not vacuous).
"""

from __future__ import annotations

import grp
import os
import subprocess

import pytest

from support import needs_root, procs
from support.clients import talk

pytestmark = needs_root


@pytest.fixture(scope="module")
def extra_gid() -> int:
    """The group .ci/run creates (nstest is not a member); created here when missing."""
    try:
        return grp.getgrnam("nstestextra").gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", "nstestextra"], timeout=30, check=False)
        return grp.getgrnam("nstestextra").gr_gid


def identity_problems(pid: int, uid: int, gid: int, groups: set[int], capabilities: bool = False) -> list[str]:
    """How /proc/PID/status differs from: uid and gid in all four fields, exactly these groups, and no
    effective or permitted capability (unless ``capabilities``)."""
    problems = []
    uids = procs.status_field(pid, "Uid").split()
    gids = procs.status_field(pid, "Gid").split()
    have = {int(word) for word in procs.status_field(pid, "Groups").split()}
    if uids != [str(uid)] * 4:
        problems.append(f"{pid}: Uid {uids}, expected {uid} x 4")
    if gids != [str(gid)] * 4:
        problems.append(f"{pid}: Gid {gids}, expected {gid} x 4")
    if have != groups:
        problems.append(f"{pid}: Groups {sorted(have)}, expected {sorted(groups)}")
    for name in ("CapEff", "CapPrm"):
        if not capabilities and int(procs.status_field(pid, name), 16):
            problems.append(f"{pid}: {name} {procs.status_field(pid, name)}")
    return problems


def start(serve, extra_gid: int, *args: str):
    server = serve("--handler", "echo:Identity", "--max_servers", "4", *args,
                   preexec=lambda: os.setgroups([0, extra_gid]))
    return server, server.wait_children(4)


def test_children_drop_to_exactly_the_users_identity_and_the_parent_keeps_its_own(serve, nstest, extra_gid):
    assert nstest.pw_gid != extra_gid and nstest.pw_name not in grp.getgrgid(extra_gid).gr_mem
    server, kids = start(serve, extra_gid, "--user", "nstest")
    target = (nstest.pw_uid, nstest.pw_gid, {nstest.pw_gid})
    report = {pid: identity_problems(pid, *target) for pid in kids}
    shown = {f: procs.status_field(kids[0], f) for f in ("Uid", "Gid", "Groups", "CapEff")}
    print(f"\n[abuse privileges] children {kids}, e.g. {shown}; parent Uid "
          f"{procs.status_field(server.pid, 'Uid')!r} Groups {procs.status_field(server.pid, 'Groups')!r}")
    assert report == {pid: [] for pid in kids}
    assert talk(server.addr, b"").split() == [str(nstest.pw_uid).encode(), str(nstest.pw_gid).encode(),
                                               str(nstest.pw_gid).encode()]
    assert identity_problems(server.pid, 0, 0, {0, extra_gid}, capabilities=True) == []


def test_control_without_user_the_check_reports_the_children(serve, nstest, extra_gid):
    server, kids = start(serve, extra_gid)
    for pid in kids:
        problems = identity_problems(pid, nstest.pw_uid, nstest.pw_gid, {nstest.pw_gid})
        assert any("Uid ['0', '0', '0', '0']" in p for p in problems), problems
        assert {int(g) for g in procs.status_field(pid, "Groups").split()} == {0, extra_gid}
