"""Real applications from PyPI (Flask, Django) under netserver, through curl and http.client;
then wrk and ab, keep-alive on and off, with zero errors and zero non-2xx responses."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess

import pytest

from support.wsgi_servers import IO_PATHS, PERSONALITY_ARGS, start

pytest.importorskip("flask")
pytest.importorskip("django")

FRAMEWORKS = {"flask": ("--app", "flask_app:app"), "django": ("--app", "django_app:application")}
ROWS = b"".join(b"row %d\n" % index for index in range(50))


def curl(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (apt-get install -y curl)")
    return subprocess.run(["curl", "--silent", "--show-error", "--max-time", "5", *args], capture_output=True,
                          timeout=15)


def url(server, path: str) -> str:
    host, port = server.addr
    return "http://%s:%d%s" % (host, port, path)


@pytest.fixture(params=sorted(FRAMEWORKS))
def framework(request):
    return request.param


def test_framework_with_curl(serve, framework, tmp_path):
    server = start(serve, app=FRAMEWORKS[framework])
    # Several URLs in one curl: it reuses the keep-alive connection for all of them.
    heads = tmp_path / "heads"
    result = curl("--verbose", "-D", str(heads), url(server, "/"), url(server, "/items/7?x=y"),
                  url(server, "/nope"), url(server, "/stream"))
    assert result.returncode == 0, result.stderr
    statuses = re.findall(r"^HTTP/1\.1 (\d{3})", heads.read_text(), re.M)
    assert statuses == ["200", "200", "404", "200"]
    body = result.stdout
    assert body.startswith(framework.encode() + b" index") and body.endswith(ROWS)
    assert b'"item":7' in body.replace(b" ", b"")
    assert result.stderr.count(b"Re-using existing connection") >= 3 or \
        result.stderr.count(b"Reusing existing") >= 3, result.stderr.decode()
    form = curl("-d", "name=caf%C3%A9&n=1", url(server, "/form"))
    assert json.loads(form.stdout)["form"] == {"name": "café", "n": "1"}
    body = json.dumps({"list": [1, 2, 3], "text": "é" * 1000})
    posted = curl("-H", "Content-Type: application/json", "-H", "Expect: 100-continue", "--data-binary", body,
                  url(server, "/json"))
    assert json.loads(posted.stdout)["received"] == json.loads(body)


def test_framework_with_http_client(serve, framework):
    server = start(serve, app=FRAMEWORKS[framework], personality=PERSONALITY_ARGS["PreFork"])
    connection = http.client.HTTPConnection(*server.addr, timeout=5)
    try:
        connection.request("GET", "/items/42?a=b")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["item"] == 42
        connection.request("POST", "/form", body="a=1&b=%26", headers={"Content-Type":
                                                                     "application/x-www-form-urlencoded"})
        assert json.loads(connection.getresponse().read())["form"] == {"a": "1", "b": "&"}
        big = {"data": "x" * 200000}  # over buffer_body: streamed through wsgi.input
        connection.request("POST", "/json", body=json.dumps(big), headers={"Content-Type": "application/json"})
        assert json.loads(connection.getresponse().read())["received"] == big
        connection.request("GET", "/stream")
        response = connection.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked" and response.read() == ROWS
        connection.request("GET", "/missing")
        response = connection.getresponse()
        assert response.status == 404
        response.read()
        connection.request("HEAD", "/")
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b""
    finally:
        connection.close()


def test_flask_send_file_and_script_name(serve, tmp_path):
    payload = bytes(range(256)) * 4000
    (tmp_path / "blob").write_bytes(payload)
    server = start(serve, "--script_name", "/app", app=FRAMEWORKS["flask"], personality=IO_PATHS["blocking"],
                   env={"FLASK_FILE": str(tmp_path / "blob")})
    result = curl("-D", "-", url(server, "/app/file"))
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(payload) in head and body == payload
    assert json.loads(curl(url(server, "/app/items/3")).stdout)["item"] == 3


def test_django_script_name_and_trusted_proxy(serve):
    server = start(serve, "--script_name", "/site", "--forwarded_allow", "127.0.0.1/32", app=FRAMEWORKS["django"],
                   personality=PERSONALITY_ARGS["Single"])
    item = json.loads(curl(url(server, "/site/items/5")).stdout)
    assert item == {"item": 5, "path": "/site/items/5", "script": "/site"}
    secure = json.loads(curl("-H", "X-Forwarded-Proto: https", "-d", "k=v", url(server, "/site/form")).stdout)
    assert secure == {"form": {"k": "v"}, "secure": True}


# ---------------------------------------------------------------------- load tools
def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip("%s is not installed (apt-get install -y %s)" % (name, package))
    return path


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "close"])
def test_wrk_finishes_with_zero_errors(serve, keepalive):
    wrk = tool("wrk", "wrk")
    server = start(serve, "--max_requests", "500", personality=("--max_servers", "2"))
    args = [wrk, "-t1", "-c8", "-d2s", "--timeout", "2s"] + ([] if keepalive else ["-H", "Connection: close"])
    result = subprocess.run(args + [url(server, "/hello")], capture_output=True, timeout=30, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    assert requests > 100, out
    assert "Socket errors" not in out and "Non-2xx" not in out, out


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "close"])
def test_ab_finishes_with_zero_errors(serve, keepalive):
    ab = tool("ab", "apache2-utils")
    server = start(serve, "--max_requests", "500", personality=("--max_servers", "2"))
    args = [ab, "-q", "-c", "8", "-n", "2000", "-s", "5"] + (["-k"] if keepalive else [])
    result = subprocess.run(args + [url(server, "/hello")], capture_output=True, timeout=30, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"Complete requests:\s+2000\b", out), out
    assert re.search(r"Failed requests:\s+0\b", out), out
    assert "Non-2xx responses" not in out, out
    kept = re.search(r"Keep-Alive requests:\s+(\d+)", out)
    assert (int(kept.group(1)) > 1900) if keepalive else (kept is None or kept.group(1) == "0"), out
