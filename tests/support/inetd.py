"""A minimal inetd for the tests: accept, and run one netserver per connection with it as fd 0 and 1.

    python inetd.py --port HOST:PORT --ready_fd FD [netserver options...]

It listens on ``--port`` (port 0: a free one), writes the READY line the
``serve`` fixture reads (its own pid and address), and for each connection
starts ``python -m netserver OPTIONS`` with the accepted socket as stdin and
stdout, as inetd's ``nowait`` services get it; every other option is passed
through unchanged.  TERM closes the listener, waits (bounded) for the
connection processes to finish, and exits 0.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    port, ready_fd, passed = "127.0.0.1:0", None, []
    words = iter(argv)
    for word in words:
        if word == "--port":
            port = next(words)
        elif word == "--ready_fd":
            ready_fd = int(next(words))
        else:
            passed.append(word)
    host, _, number = port.rpartition(":")
    listener = socket.create_server((host.strip("[]") or "127.0.0.1", int(number)), reuse_port=False)
    listener.setblocking(False)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    read_wake, write_wake = os.pipe()
    os.set_blocking(write_wake, False)
    signal.set_wakeup_fd(write_wake)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(read_wake, selectors.EVENT_READ)
    if ready_fd is not None:
        address, bound = listener.getsockname()[:2]
        os.write(ready_fd, b"READY pid=%d tcp:%s:%d\n" % (os.getpid(), address.encode(), bound))
        os.close(ready_fd)
    running: list[subprocess.Popen] = []
    while not stopping:
        for key, _ in selector.select(0.2):
            if key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                with conn:
                    running.append(subprocess.Popen([sys.executable, "-m", "netserver", *passed], stdin=conn,
                                                    stdout=conn))
            else:
                os.read(read_wake, 512)
        running = [process for process in running if process.poll() is None]
    listener.close()
    deadline = time.monotonic() + 10
    for process in running:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
