"""An HTTP server whose parent writes its scoreboard to $MARK_DIR/board on SIGUSR2 (see
prefork_handlers.BoardDump); GET /sleep takes 2 s, so a test can read a busy slot."""

import time

from http_load_apps import hello
from prefork_handlers import BoardDump

from netserver import WSGIProtocol


def sleepy(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(2)
    return hello(environ, start_response)


class HTTPBoard(WSGIProtocol, BoardDump):
    pass


if __name__ == "__main__":
    HTTPBoard(app=sleepy).run()
