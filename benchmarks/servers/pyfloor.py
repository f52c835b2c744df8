"""The minimal plain-Python pre-fork line-echo server: the Python floor.

    python pyfloor.py --port 127.0.0.1:P [--port 127.0.0.1:P2] --workers N [--once]

Only the standard library, and only what a pre-fork echo server cannot do
without: bind, fork N children, replace a child that exits, stop on TERM.
A child echoes lines until EOF, or with --once echoes one line and closes.

One listener: children block in accept() on the shared socket (the kernel
wakes one waiter per connection).  Two listeners: children select() on both
non-blocking sockets and race for accept(); losers see BlockingIOError.
"""

import argparse
import os
import select
import signal
import socket


def bind(spec):
    host, _, port = spec.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(1024)
    return s


def serve(conn, once):
    f = conn.makefile("rb")
    try:
        if once:
            line = f.readline()
            conn.sendall(line)
        else:
            for line in f:
                conn.sendall(line)
    except OSError:
        # A client that closes with a reply in flight resets the connection;
        # that ends this connection, not the child.
        pass
    finally:
        f.close()
        conn.close()


def child(listeners, once):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if len(listeners) == 1:
        s = listeners[0]
        while True:
            conn, _ = s.accept()
            serve(conn, once)
    while True:
        readable, _, _ = select.select(listeners, [], [])
        for s in readable:
            try:
                conn, _ = s.accept()
            except BlockingIOError:
                continue
            conn.setblocking(True)
            serve(conn, once)


def spawn(listeners, once):
    pid = os.fork()
    if pid == 0:
        try:
            child(listeners, once)
        finally:
            os._exit(0)
    return pid


class Stop(Exception):
    pass


def on_stop(signum, frame):
    # Raising is what cuts os.wait() short: PEP 475 retries it otherwise.
    raise Stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", action="append", required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args()
    listeners = [bind(p) for p in args.port]
    if len(listeners) > 1:
        for s in listeners:
            s.setblocking(False)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    children = set()
    try:
        for _ in range(args.workers):
            children.add(spawn(listeners, args.once))
        while True:
            pid, _ = os.wait()
            if pid in children:
                children.discard(pid)
                children.add(spawn(listeners, args.once))
    except Stop:
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


if __name__ == "__main__":
    main()
