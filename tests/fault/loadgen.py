"""A load client for fault tests: one TCP connection per request, every outcome recorded.

Each request opens a new connection (from a source address spread over
127.0.0.2-127.0.0.17, so 16 x 28k ephemeral ports stand between us and
TIME_WAIT exhaustion), sends one line ``<token> <sleep_ms>``, expects that
line back (``answer="echo"``, for ``echo:Echo`` and
``fault_load_handlers:Line``) or that line followed by the server's pid
(``answer="pid"``, ``fault_load_handlers:LinePid``), and closes.  Outcomes:

========  ===========================================================
ok        the whole expected answer arrived
refused   connect() failed with ECONNREFUSED
reset     ECONNRESET or EPIPE while connecting, sending or reading
short     EOF before a whole line, or a line that is not the answer
timeout   no answer within ``timeout`` seconds of the connect() call
error     anything else (the errno name is kept in ``detail``)
========  ===========================================================

The client is one epoll loop over ``concurrency`` non-blocking sockets (no
asyncio: its per-request overhead halves the rate a 2-core box reaches).
Connect latency is the time from connect() to the socket being writable;
on loopback a dropped SYN is retransmitted after 1 s, so a connect latency
under 1 s proves no SYN was dropped.  ``slow_workers`` of the slots ask
the server to sleep ``slow_ms`` on each of their requests, so that some
requests are always in flight for a long time.

Bounded by ``count`` (requests started) and ``duration`` (seconds), and by
``stop()``; the slots in flight are then finished (bounded by ``timeout``).

Use it blocking::

    summary = loadgen.run(server.addr, count=10_000)

or in the background while the test does something to the server::

    with loadgen.Load(server.addr, duration=20, slow_workers=1) as load:
        ...                          # signals, kills, samples
    summary = load.summary           # the context exit stops the load and waits

``python tests/fault/loadgen.py HOST:PORT --count N`` prints the summary as JSON.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

OUTCOMES = ("ok", "refused", "reset", "short", "timeout", "error")
SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 18))
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_RESETS = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


@dataclass(slots=True)
class Request:
    """One request: when it started (time.monotonic), how it ended, and from where."""

    started: float
    outcome: str
    connect: float  # seconds from connect() to connected; -1 if it never connected
    total: float  # seconds from connect() to the outcome
    source: tuple[str, int]  # our address and port; port 0 if the connect failed
    slow: bool
    detail: str = ""


@dataclass
class Summary:
    """What a load run saw.  ``requests`` holds every request, in completion order."""

    requests: list[Request] = field(default_factory=list)
    pids: Counter = field(default_factory=Counter)  # answer="pid": requests served per server pid
    started: float = 0.0
    elapsed: float = 0.0

    @property
    def total(self) -> int:
        return len(self.requests)

    @property
    def counts(self) -> Counter:
        return Counter(r.outcome for r in self.requests)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.requests if r.outcome == "ok")

    @property
    def failures(self) -> list[Request]:
        return [r for r in self.requests if r.outcome != "ok"]

    @property
    def failed(self) -> int:
        return self.total - self.ok

    @property
    def max_connect(self) -> float:
        return max((r.connect for r in self.requests), default=0.0)

    @property
    def max_slow_total(self) -> float:
        """The longest slow request that succeeded (proof that long requests were in flight)."""
        return max((r.total for r in self.requests if r.slow and r.outcome == "ok"), default=0.0)

    @property
    def rate(self) -> float:
        return self.total / self.elapsed if self.elapsed else 0.0

    def connect_percentile(self, fraction: float) -> float:
        values = sorted(r.connect for r in self.requests if r.connect >= 0)
        return values[min(len(values) - 1, int(fraction * len(values)))] if values else 0.0

    def between(self, start: float, end: float) -> list[Request]:
        """Requests started in [start, end) (time.monotonic)."""
        return [r for r in self.requests if start <= r.started < end]

    def describe(self) -> str:
        counts = ", ".join(f"{name} {self.counts[name]}" for name in OUTCOMES if self.counts[name])
        return (f"{self.total} requests in {self.elapsed:.1f} s ({self.rate:.0f}/s): {counts or 'none'}; "
                f"connect max {self.max_connect * 1000:.1f} ms, p99 {self.connect_percentile(0.99) * 1000:.1f} ms")

    def as_dict(self) -> dict:
        return {"total": self.total, "counts": dict(self.counts), "elapsed": self.elapsed, "rate": self.rate,
                "max_connect": self.max_connect, "p99_connect": self.connect_percentile(0.99),
                "failures": [[r.started - self.started, r.outcome, r.source, r.detail] for r in self.failures],
                "pids": len(self.pids)}


class _Slot:
    __slots__ = ("index", "slow", "sock", "fd", "line", "expect", "buffer", "started", "clock", "connected",
                 "source", "deadline", "sent")

    def __init__(self, index: int, slow: bool) -> None:
        self.index = index
        self.slow = slow
        self.sock: socket.socket | None = None


class Load:
    """Runs the load in a thread; ``start()``/``stop()``/``wait()``, or use it as a context manager."""

    def __init__(self, address: tuple[str, int], *, concurrency: int = 16, count: int | None = None,
                 duration: float | None = None, slow_workers: int = 0, slow_ms: int = 150,
                 timeout: float = 10.0, answer: str = "echo", sources: tuple[str, ...] = SOURCES) -> None:
        if count is None and duration is None:
            raise ValueError("bound the load: give count, duration or both")
        if answer not in ("echo", "pid"):
            raise ValueError(f"answer must be 'echo' or 'pid', not {answer!r}")
        self.address = address
        self.concurrency = concurrency
        self.count = count
        self.duration = duration
        self.slow_workers = min(slow_workers, concurrency)
        self.slow_ms = slow_ms
        self.timeout = timeout
        self.answer = answer
        self.sources = sources
        self.summary = Summary()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._started_requests = 0
        self._next_source = 0
        self._end: float | None = None

    # ----------------------------------------------------------------- control
    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name="loadgen", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Start no new request; the ones in flight still finish."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> Summary:
        limit = timeout if timeout is not None else (self.duration or 0) + self.timeout + 120
        if self._thread is not None:
            self._thread.join(limit)
            if self._thread.is_alive():
                raise AssertionError(f"the load did not finish within {limit:.0f} s")
        if self._error is not None:
            raise self._error
        return self.summary

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def completed(self) -> int:
        """Requests finished so far (safe to read while the load runs)."""
        return len(self.summary.requests)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.wait()

    # ----------------------------------------------------------------- the loop
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as error:  # surfaced by wait()
            self._error = error
        finally:
            self._done.set()

    def _loop(self) -> None:
        summary = self.summary
        poller = select.epoll()
        slots = [_Slot(i, i < self.slow_workers) for i in range(self.concurrency)]
        by_fd: dict[int, _Slot] = {}
        summary.started = started = time.monotonic()
        self._end = end = started + self.duration if self.duration is not None else None
        try:
            for slot in slots:
                self._begin(slot, poller, by_fd)
            while by_fd:
                now = time.monotonic()
                if end is not None and now >= end:
                    self._stop.set()
                events = poller.poll(0.05)
                for fd, mask in events:
                    slot = by_fd.get(fd)
                    if slot is not None:
                        self._advance(slot, mask, poller, by_fd)
                now = time.monotonic()
                for slot in list(by_fd.values()):
                    if now >= slot.deadline:
                        self._finish(slot, "timeout", poller, by_fd, "no answer within %.1f s" % self.timeout)
        finally:
            for slot in list(by_fd.values()):
                self._close(slot, poller, by_fd)
            poller.close()
            summary.elapsed = time.monotonic() - started

    def _may_start(self) -> bool:
        if self._stop.is_set():
            return False
        if self._end is not None and time.monotonic() >= self._end:
            self._stop.set()
            return False
        return self.count is None or self._started_requests < self.count

    def _begin(self, slot: _Slot, poller, by_fd) -> None:
        """Start this slot's next request, if the bounds allow one."""
        while self._may_start():
            self._started_requests += 1
            number = self._started_requests
            source = self.sources[self._next_source]
            self._next_source = (self._next_source + 1) % len(self.sources)
            slot.line = b"%d-%d %d\n" % (slot.index, number, self.slow_ms if slot.slow else 0)
            slot.expect = slot.line
            slot.buffer = b""
            slot.connected = -1.0
            slot.sent = False
            slot.source = (source, 0)
            slot.started = time.monotonic()
            slot.clock = time.perf_counter()
            slot.deadline = slot.started + self.timeout
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                # Let connect() pick the port against the whole 4-tuple, not bind() against the address.
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
                slot.sock = sock
                slot.fd = sock.fileno()
                try:
                    sock.connect(self.address)
                except BlockingIOError:
                    pass
            except OSError as error:
                slot.sock = None
                sock.close()
                self._record(slot, _classify(error), _errname(error))
                continue
            by_fd[slot.fd] = slot
            poller.register(slot.fd, select.EPOLLOUT)
            return

    def _advance(self, slot: _Slot, mask: int, poller, by_fd) -> None:
        sock = slot.sock
        if slot.connected < 0:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                error = OSError(code, os.strerror(code))
                self._finish(slot, _classify(error), poller, by_fd, _errname(error))
                return
            slot.connected = time.perf_counter() - slot.clock
            try:
                slot.source = sock.getsockname()[:2]
                sock.send(slot.line)  # a few bytes into an empty buffer: all of it or an error
            except OSError as error:
                self._finish(slot, _classify(error), poller, by_fd, _errname(error))
                return
            poller.modify(slot.fd, select.EPOLLIN)
            return
        try:
            chunk = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as error:
            self._finish(slot, _classify(error), poller, by_fd, _errname(error))
            return
        if not chunk:
            self._finish(slot, "short", poller, by_fd, "EOF after %d bytes" % len(slot.buffer))
            return
        slot.buffer += chunk
        if not slot.buffer.endswith(b"\n"):
            if len(slot.buffer) > 4096:
                self._finish(slot, "short", poller, by_fd, "no newline in %d bytes" % len(slot.buffer))
            return
        if self.answer == "echo":
            good = slot.buffer == slot.expect
        else:
            head, _, pid = slot.buffer[:-1].rpartition(b" ")
            good = head + b"\n" == slot.expect and pid.isdigit()
            if good:
                self.summary.pids[int(pid)] += 1
        self._finish(slot, "ok" if good else "short", poller, by_fd, "" if good else repr(slot.buffer[:80]))

    def _finish(self, slot: _Slot, outcome: str, poller, by_fd, detail: str = "") -> None:
        self._close(slot, poller, by_fd)
        self._record(slot, outcome, detail)
        self._begin(slot, poller, by_fd)

    def _close(self, slot: _Slot, poller, by_fd) -> None:
        if slot.sock is not None:
            by_fd.pop(slot.fd, None)
            try:
                poller.unregister(slot.fd)
            except (OSError, ValueError):
                pass
            slot.sock.close()
            slot.sock = None

    def _record(self, slot: _Slot, outcome: str, detail: str) -> None:
        total = time.perf_counter() - slot.clock
        self.summary.requests.append(Request(slot.started, outcome, slot.connected, total, slot.source,
                                             slot.slow, detail))


def _classify(error: OSError) -> str:
    if error.errno == errno.ECONNREFUSED:
        return "refused"
    if error.errno in _RESETS:
        return "reset"
    if error.errno == errno.ETIMEDOUT:
        return "timeout"
    return "error"


def _errname(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, str(error.errno))


def run(address: tuple[str, int], **options) -> Summary:
    """Run a bounded load to completion and return its summary (see ``Load`` for the options)."""
    load = Load(address, **options)
    load._run()
    if load._error is not None:
        raise load._error
    return load.summary


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="connection-per-request load against a line server")
    parser.add_argument("address", help="HOST:PORT")
    parser.add_argument("--count", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slow_workers", type=int, default=0)
    parser.add_argument("--slow_ms", type=int, default=150)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--answer", choices=("echo", "pid"), default="echo")
    args = parser.parse_args(argv)
    host, _, port = args.address.rpartition(":")
    summary = run((host, int(port)), count=args.count, duration=args.duration, concurrency=args.concurrency,
                  slow_workers=args.slow_workers, slow_ms=args.slow_ms, timeout=args.timeout, answer=args.answer)
    json.dump(summary.as_dict(), sys.stdout)
    print()
    return 0 if not summary.failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
