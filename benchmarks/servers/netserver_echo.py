"""netserver's PreForkSimple as a line-echo server, driven by its own options.

    python netserver_echo.py --port=127.0.0.1:P [--port=127.0.0.1:P2] \
        --max_servers=N --max_requests=0 --serialize=auto --log_level=0 [--once] [--ready_fd=FD]

Every argument is handed to netserver unchanged, so this measures the
package as a user would run it.  ``--once`` is an option this server declares
the way any netserver user would: echo one line and close (workload 1, as the
floors and Perl do), instead of echoing lines until the client's EOF.
"""

import sys

from netserver import Option, PreForkSimple
from netserver.options import boolean


class Echo(PreForkSimple):
    declared_options = PreForkSimple.declared_options + (
        Option("once", boolean, False, "Echo one line, then close. Default off.", flag=True, metavar="BOOL"),
    )

    def process_request(self, client):
        if self.options.once:
            client.wfile.write(client.rfile.readline())
            return
        for line in client.rfile:
            client.wfile.write(line)


if __name__ == "__main__":
    Echo().run(argv=sys.argv[1:])
