"""How the WSGI tests start ``netserver --app``: the personalities, and the two I/O paths of a child."""

from __future__ import annotations

APP = ("--app", "wsgi_apps:app")
PERSONALITY_ARGS = {
    "Single": ("--server_type", "Single"),
    "PreForkSimple": ("--server_type", "PreForkSimple", "--max_servers", "2"),
    "PreForkSimple-blocking": ("--server_type", "PreForkSimple", "--max_servers", "2", "--max_connections", "1"),
    "PreFork": ("--server_type", "PreFork", "--min_servers", "1", "--max_servers", "3"),
}
DEFAULT = PERSONALITY_ARGS["PreForkSimple"]
#: The two ways a pre-forked child serves HTTP: many connections in one epoll (http_mux), or one
#: connection at a time in blocking mode (wsgi.Channel, also what Single runs).
IO_PATHS = {"mux": DEFAULT, "blocking": PERSONALITY_ARGS["PreForkSimple-blocking"]}


def start(serve, *args: str, personality: tuple[str, ...] = DEFAULT, app: tuple[str, ...] = APP, **kwargs):
    """A server from the ``serve`` fixture running ``app`` on ``personality``."""
    return serve(*app, *personality, *args, **kwargs)
