"""A pre-forking line echo server.

    python examples/echo_server.py                       # port 20203, 8 children
    python examples/echo_server.py --port 127.0.0.1:9000 --max_servers 4 --log_level 3
    kill -HUP <pid>                                      # restart without dropping a connection
"""

from netserver import PreForkSimple


class Echo(PreForkSimple):
    def default_values(self):
        # The lowest source: a conf file or the command line changes them.
        return {"max_servers": 8, "max_requests": 1000}

    def child_init_hook(self):
        # Runs in each child after fork and privilege drop: open per-child resources here.
        self.served = 0

    def process_request(self, client):
        for line in client.rfile:
            client.wfile.write(line)
        self.served += 1

    def child_finish_hook(self):
        self.log(3, "child served %d connections", self.served)


if __name__ == "__main__":
    Echo().run()
