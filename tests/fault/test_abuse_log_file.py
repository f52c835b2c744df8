"""Abuse: the log on a full disk, and an instance refused as "already running" (issue 15 item 6).

Full disk: the log lives on a 64 KiB tmpfs.  The test fills the rest of it,
then sends one request whose record is longer than the room left in the log
file's last page, so the kernel writes part of it (a short write, as on any
full disk), then a few that cannot be written at all.  Once the filler is
removed, the next records must each start on a line of their own: the cut
record stays the only line that is not a whole record, and no line holds two.
The server keeps serving throughout.

Already running: a second instance given the same pid_file (foreground or
background) exits 1 naming the pid file and creates nothing, not even its
log file; the pid file is checked before the log is opened (server.py,
open_files).  A log that cannot be opened after the pid file was locked gives
the pid file back.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess

import pytest

from support import needs_root, procs
from support.clients import talk

PAGE = 4096
RECORD = re.compile(r"^\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d \[\d+\] \w+: ")
STAMP = re.compile(r"\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d \[\d+\]")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(disk)], check=True, timeout=30)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True, timeout=30)


def fill(path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    total = 0
    try:
        while True:
            total += os.write(fd, b"f" * PAGE)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return total


@needs_root
def test_after_a_cut_record_on_a_full_disk_the_next_starts_a_fresh_line(serve, small_disk):
    log_file = small_disk / "server.log"
    server = serve("--handler", "fault_abuse_handlers:LogLine", "--max_servers", "2", "--log_file", str(log_file))

    def log() -> str:
        return log_file.read_text(errors="replace")

    if log_file.stat().st_size % PAGE == 0:
        assert talk(server.addr, b"pad\n") == b"ok\n"  # a last page with no room left could not be cut
    assert talk(server.addr, b"before\n") == b"ok\n"
    procs.wait_until(lambda: "record before end" in log(), 5, message="the record before the fill")
    filled = fill(small_disk / "filler")
    room = PAGE - log_file.stat().st_size % PAGE
    assert talk(server.addr, b"cut" + b"c" * room + b"\n") == b"ok\n"
    cut_at = log_file.stat().st_size
    for number in range(5):
        assert talk(server.addr, b"lost%d\n" % number) == b"ok\n"
    assert log_file.stat().st_size == cut_at and cut_at % PAGE == 0, "the disk really was full"
    os.unlink(small_disk / "filler")
    for number in range(6):
        assert talk(server.addr, b"after%d\n" % number) == b"ok\n"
    procs.wait_until(lambda: "record after5 end" in log(), 5, message="the records after the fill")
    lines = log().splitlines()
    cut = [line for line in lines if "record cut" in line]
    whole = len(next(line for line in lines if "record before end" in line)) - len("before") + len("cut") + room
    print(f"\n[full disk] filled {filled} B; {room} B left in the log's last page; the cut record kept "
          f"{len(cut[0]) if cut else 0} of its {whole + 1} B; {len(lines)} lines, the 6 after the cut each whole")
    assert len(cut) == 1 and not cut[0].endswith(" end"), cut
    assert [line for line in lines if not RECORD.match(line) or len(STAMP.findall(line)) > 1] == []
    assert [line for line in lines if "record " in line and not line.endswith(" end")] == cut
    after = [line for line in lines if "record after" in line]
    assert [line.rsplit(" ", 2)[1] for line in after] == ["after%d" % n for n in range(6)]
    assert not any("record lost" in line for line in lines)
    assert procs.alive(server.pid)


@pytest.mark.parametrize("background", [False, True])
def test_a_second_instance_refused_as_already_running_creates_nothing(serve, tmp_path, background):
    pid_file = tmp_path / "server.pid"
    first = serve("--pid_file", str(pid_file), "--max_servers", "1")
    second = tmp_path / "second"
    second.mkdir()
    result = serve.run(*(["--background"] if background else []), "--pid_file", str(pid_file),
                       "--log_file", str(second / "second.log"), "--port", "127.0.0.1:0",
                       "--lock_file", str(second / "accept.lock"), "--serialize", "flock")
    assert result.returncode == 1, result.stderr
    assert f"already running (pid {first.pid}, pid_file {str(pid_file)!r})" in result.stderr.decode()
    assert os.listdir(second) == []
    assert pid_file.read_text() == f"{first.pid}\n"


def test_a_log_that_cannot_be_opened_gives_the_pid_file_back(serve, tmp_path):
    pid_file = tmp_path / "server.pid"
    (tmp_path / "log.d").mkdir()
    result = serve.run("--pid_file", str(pid_file), "--log_file", str(tmp_path / "log.d"), "--port", "127.0.0.1:0")
    assert result.returncode == 1 and b"log_file: cannot open" in result.stderr, result.stderr
    assert not pid_file.exists()
