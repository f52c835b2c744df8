"""Process models, each in its own module, imported when first named.

``PERSONALITIES`` lists the names; ``load(name)`` and ``find(text)`` give the
class.  A server that runs PreForkSimple never imports Fork, INET or PreFork
(every module imported is start-up time, in each process that starts).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


#: Every personality's name, and the module of this package that defines it.
PERSONALITIES = {"Single": "single", "PreForkSimple": "prefork_simple", "PreFork": "prefork", "Fork": "fork",
                 "INET": "inet"}


def load(name: str) -> Any:
    """The class of a personality named exactly as in PERSONALITIES."""
    # __import__ rather than importlib.import_module: importing importlib would cost start-up too.
    module = __import__(f"{__name__}.{PERSONALITIES[name]}", fromlist=[name])
    return getattr(module, name)


def find(name: str):
    """'preforksimple', 'Net::Server::PreForkSimple' -> the class, or None."""
    key = name.strip().lower().removeprefix("net::server::")
    for known in PERSONALITIES:
        if known.lower() == key:
            return load(known)
    return None


def __getattr__(name: str) -> Any:
    if name in PERSONALITIES:
        return load(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PERSONALITIES", "find", "load", *PERSONALITIES]
