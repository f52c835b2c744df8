"""Abuse: an explicit lock_file deleted or replaced while the server runs (issue 15 item 1).

Temp cleaners delete files under /tmp that nobody has opened by name for a
while.  Every child used to reopen ``lock_file`` by path, so once it was gone
each replacement failed to boot and after ten the server exited 3.  Now each
child reopens the file the parent holds (through /proc/self/fd): children
born after the deletion lock the same inode as those born before it, so they
still exclude each other; a replacement file is logged and not followed.

Each run recycles children fast (``max_requests 5``) and sends 200 requests
one after another after the file is gone, then checks: none failed, no child
failed to boot, the server still runs, every child now alive was born after
the change and holds the original inode, and the change was logged once.
"""

from __future__ import annotations

import os
import time

import pytest

from support import procs
from support.clients import talk

REQUESTS = 200


def lock_inodes(pid: int) -> set[int]:
    """The inodes of the regular files (deleted or not) that pid has open."""
    found = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            info = os.stat(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
        if target.startswith("/") and not target.startswith("/dev/") and os.path.isfile(f"/proc/{pid}/fd/{name}"):
            found.add(info.st_ino)
    return found


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_a_deleted_or_replaced_lock_file_costs_nothing(serve, tmp_path, change):
    path = tmp_path / "accept.lock"
    server = serve("--handler", "echo:Pid", "--serialize", "flock", "--lock_file", str(path), "--max_servers", "3",
                   "--max_requests", "5", "--check_for_dead", "1")
    original = path.stat().st_ino
    before = server.wait_children(3)
    assert all(original in lock_inodes(pid) for pid in before)
    path.unlink()
    if change == "replaced":
        path.touch(mode=0o600)
        os.chmod(path, 0o600)
    started = time.monotonic()
    answers = [talk(server.addr, b"x\n") for _ in range(REQUESTS)]
    elapsed = time.monotonic() - started
    served = [a for a in answers if a.endswith(b"x\n")]
    pids = {int(a.split()[0]) for a in served}
    logged = "was deleted" if change == "deleted" else "was replaced by another file"
    procs.wait_until(lambda: logged in server.log(), 5, message="the change logged")
    after = server.wait_children(3)
    log = server.log()
    print(f"\n[lock_file {change}] {len(served)}/{REQUESTS} served in {elapsed:.2f} s by {len(pids)} children; "
          f"children now {after}, each locking inode {original}: "
          f"{all(original in lock_inodes(pid) for pid in after)}")
    assert len(served) == REQUESTS
    assert procs.alive(server.pid) and "failed to boot" not in log and "exited abnormally" not in log
    assert not set(after) & set(before), "every child alive now was born after the change"
    assert all(original in lock_inodes(pid) for pid in after)
    if change == "replaced":
        assert all(path.stat().st_ino not in lock_inodes(pid) for pid in after), "the new file is not followed"
    assert log.count(logged) == 1
    assert path.exists() == (change == "replaced"), "a deleted lock_file is not made again"
