"""Process models.  ``PERSONALITIES`` maps each name to its class."""

from __future__ import annotations

from .fork import Fork
from .inet import INET
from .prefork import PreFork
from .prefork_simple import PreForkSimple
from .single import Single

PERSONALITIES = {"Single": Single, "PreForkSimple": PreForkSimple, "PreFork": PreFork, "Fork": Fork, "INET": INET}


def find(name: str):
    """'preforksimple', 'Net::Server::PreForkSimple' -> the class, or None."""
    key = name.strip().lower().removeprefix("net::server::")
    for known, cls in PERSONALITIES.items():
        if known.lower() == key:
            return cls
    return None
