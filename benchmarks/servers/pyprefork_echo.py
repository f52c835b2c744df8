"""py-prefork-server (PyPI: py-prefork-server, module preforkserver) as a line-echo server.

    python pyprefork_echo.py --port 127.0.0.1:P --workers N [--once]

The pool is pinned to N children (min_servers = max_servers = N, no spare
management) so it matches the other peers' fixed-size pools; its spare
shrinking path raises TypeError on Python 3 and is never reached this way.
It supports a single listener only.
"""

import argparse

import preforkserver


class EchoChild(preforkserver.BaseChild):
    once = False  # --once: echo one line and close, as every peer does in workload 1

    def process_request(self):
        f = self.conn.makefile("rb")
        for line in f:
            self.conn.sendall(line)
            if self.once:
                break
        f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args()
    EchoChild.once = args.once
    host, _, port = args.port.rpartition(":")
    manager = preforkserver.Manager(
        EchoChild,
        max_servers=args.workers,
        min_servers=args.workers,
        min_spare_servers=0,
        max_spare_servers=args.workers,
        max_requests=0,
        bind_ip=host,
        port=int(port),
        listen=1024,
    )
    manager.run()


if __name__ == "__main__":
    main()
