"""Act as systemd socket activation: bind, put the socket on fd 3, exec netserver.

usage: systemd_wrapper.py PORT_FILE [netserver options]   (the bound port is written to PORT_FILE)
"""

import os
import socket
import sys

sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(128)
port = sock.getsockname()[1]
with open(sys.argv[1], "w") as handle:
    handle.write(f"{port} {os.fstat(sock.fileno()).st_ino}\n")
if sock.fileno() != 3:
    os.dup2(sock.fileno(), 3)  # dup2 makes fd 3 inheritable
os.set_inheritable(3, True)  # and when the socket already is fd 3, dup2 does nothing
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())  # exec keeps the pid
args = [a if a != "PORT" else f"127.0.0.1:{port}" for a in sys.argv[2:]]
os.execv(sys.executable, [sys.executable, "-m", "netserver", *args])
