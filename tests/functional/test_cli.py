"""The ``netserver`` command end to end: exit statuses, one-line errors, --help, --check_config,
and the seed's sample conf file.

Every failing start is run through the real command (``serve.run``) and must
print exactly one line on stderr (no traceback), exit with the documented
status, create no pid file and, for configuration errors, leave the port
unbound.  The autouse fixture checks that no process is left behind.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket

import pytest

from support.clients import connect, free_port, port_is_free
from support.seed import SEED_CONF  # noqa: E402


def assert_failed_start(result, status: int, fragments, pid_file) -> str:
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("netserver: "), err
    assert result.returncode == status, err
    for fragment in fragments:
        assert fragment in err, err
    assert not os.path.lexists(pid_file), f"pid file {pid_file} was created"
    return err


# --- configuration errors: exit 2, nothing bound, nothing created ------------------------------

def write(tmp_path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


CONFIG_ERRORS = {
    "unknown-option": (lambda t: ["--bogus", "1"], ["'--bogus' is not a known option"]),
    "unknown-option-close-to-one": (lambda t: ["--max_server", "8"],
                                    ["'--max_server' is not a known option; did you mean max_servers? (command line)"]),
    "conf-key-close-to-one": (lambda t: ["--conf_file", write(t, "typo.conf", "max_request 8\n")],
                              ["'max_request' is not a known option; did you mean max_requests? (typo.conf:1)"]),
    "flag-given-a-word": (lambda t: ["--background", "bogus"],
                          ["background: 'bogus' is not a boolean (use 1, 0, yes, no, true, false, on or off) "
                           "(command line)"]),
    "bad-type": (lambda t: ["--max_servers", "lots"], ["max_servers: 'lots' is not a whole number (command line)"]),
    "bad-range": (lambda t: ["--log_level", "9"], ["log_level: '9' must be at most 4 (command line)"]),
    "bad-interval": (lambda t: ["--check-for-dead=0"], ["check_for_dead: '0' must be greater than 0"]),
    "bad-boolean": (lambda t: ["--background=maybe"], ["background: 'maybe' is not a boolean"]),
    "missing-value": (lambda t: ["--max_servers"], ["max_servers: needs a value"]),
    "conf-syntax": (lambda t: ["--conf_file", write(t, "bad.conf", "max_servers 2\n[server]\n")],
                    ["is not a 'key value' line (bad.conf:2)"]),
    "conf-unknown-key": (lambda t: ["--conf_file", write(t, "bad.conf", "# c\nmax_servers 2\nbogus 1\n")],
                         ["'bogus' is not a known option", "(bad.conf:3)"]),
    "conf-bad-value": (lambda t: ["--conf_file", write(t, "bad.conf", "\n\nmax_servers lots\n")],
                       ["max_servers: 'lots' is not a whole number (bad.conf:3)"]),
    "conf-missing": (lambda t: ["--conf_file", "missing.conf"],
                     ["conf_file: 'missing.conf' cannot be read: No such file or directory"]),
    "conf-directory": (lambda t: ["--conf_file", str(t)], ["conf_file:", "cannot be read: Is a directory"]),
    "unknown-user": (lambda t: ["--user", "no_such_user_xyzzy"],
                     ["user: 'no_such_user_xyzzy' is not a known user (command line)"]),
    "user-without-passwd-entry": (lambda t: ["--user", "4000123"],
                                  ["user: '4000123' has no passwd entry, so it has no group to run in",
                                   "(command line)"]),
    "syslog-logsock-tcp": (lambda t: ["--log_file", "syslog", "--syslog_logsock", "tcp"],
                           ["syslog_logsock: 'tcp' (Sys::Syslog's tcp) is not supported"]),
    "syslog-logsock-relative": (lambda t: ["--log_file", "syslog", "--syslog_logsock", "logsock"],
                                ["syslog_logsock: 'logsock' is not a unix path (starting with /), host:port"]),
    "syslog-logopt-unknown": (lambda t: ["--syslog_logopt", "pid,bogus"],
                              ["syslog_logopt: 'pid,bogus' names 'bogus', which is not one of"]),
    "unknown-group": (lambda t: ["--group", "no_such_group_xyzzy"],
                      ["group: 'no_such_group_xyzzy' is not a known group (command line)"]),
    "unknown-group-in-conf": (lambda t: ["--conf_file", write(t, "g.conf", "group root no_such_group_xyzzy\n")],
                              ["group: 'no_such_group_xyzzy' is not a known group (g.conf:1)"]),
    "unknown-server-type": (lambda t: ["--server_type", "Bogus"],
                            ["server_type: 'Bogus' is not a known personality", "Single", "PreForkSimple"]),
    "option-of-another-personality": (lambda t: ["--server_type", "Single", "--max_servers", "3"],
                                      ["max_servers: is not valid for Single"]),
    "handler-module-missing": (lambda t: ["--handler", "no_such_module_xyzzy:Thing"],
                               ["handler: 'no_such_module_xyzzy:Thing' cannot be imported", "ModuleNotFoundError"]),
    "handler-raises-on-import": (lambda t: ["--handler", write(t, "broken_handler.py",
                                                                "raise RuntimeError('broken on import')\n")
                                            .removesuffix(".py") + ":Handler"],
                                 ["handler: 'broken_handler:Handler' cannot be imported: RuntimeError: broken on import "
                                  "at /", "/broken_handler.py:1 (command line)"]),
    "handler-syntax-error": (lambda t: ["--handler", write(t, "syntax_handler.py", "def (:\n")
                                        .removesuffix(".py") + ":Handler"],
                             ["handler: 'syntax_handler:Handler' cannot be imported: SyntaxError: invalid syntax at /",
                              "/syntax_handler.py:1 (command line)"]),
    "handler-attribute-missing": (lambda t: ["--handler", "echo:NoSuchThing"], ["module 'echo' has no 'NoSuchThing'"]),
    "handler-not-a-handler": (lambda t: ["--handler", "echo:os"], ["is not a class with a process_request"]),
    "handler-not-module-attr": (lambda t: ["--handler", "echo"], ["handler: 'echo' is not MODULE:ATTR"]),
    "handler-needs-value": (lambda t: ["--handler"], ["handler: needs a value"]),
    "handler-conflicts-with-server-type": (
        lambda t: ["--handler", "crash_on_boot:CrashOnBoot", "--server_type", "Single"],
        ["server_type: 'Single' conflicts with handler crash_on_boot:CrashOnBoot", "PreForkSimple"]),
    "server-type-in-conf-unknown": (lambda t: ["--conf_file", write(t, "st.conf", "# c\nserver_type Bogus\n")],
                                    ["server_type: 'Bogus' is not a known personality", "(st.conf:2)"]),
    "server-type-in-conf-refuses-other-options": (
        lambda t: ["--conf_file", write(t, "st.conf", "server_type Single\nmax_servers 3\n")],
        ["max_servers: is not valid for Single (st.conf:2)"]),
    "handler-in-conf-missing": (lambda t: ["--conf_file", write(t, "h.conf", "handler no_such_module_xyzzy:Thing\n")],
                                ["handler: 'no_such_module_xyzzy:Thing' cannot be imported", "(h.conf:1)"]),
    "handler-in-conf-conflicts-with-server-type": (
        lambda t: ["--server_type", "Single", "--conf_file", write(t, "h.conf", "handler crash_on_boot:CrashOnBoot\n")],
        ["server_type: 'Single' conflicts with handler crash_on_boot:CrashOnBoot, a PreForkSimple server "
         "(command line)"]),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_configuration_errors_exit_2_before_binding(serve, tmp_path, case):
    make_args, fragments = CONFIG_ERRORS[case]
    port = free_port()
    pid_file, log_file = tmp_path / "server.pid", tmp_path / "server.log"
    result = serve.run("--port", f"127.0.0.1:{port}", "--pid_file", str(pid_file), "--log_file", str(log_file),
                       *make_args(tmp_path))
    assert_failed_start(result, 2, fragments, pid_file)
    assert not log_file.exists()
    assert port_is_free(port)


# --- the environment refuses: exit 1 --------------------------------------------------------------

@pytest.fixture
def held_port():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


def test_port_in_use_exits_1_naming_the_address(serve, tmp_path, held_port):
    pid_file = tmp_path / "server.pid"
    result = serve.run("--port", f"127.0.0.1:{held_port}", "--pid_file", str(pid_file),
                       "--log_file", str(tmp_path / "server.log"))
    assert_failed_start(result, 1, [f"127.0.0.1:{held_port}", "in use"], pid_file)


@pytest.mark.parametrize("first_port_free", [False, True], ids=["only-port", "second-port"])
def test_port_in_use_without_log_file_still_prints_one_line(serve, tmp_path, held_port, first_port_free):
    # The log goes to stderr by default: nothing may be logged before the failure.
    first = free_port()
    ports = ["--port", f"127.0.0.1:{first}"] if first_port_free else []
    result = serve.run(*ports, "--port", f"127.0.0.1:{held_port}")
    assert_failed_start(result, 1, [f"127.0.0.1:{held_port}", "in use"], tmp_path / "server.pid")
    assert port_is_free(first)


def test_unresolvable_host_exits_1(serve, tmp_path):
    pid_file = tmp_path / "server.pid"
    result = serve.run("--port", "no-such-host.invalid:0", "--pid_file", str(pid_file),
                       "--log_file", str(tmp_path / "server.log"))
    assert_failed_start(result, 1, ["port: 'no-such-host.invalid:0' (host 'no-such-host.invalid') cannot be resolved"],
                        pid_file)


def test_pid_file_that_is_a_symlink_exits_1_and_leaves_the_target(serve, tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("do not touch\n")
    link = tmp_path / "link.pid"
    link.symlink_to(target)
    result = serve.run("--port", "127.0.0.1:0", "--pid_file", str(link), "--log_file", str(tmp_path / "server.log"))
    assert_failed_start(result, 1, ["pid_file", "link.pid", "symbolic link"], tmp_path / "server.pid")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "do not touch\n"


def test_missing_chroot_directory_exits_1(serve, tmp_path):
    pid_file = tmp_path / "server.pid"
    missing = tmp_path / "no-such-dir"
    result = serve.run("--port", "127.0.0.1:0", "--chroot", str(missing), "--pid_file", str(pid_file),
                       "--log_file", str(tmp_path / "server.log"))
    assert_failed_start(result, 1, ["chroot", str(missing)], pid_file)


# --- --help and --check_config ----------------------------------------------------------------------

@pytest.mark.parametrize("args, listed, absent", [
    ([], ["--max_servers", "--max_requests", "--port", "--conf_file", "PreForkSimple"], []),
    (["--server_type", "PreForkSimple"], ["--max_servers", "--serialize"], []),
    (["--server_type", "Single"], ["--port", "--log_level", "Options of Single"], ["max_servers", "serialize"]),
    (["--handler", "echo:Echo", "--server_type", "Single"], ["--port"], ["max_servers"]),
])
def test_help_lists_the_chosen_personalitys_options(serve, args, listed, absent):
    result = serve.run(*args, "--help")
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    for word in listed:
        assert word in out
    for word in absent:
        assert word not in out


@pytest.mark.parametrize("server_type", ["PreForkSimple", "Single"])
def test_check_config_exits_0_without_binding(serve, tmp_path, held_port, server_type):
    pid_file, log_file = tmp_path / "server.pid", tmp_path / "server.log"
    result = serve.run("--server_type", server_type, "--check_config", "--port", f"127.0.0.1:{held_port}",
                       "--pid_file", str(pid_file), "--log_file", str(log_file))
    # The port is held by this test: binding it would have failed with exit 1.
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().strip() == f"configuration OK ({server_type})"
    assert not pid_file.exists() and not log_file.exists()


def test_check_config_reports_a_bad_configuration(serve, tmp_path):
    result = serve.run("--check_config", "--port", "127.0.0.1:0", "--max_servers", "0")
    assert_failed_start(result, 2, ["max_servers: '0' must be at least 1 (command line)"], tmp_path / "server.pid")


# --- the seed's sample conf file ------------------------------------------------------------------

def snapshot(path: str):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(user_exists("somebody"), reason="a user 'somebody' exists on this machine")
def test_seed_conf_as_is_stops_naming_user_file_and_line(serve, tmp_path):
    (tmp_path / "test.conf").write_text(SEED_CONF)
    user_line = next(n for n, line in enumerate(SEED_CONF.splitlines(), 1) if line.startswith("user"))
    outside = ["/tmp/server.pid", "/var/log/server.log"]
    before = {path: snapshot(path) for path in outside}
    free_before = {port: port_is_free(port) for port in (20204, 20205)}
    result = serve.run("--conf_file", "test.conf")
    err = assert_failed_start(result, 2, ["user", "'somebody'", f"test.conf:{user_line}"], tmp_path / "server.pid")
    assert f"(test.conf:{user_line})" in err and user_line == 8
    assert {path: snapshot(path) for path in outside} == before
    for port, was_free in free_before.items():
        if was_free:
            assert port_is_free(port)


def test_seed_conf_with_real_user_and_paths_starts(serve, tmp_path):
    pid_file, log_file = tmp_path / "server.pid", tmp_path / "server.log"
    variant = (SEED_CONF.replace("user        somebody", "user        root")
               .replace("group       everybody", "group       root")
               .replace("/var/log/server.log", str(log_file))
               .replace("/tmp/server.pid", str(pid_file))
               .replace("background  1", "background  0"))
    (tmp_path / "test.conf").write_text(variant)
    # The command line's --port replaces both of the file's ports (a list is taken wholesale).
    # --log_file repeats the file's value so that the fixture does not substitute its own.
    server = serve("--conf_file", "test.conf", "--port", "127.0.0.1:0", "--log_file", str(log_file), port=None,
                   ready_timeout=60)
    assert [(a.proto, a.host) for a in server.addresses] == [("tcp", "127.0.0.1")]
    assert pid_file.read_text().strip() == str(server.pid)
    assert len(server.children()) == 80
    # The file's allow rules admit only *.net / *.com / domain.com names: 127.0.0.1 is refused.
    with connect(server.addr) as client:
        assert client.recv(100) == b""
    assert "CONNECT TCP" in log_file.read_text()  # the file's log_level 3
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    assert not pid_file.exists()
    assert "starting!" in log_file.read_text()
