"""The parent's event loop: watched fds and one heap of timers."""

from __future__ import annotations

import os
import time

from netserver.events import EventLoop


def test_timers_run_in_deadline_order_and_only_when_due():
    loop = EventLoop()
    ran = []
    now = time.monotonic()
    loop.call_at(now + 0.06, lambda: ran.append("late"))
    loop.call_at(now + 0.02, lambda: ran.append("early"))
    loop.call_at(now + 60, lambda: ran.append("never"))
    started = time.monotonic()
    while len(ran) < 2 and time.monotonic() - started < 2:
        loop.run_once()
    assert ran == ["early", "late"]
    assert 0.05 <= time.monotonic() - started < 1.0


def test_a_cancelled_timer_never_runs_and_does_not_shorten_the_wait():
    loop = EventLoop()
    ran = []
    timer = loop.call_later(0.01, lambda: ran.append("cancelled"))
    timer.cancel()
    loop.call_later(0.05, lambda: ran.append("kept"))
    loop.run_once()
    assert ran == ["kept"] and not timer.fired


def test_run_once_wakes_for_a_readable_fd_before_a_far_timer():
    loop = EventLoop()
    read_fd, write_fd = os.pipe()
    seen = []
    loop.watch(read_fd, lambda: seen.append(os.read(read_fd, 10)))
    loop.call_later(30, lambda: seen.append("timer"))
    os.write(write_fd, b"x")
    started = time.monotonic()
    loop.run_once()
    assert seen == [b"x"] and time.monotonic() - started < 1
    loop.unwatch(read_fd)
    loop.close()
    os.close(read_fd)
    os.close(write_fd)


def test_max_wait_bounds_a_wait_with_nothing_due():
    loop = EventLoop()
    started = time.monotonic()
    loop.run_once(0.05)
    assert 0.04 <= time.monotonic() - started < 1


def test_a_timer_that_fired_says_so():
    loop = EventLoop()
    timer = loop.call_later(0, lambda: None)
    loop.run_once()
    assert timer.fired and not timer.cancelled


def test_call_every_repeats_until_the_loop_stops_running():
    loop = EventLoop()
    ran = []
    loop.call_every(0.01, lambda: ran.append(time.monotonic()))
    started = time.monotonic()
    while len(ran) < 3 and time.monotonic() - started < 2:
        loop.run_once()
    assert len(ran) == 3 and all(b > a for a, b in zip(ran, ran[1:], strict=False))
