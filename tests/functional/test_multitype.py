"""server_type as Net::Server's MultiType: a list, the first that loads with the handler runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.clients import talk

ROOT = Path(__file__).resolve().parents[2]


def test_repeated_on_the_command_line_the_first_that_loads_runs(serve):
    # standalone:Hello is a Single server: PreFork cannot take it, Single can.
    server = serve("--server_type", "PreFork", "--server_type", "Single", "--handler", "standalone:Hello")
    assert talk(server.addr, b"") == b"hello from a script\n"
    assert "Hello (type Single) starting!" in server.log()


def test_a_comma_list_takes_the_first(serve):
    server = serve("--server_type", "Fork,Single", "--handler", "echo:Echo")
    assert talk(server.addr, b"x\n") == b"x\n"
    assert "(type Fork) starting!" in server.log()


def test_repeated_conf_file_lines_are_one_list(serve, tmp_path):
    conf = tmp_path / "multi.conf"
    conf.write_text("server_type PreForkSimple\nserver_type Single\nhandler standalone:Hello\n")
    server = serve("--conf_file", str(conf))
    assert talk(server.addr, b"") == b"hello from a script\n"


def test_when_none_loads_the_error_names_each_reason(serve):
    result = serve.run("--server_type", "PreFork,Fork", "--handler", "standalone:Hello", "--port", "127.0.0.1:0")
    assert result.returncode == 2
    line = result.stderr.decode()
    assert "server_type: 'PreFork,Fork' none of them loads: PreFork: conflicts with handler standalone:Hello" in line
    assert "Fork: conflicts with handler standalone:Hello, a Single server (command line)" in line


def test_a_name_that_is_no_personality_is_an_error_not_a_fallback(serve):
    result = serve.run("--server_type", "Bogus,Single", "--port", "127.0.0.1:0")
    assert result.returncode == 2
    assert b"server_type: 'Bogus' is not a known personality; use one of Single, PreForkSimple, PreFork, Fork, INET" \
        in result.stderr


@pytest.mark.parametrize("personality", ["Single", "PreForkSimple", "PreFork", "Fork"])
def test_a_conf_files_server_type_works_for_every_personality(serve, tmp_path, personality):
    conf = tmp_path / "one.conf"
    conf.write_text(f"server_type {personality}\nhandler echo:Pid\n")
    server = serve("--conf_file", str(conf))
    assert f"(type {personality}) starting!" in server.log()
    assert talk(server.addr, b"x\n").endswith(b"\nx\n")


def test_a_conf_files_server_type_works_for_inet(tmp_path):
    conf = tmp_path / "inet.conf"
    conf.write_text("server_type INET\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run([sys.executable, "-m", "netserver", "--conf_file", str(conf)], input=b"quit\n",
                            capture_output=True, env=env, timeout=20)
    assert result.returncode == 0 and result.stdout.startswith(b'Welcome to "INET"')
