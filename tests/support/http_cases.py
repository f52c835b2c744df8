"""The data-driven HTTP request cases in tests/requests/, shared by the unit and functional runners.

A case is two files with one stem: ``NAME.http``, the raw bytes a client
sends, and ``NAME.json``, what the server must make of them.

The ``.http`` file is text in which real line ends are layout only and are
dropped; the bytes are written as Python bytes escapes (``\\r\\n``,
``\\t``, ``\\x00``, ``\\\\``), so an editor cannot turn CRLF into LF or
strip a trailing space unseen.  ``\\z`` stands for "the client stops
here": it splits the input into parts that the functional runner sends one
at a time (after a ``100 Continue``, when the case expects one).

The ``.json`` file:

* ``requests``: the requests parsed before any refusal, in order, each with
  ``method``, ``target``, ``version``, ``headers`` (``[name, value]`` pairs
  as sent), ``body`` and ``keep_alive``; optional ``expect_continue`` and
  ``environ`` (WSGI keys the echo application must report, for the
  functional runner).  Text is latin-1, so every byte has a character.
* ``status``: for invalid cases, the refusal (400, 408, 413, 414, 431, 501,
  505) after which the connection closes; ``timeout``: the head never
  completes, so only the server's clock refuses it (408).
* ``interim``: informational statuses the server must send first (100).
* ``why``: the rule the case checks (RFC 9112 / RFC 9110 section).

Every case runs against :data:`LIMITS`, small so that the limit cases stay
small files; the functional server gets the same values as options.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent / "requests"
PART = b"\x00\\z\x00"  # what a \z in a case becomes before the split (a NUL pair no case can hold)

#: Request target, header count, header bytes, body: the suite's Limits (and the server's options).
LIMITS = {"request_line": 64, "header_count": 12, "header_bytes": 256, "body": 64}
OPTIONS = ("--max_request_line", "64", "--max_header_count", "12", "--max_header_size", "256",
           "--max_body_size", "64")


@dataclass
class Case:
    name: str
    parts: list[bytes]
    expect: dict[str, Any]

    @property
    def raw(self) -> bytes:
        return b"".join(self.parts)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.expect.get("requests", [])

    @property
    def status(self) -> int | None:
        return self.expect.get("status")

    def __str__(self) -> str:
        return self.name


def decode(text: str) -> list[bytes]:
    """The bytes of a ``.http`` file: layout newlines dropped, escapes decoded, split at ``\\z``."""
    joined = "".join(line for line in text.splitlines())
    marked = joined.replace("\\z", "\\x00\\\\z\\x00")
    data = codecs.escape_decode(marked.encode("latin-1"))[0]
    return data.split(PART)


def load(kind: str) -> list[Case]:
    """Every case of ``valid`` or ``invalid``, in file-name order."""
    cases = []
    for raw_file in sorted((ROOT / kind).glob("*.http")):
        expect_file = raw_file.with_suffix(".json")
        expect = json.loads(expect_file.read_text(encoding="utf-8"))
        cases.append(Case(f"{kind}/{raw_file.stem}", decode(raw_file.read_text(encoding="latin-1")), expect))
    return cases


def load_all() -> list[Case]:
    return load("valid") + load("invalid")


def latin1(data: bytes) -> str:
    return data.decode("latin-1")


def environ_headers(headers: list[list[str]]) -> dict[str, str]:
    """The HTTP_* / CONTENT_* keys a list of header lines becomes (PEP 3333, as wsgi.py maps them)."""
    environ: dict[str, str] = {}
    for name, value in headers:
        upper = name.upper()
        if "_" in upper:
            continue  # dropped: X_Forwarded_For would pass for X-Forwarded-For
        key = upper.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if key in environ and key.startswith("HTTP_"):
            environ[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            environ[key] = value
    return environ
