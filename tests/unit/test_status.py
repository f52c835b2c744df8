"""The scoreboard: children write their slot without a system call, the parent reads it bounds-checked."""

from __future__ import annotations

import os
import struct

from netserver import status
from netserver.status import SLOT_SIZE, Scoreboard


def _fork(body) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


def test_a_forked_child_reports_busy_and_idle_to_the_parent():
    board = Scoreboard()
    board.create(4)
    index = board.claim()
    assert board.read(index).state_name == "booting"

    def child():
        report = board.reporter(index)
        report.idle()
        report.busy("10.0.0.5", 4711)

    _fork(child)
    slot = board.read(index)
    assert (slot.state_name, slot.client, slot.requests) == ("busy", "10.0.0.5:4711", 1)
    _fork(lambda: board.reporter(index).idle())
    slot = board.read(index)
    assert (slot.state_name, slot.client) == ("idle", "")
    board.close()


def test_progress_ticks_and_the_parents_pid_record():
    board = Scoreboard()
    board.create(2)
    index = board.claim()
    board.assign(index, 4242)

    def child():
        report = board.reporter(index)
        report.tick()
        report.tick()

    _fork(child)
    slot = board.read(index)
    assert (slot.pid, slot.progress) == (4242, 2)
    board.close()


def test_claim_reuses_released_slots_and_grows_when_full():
    board = Scoreboard()
    board.create(2)
    first, second = board.claim(), board.claim()
    third = board.claim()  # full: the board doubles
    assert (first, second, third) == (0, 1, 2) and board.slots == 4
    board.release(second)
    assert board.read(second).state_name == "free"
    assert board.claim() == second
    board.close()


def test_the_parent_bounds_checks_what_a_child_wrote():
    board = Scoreboard()
    board.create(2)
    index = board.claim()

    def hostile():
        mapping = board._map
        struct.pack_into("=B", mapping, index * SLOT_SIZE + 4, 250)  # no such state
        struct.pack_into("=d", mapping, index * SLOT_SIZE + 16, float("nan"))

    _fork(hostile)
    slot = board.read(index)
    assert slot.state_name == "unknown" and slot.since == 0.0
    assert board.read(-1) is None and board.read(board.slots) is None
    board.close()


def test_a_new_image_adopts_the_board_with_its_used_slots():
    board = Scoreboard()
    board.create(4)
    index = board.claim()
    board.reporter(index).busy("::1", 80)
    fd = os.dup(board.fd)
    adopted = Scoreboard()
    adopted.adopt(fd, {index})
    assert adopted.read(index).client == "::1:80"
    assert adopted.claim() != index
    adopted.close()
    board.close()


def test_pipe_events_are_one_byte_each():
    assert len(status.READY) == len(status.LEAVING) == 1 and status.READY != status.LEAVING
