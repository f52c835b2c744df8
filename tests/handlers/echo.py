"""Handlers the tests run with --handler."""

import os
import time


class Echo:
    """Echo each line back."""

    def process_request(self, client):
        for line in client.rfile:
            client.wfile.write(line)


class Pid:
    """Answer with the serving process's pid, then echo one line."""

    def process_request(self, client):
        client.wfile.write(b"%d\n" % os.getpid())
        line = client.rfile.readline()
        if line:
            client.wfile.write(line)


class Sleepy:
    """Read one line 'SECONDS', sleep that long, answer 'done <pid>'."""

    def process_request(self, client):
        line = client.rfile.readline()
        time.sleep(float(line.strip() or 0))
        client.wfile.write(b"done %d\n" % os.getpid())


class Crash:
    """Raise on 'boom', echo otherwise."""

    def process_request(self, client):
        for line in client.rfile:
            if line.strip() == b"boom":
                raise RuntimeError("handler exploded on purpose")
            client.wfile.write(line)


class Info:
    """Report what the server knows about the client."""

    def process_request(self, client):
        fields = (client.proto, client.peeraddr, client.peerport, client.sockaddr, client.sockport,
                  client.peerhost)
        client.wfile.write((" ".join(str(f) for f in fields) + "\n").encode())
        if client.proto == "udp":
            return
        client.rfile.readline()


class Identity:
    """Report uid, gid, groups and the process status of the child."""

    def process_request(self, client):
        groups = ",".join(map(str, sorted(os.getgroups()))).encode()
        client.wfile.write(b"%d %d %s\n" % (os.getuid(), os.getgid(), groups))


class ListRoot:
    """Name what is in / as the child sees it."""

    def process_request(self, client):
        client.wfile.write((" ".join(sorted(os.listdir("/"))) + "\n").encode())


class ListenEnv:
    """Report the systemd activation variables as this process sees them."""

    def process_request(self, client):
        names = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
        client.wfile.write((repr([os.environ.get(name) for name in names]) + "\n").encode())


class Persistent:
    """A line service for stop tests: 'slow' answers 'done' after 1.5 s, anything else is echoed.

    child_finish_hook (and, for Single, pre_server_close_hook) logs a line, so a
    test can see that it ran.
    """

    def process_request(self, client):
        for line in client.rfile:
            if line.strip() == b"slow":
                time.sleep(1.5)
                client.wfile.write(b"done\n")
            else:
                client.wfile.write(line)

    def child_finish_hook(self):
        self.log(2, "finish hook ran in %d", os.getpid())

    def pre_server_close_hook(self):
        self.log(2, "finish hook ran in %d", os.getpid())
