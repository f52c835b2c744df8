"""The access log: common, combined and custom formats; escaping; bad formats as configuration errors."""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import pytest

from netserver.errors import ConfigError
from netserver.protocols.access_log import AccessLog


def request(**extra) -> dict:
    env = {"REMOTE_ADDR": "192.0.2.7", "REQUEST_METHOD": "GET", "RAW_URI": "/a?b=1", "SERVER_PROTOCOL": "HTTP/1.1",
           "PATH_INFO": "/a", "SCRIPT_NAME": "", "QUERY_STRING": "b=1", "SERVER_PORT": "8000",
           "HTTP_HOST": "example.com"}
    env.update(extra)
    return env


def response(code: int = 200, sent: int = 42, headers=(("Content-Type", "text/html"),)):
    return SimpleNamespace(code=code, body_sent=sent, headers=list(headers))


def line(fmt: str, env: dict | None = None, resp=None, took: float = 0.0015) -> str:
    return AccessLog.compile(fmt, "test").line(env or request(), resp or response(), took)


TIME = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"


def test_common() -> None:
    assert re.fullmatch(r'192\.0\.2\.7 - - ' + TIME + r' "GET /a\?b=1 HTTP/1\.1" 200 42', line("common"))


def test_combined_quotes_referer_and_user_agent() -> None:
    env = request(HTTP_REFERER="http://example.com/", HTTP_USER_AGENT="curl/8.0", REMOTE_USER="ann")
    assert re.fullmatch(r'192\.0\.2\.7 - ann ' + TIME + r' "GET /a\?b=1 HTTP/1\.1" 200 42 '
                        r'"http://example\.com/" "curl/8\.0"', line("Combined", env))
    assert line("combined").endswith('"-" "-"')  # absent headers


def test_custom_directives() -> None:
    fmt = "%m %U%q %H %>s %b %B %D %T %{X-Req}i %{content-type}o %{X-None}o %v %p %P %%"
    out = line(fmt, request(HTTP_X_REQ="r1"), response(sent=0))
    assert out == f"GET /a?b=1 HTTP/1.1 200 - 0 1500 0 r1 text/html - example.com 8000 {os.getpid()} %"
    assert line("%a %l %u %{Content-Type}i", request(CONTENT_TYPE="text/plain")) == "192.0.2.7 - - text/plain"


@pytest.mark.parametrize("field, value, logged", [
    ("RAW_URI", '/x HTTP/1.1" 200 1\n192.0.2.66 - - [forged]', '/x HTTP/1.1\\x22 200 1\\x0a192.0.2.66 - - [forged]'),
    ("RAW_URI", "/back\\slash\r", "/back\\x5cslash\\x0d"),
    ("HTTP_USER_AGENT", "evil\x1b[31mred\x7f", "evil\\x1b[31mred\\x7f"),
    ("HTTP_USER_AGENT", "caf\u00e9", "caf\\xc3\\xa9"),
])
def test_client_fields_are_escaped(field: str, value: str, logged: str) -> None:
    out = line('"%r" "%{User-Agent}i"', request(**{field: value}))
    assert logged in out
    assert "\n" not in out and "\r" not in out and "\x1b" not in out
    assert out.count('"') == 4  # only the format's own quotes


def test_response_header_values_are_escaped() -> None:
    assert line("%{X-Out}o", resp=response(headers=[("X-Out", 'a"b')])) == "a\\x22b"


@pytest.mark.parametrize("fmt, hint", [
    ("%h %Z", "unknown directive '%Z'"),
    ("%{Referer}x", "unknown directive '%{Referer}x'"),
    ("%h %", "incomplete directive"),
    ("%{Referer", "incomplete directive"),
])
def test_bad_format_is_a_config_error_naming_the_option(fmt: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AccessLog.compile(fmt, "server.conf:4")
    assert caught.value.option == "access_log_format"
    text = str(caught.value)
    assert "access_log_format" in text and hint in text and "server.conf:4" in text


def test_disabled_until_opened_then_one_line_per_write(tmp_path) -> None:
    log = AccessLog.compile("common", "test")
    log.write(request(), response(), 0.0)  # no target: nothing, no error
    path = tmp_path / "access.log"
    log.open(str(path), "test", None)
    log.write(request(), response(), 0.0)
    log.write(request(RAW_URI="/two\n"), response(404, 0), 0.0)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith('"GET /two\\x0a HTTP/1.1" 404 -')


def test_log_target_goes_to_the_error_log() -> None:
    seen = []
    log = AccessLog.compile("%m %>s", "test")
    log.open("log", "test", lambda level, fmt, *args: seen.append((level, fmt % args)))
    log.write(request(), response(), 0.0)
    assert seen == [(2, "GET 200")]
