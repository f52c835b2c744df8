"""The request cases of tests/requests/ fed to RequestStream: whole, a byte at a time, and in random pieces.

"whole" feeds each of the client's writes (the ``\\z`` parts) at once.  Each feed
must give the same outcome, so a refusal or a parse cannot depend
on where the network happened to cut the bytes.  After a valid case that
stays open, one more request must parse cleanly: nothing of the case may be
left in the stream to be taken for the start of the next request.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from support.http_cases import LIMITS, Case, latin1, load_all

pytest.importorskip("httptools")
from netserver.protocols import http  # noqa: E402

CASES = load_all()
PING = b"GET /ping HTTP/1.1\r\nHost: ping.example\r\n\r\n"
FIELDS = ("method", "target", "version", "headers", "body", "keep_alive")


def limits() -> http.Limits:
    return http.Limits(LIMITS["request_line"], LIMITS["header_count"], LIMITS["header_bytes"], LIMITS["body"])


def pieces(case: Case, how: str) -> list[bytes]:
    if how == "whole":
        return case.parts  # as the client sends them: one feed per write
    data, seed = case.raw, case.name
    if how == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(data):
        size = rng.randint(1, 17)
        out.append(data[at:at + size])
        at += size
    return out


def as_expected(request: http.Request, with_expect: bool) -> dict[str, Any]:
    parsed = {
        "method": request.method, "target": latin1(request.target), "version": request.version,
        "headers": [[latin1(name), latin1(value)] for name, value in request.headers],
        "body": latin1(bytes(request.body)), "keep_alive": request.keep_alive,
    }
    if with_expect:
        parsed["expect_continue"] = request.expect_continue
    return parsed


def outcome(stream: http.RequestStream, case: Case) -> tuple[list[dict[str, Any]], int | None]:
    """The requests parsed before any refusal, and the refusal's status (None: none)."""
    parsed, refusal = [], None
    expected = case.requests
    for index, request in enumerate(stream.requests):
        if request.error is not None:
            refusal = request.error.status
            break
        assert request.complete, f"{case}: request {index} is not complete"
        with_expect = index < len(expected) and "expect_continue" in expected[index]
        parsed.append(as_expected(request, with_expect))
    return parsed, refusal


def feed(case: Case, how: str) -> http.RequestStream:
    stream = http.RequestStream(limits())
    for piece in pieces(case, how):
        stream.feed(piece)
    return stream


@pytest.mark.parametrize("how", ["whole", "bytes", "random"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_request_case(case: Case, how: str) -> None:
    stream = feed(case, how)
    parsed, refusal = outcome(stream, case)
    expected = [{key: value for key, value in request.items() if key in FIELDS or key == "expect_continue"}
                for request in case.requests]
    assert parsed == expected, case.expect.get("why")
    if case.expect.get("timeout"):
        # Only the server's clock ends this one: the stream waits for the rest of the head.
        assert refusal is None and not stream.broken and stream.in_head, case.expect.get("why")
        return
    assert refusal == case.status, f"{case}: {case.expect.get('why')}"
    if case.status is not None:
        assert stream.broken, "nothing is parsed after a refusal"
        return
    assert not stream.in_head
    if parsed[-1]["keep_alive"]:
        count = len(stream.requests)
        stream.feed(PING)
        assert len(stream.requests) == count + 1 and stream.requests[-1].target == b"/ping", \
            "the case left bytes in the stream that spoil the next request"
        assert stream.requests[-1].error is None


def test_cases_cover_every_refusal_status() -> None:
    statuses = {case.status for case in CASES}
    assert {400, 408, 413, 414, 431, 501, 505} <= statuses
    assert len(CASES) >= 60


@pytest.mark.parametrize("text, parts", [
    ("GET / HTTP/1.1\\r\\n\nHost: a\\r\\n\n\\r\\n\n", [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]),
    ("a\\x00\\t\\\\b\\x20\n", [b"a\x00\t\\b "]),
    ("head\\r\\n\\r\\n\n\\z\nbody\n", [b"head\r\n\r\n", b"body"]),
])
def test_case_files_decode_escapes_and_drop_layout_newlines(text: str, parts: list[bytes]) -> None:
    from support.http_cases import decode
    assert decode(text) == parts


def refusal_of(data: bytes, limits: http.Limits, piece: int) -> int | None:
    stream = http.RequestStream(limits)
    for at in range(0, len(data), piece):
        stream.feed(data[at:at + piece])
    assert stream.requests, "the head is complete: it is either queued or refused"
    return stream.requests[0].error.status if stream.requests[0].error is not None else None


@pytest.mark.parametrize("piece", [1 << 20, 4096])
def test_the_header_size_limit_counts_each_field_as_name_value_and_four(piece: int) -> None:
    # "a:" lines take 4 bytes on the wire and count 5, so 16,000 of them fit in 64,027 bytes of head
    # and count 80,009: over max_header_size 65536, though fewer bytes than that arrived.
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"a:\r\n" * 16000 + b"\r\n"
    assert len(many) < 65536
    assert refusal_of(many, http.Limits(header_count=20000), piece) == 431


@pytest.mark.parametrize("piece", [1 << 20, 4096])
def test_trailing_whitespace_of_a_value_is_not_counted_against_the_size_limit(piece: int) -> None:
    # RFC 9112 5: the OWS after a value is not part of it: 60,000 bytes of value and 6,000 spaces is
    # within max_header_size 65536, though the head is longer.
    padded = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 60000 + b" " * 6000 + b"\r\n\r\n"
    assert len(padded) > 65536
    assert refusal_of(padded, http.Limits(), piece) is None
