"""The ``netserver`` command and scripts with conf files (issue 9): server_type and handler read
from the conf file, where a handler's import failed, an unresolvable host under --check_config,
and the effective configuration --check_config prints, including across a HUP.

Real processes throughout: ``serve`` starts servers on port 0, ``serve.run`` runs one to its end.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from support import procs
from support.clients import talk

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLICY = str(EXAMPLES / "policy_daemon.py")


def one_line(result) -> str:
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err.strip()


# --- item 8: server_type and handler in a conf file ------------------------------------------------

def test_server_type_from_the_conf_file_runs_that_personality(serve, tmp_path):
    (tmp_path / "single.conf").write_text("server_type Single\nlog_level 2\n")
    server = serve("--conf_file", "single.conf")
    assert talk(server.addr, b"quit\n").startswith(b'Welcome to "Single"')
    assert server.children() == []
    assert "(type Single) starting!" in server.log()


def test_handler_from_the_conf_file_is_loaded(serve, tmp_path):
    (tmp_path / "echo.conf").write_text("handler echo:Echo\nmax_servers 2\n")
    server = serve("--conf_file", "echo.conf")
    assert talk(server.addr, b"one\ntwo\n") == b"one\ntwo\n"
    server.wait_children(2)


def test_the_command_line_wins_over_the_conf_files_handler_and_server_type(serve, tmp_path):
    (tmp_path / "both.conf").write_text("handler echo:Pid\nserver_type PreForkSimple\n")
    server = serve("--conf_file", "both.conf", "--handler", "echo:Echo", "--server_type", "Single")
    assert talk(server.addr, b"echoed\n") == b"echoed\n"
    assert server.children() == []


@pytest.mark.parametrize("name, accepted", [("PreForkSimple", True), ("Net::Server::PreForkSimple", True),
                                            ("Single", False)])
def test_a_scripts_conf_file_may_confirm_its_personality_only(serve, tmp_path, name, accepted):
    (tmp_path / "policy.conf").write_text(f"max_servers 2\nserver_type {name}\n")
    result = serve.run("--conf_file", "policy.conf", "--check_config", script=POLICY)
    if accepted:
        assert result.returncode == 0, result.stderr
        assert result.stderr.decode().strip() == "configuration OK (PreForkSimple)"
    else:
        assert result.returncode == 2
        assert one_line(result) == ("policy_daemon.py: server_type: 'Single' names another personality than this "
                                    "server's: Policy is a PreForkSimple (policy.conf:2)")


@pytest.mark.parametrize("args", [[], ["--server_type", "Single"]])
def test_help_lists_server_type_and_handler(serve, args):
    for result in (serve.run(*args, "--help"), serve.run("--help", script=POLICY)):
        out = result.stdout.decode()
        assert result.returncode == 0, result.stderr
        assert "  --server_type NAME\n" in out and "  --handler MODULE:ATTR\n" in out


# --- item 9: where a handler's import failed ---------------------------------------------------------

HANDLERS = {
    # module text, the line the message must name, and the exception text
    "raises_deep": ("import os\n\n\ndef load():\n    raise KeyError('no such setting')\n\n\nload()\n", 5,
                    "KeyError: 'no such setting'"),
    "imports_missing": ("x = 1\nimport no_such_module_xyzzy  # noqa\n", 2,
                        "ModuleNotFoundError: No module named 'no_such_module_xyzzy'"),
    "stdlib_refuses": ("import json\n\nSETTINGS = json.loads('not json')\n", 3,
                       "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
}


@pytest.mark.parametrize("name", list(HANDLERS))
def test_a_handler_that_fails_to_import_names_the_file_and_line_of_the_users_code(serve, tmp_path, name):
    source, line, exception = HANDLERS[name]
    (tmp_path / f"{name}.py").write_text(source)
    result = serve.run("--handler", f"{name}:Handler", "--port", "127.0.0.1:0")
    assert result.returncode == 2
    err = one_line(result)
    assert err.startswith(f"netserver: handler: '{name}:Handler' cannot be imported: {exception} "
                          f"at {tmp_path / name}.py:{line}"), err
    assert err.endswith("(command line)")
    if name == "stdlib_refuses":  # the user's line first, then where inside the library it was raised
        assert re.search(r"\(raised in /\S+/json/decoder\.py:\d+\)", err), err


def test_an_error_in_a_module_the_handler_imports_names_that_module(serve, tmp_path):
    (tmp_path / "helper_xyzzy.py").write_text("VALUE = 1\nVALUE = undefined_name\n")
    (tmp_path / "uses_helper.py").write_text("import helper_xyzzy  # noqa\n")
    result = serve.run("--handler", "uses_helper:Handler", "--port", "127.0.0.1:0")
    assert one_line(result).startswith("netserver: handler: 'uses_helper:Handler' cannot be imported: NameError: "
                                       f"name 'undefined_name' is not defined at {tmp_path}/helper_xyzzy.py:2")


# --- item 16: an unresolvable host under --check_config ------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--host", "no.such.host.invalid"], "host: 'no.such.host.invalid' cannot be resolved: "),
    (["--port", "no.such.host.invalid:0"],
     "port: 'no.such.host.invalid:0' (host 'no.such.host.invalid') cannot be resolved: "),
])
def test_check_config_names_a_host_that_does_not_resolve(serve, args, message):
    result = serve.run(*args, "--check_config")
    assert result.returncode == 1
    err = one_line(result)
    assert err.startswith(f"netserver: {message}") and err.endswith("(command line)"), err
    assert "bind" not in err


# --- item 17: --check_config prints the effective configuration ----------------------------------------

def test_check_config_prints_every_option_a_source_set_and_where_from(serve, tmp_path):
    (tmp_path / "server.conf").write_text("# mine\nmax_servers 4\nlog_level 3\nallow ::1\nmax_requests 1000\n")
    result = serve.run("--conf_file", "server.conf", "--max_servers", "3", "--port", "127.0.0.1:0", "--check_config")
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode() == "configuration OK (PreForkSimple)\n"
    rows = [line.split("#", 1) for line in result.stdout.decode().splitlines() if not line.startswith("#")]
    shown = {tuple(value.split()): origin.strip() for value, origin in rows}
    assert shown == {
        ("conf_file", "server.conf"): "command line",
        ("port", "127.0.0.1:0"): "command line",
        ("log_level", "3"): "server.conf:3",
        ("allow", "::1"): "server.conf:4",
        ("max_servers", "3"): "command line",
        ("max_requests", "1000"): "server.conf:5",  # set in the file, even to its default
    }
    # Saved, the listing is a conf file that gives the same configuration.
    (tmp_path / "effective.conf").write_text(result.stdout.decode())
    again = serve.run("--conf_file", "effective.conf", "--check_config")
    assert again.returncode == 0, again.stderr
    assert re.search(r"^max_servers +3 +# effective\.conf:\d+$", again.stdout.decode(), re.M)


def test_hup_still_checks_and_restarts_and_refuses_a_change_of_personality(serve, tmp_path):
    conf = tmp_path / "server.conf"
    conf.write_text("max_servers 2\nlog_level 3\nallow 127\\.0\\.0\\.1\n")
    server = serve("--conf_file", str(conf))
    kids = server.wait_children(2)
    # A good configuration: the check (in check mode, NETSERVER_CHECK=1) passes and a new generation starts.
    server.signal(signal.SIGHUP)
    new = server.wait_children(2, timeout=20, exclude=kids)
    assert "HUP refused" not in server.log()
    assert talk(server.addr, b"quit\n").startswith(b'Welcome to "PreForkSimple"')
    # Another personality cannot take over the running children: refused, with the reason.
    conf.write_text("server_type Single\nlog_level 3\n")
    server.signal(signal.SIGHUP)
    procs.wait_until(lambda: "HUP refused" in server.log(), 20, message="the refusal")
    refusal = next(line for line in server.log().splitlines() if "HUP refused" in line)
    assert refusal.endswith("server_type: 'Single' cannot replace the running PreForkSimple on a HUP; stop and "
                            f"start the server ({conf}:1)"), refusal
    assert sorted(server.children()) == sorted(new)
    assert talk(server.addr, b"quit\n").startswith(b'Welcome to "PreForkSimple"')
