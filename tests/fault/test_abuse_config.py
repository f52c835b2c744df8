"""Abuse: bad configuration, hand-written and generated (reliability.md F1-F3).

In process (hypothesis, hundreds of examples, derandomized): random conf text
through ``config.parse_conf_text`` + ``config.layer``, random bytes through
``config.build`` (which reads the file with ``read_conf_file``) and random
command lines through ``config.build``, all with PreForkSimple's option
table.  The outcome is a valid ``Layered`` or a ``ConfigError`` whose text is
one line naming an option or a place; any other exception fails.

End to end: ``python -m netserver --conf_file F`` with generated bad files
(10 examples, no shrinking, so exactly 10 runs) and hand-written ones: exit
2, one line on stderr naming the option or the line, no traceback, and no
process, pid file, lock file, log file or bound port left.  The conf files
ask for two listeners, serialize flock with a lock_file, a pid_file and a
log_file, so that each of those would show if start-up got that far.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from netserver import config
from netserver.errors import ConfigError
from netserver.personalities import PreForkSimple
from support import procs
from support.clients import free_port, port_is_free

TABLE = PreForkSimple.option_table()
FOREIGN = PreForkSimple.foreign_options()
CONF = "bad.conf"
SIGNALS_REFUSED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}


# --------------------------------------------------------------------------- judging outcomes
MESSAGE_LIMIT = 300  # characters, besides the path of the conf file (values are shown cut at 80)


def message_problems(error: ConfigError, line: int | None = None, bounded: bool = False) -> list[str]:
    """A ConfigError's text must be one line that names an option or where the value came from.

    ``line``: the line it must cite if it cites one; ``bounded``: its length is checked too.
    """
    text = str(error)
    problems = []
    if bounded and len(text) > MESSAGE_LIMIT + len(error.source or ""):
        problems.append(f"a message of {len(text)} characters")
    if not text.strip():
        problems.append("empty message")
    if len(text.splitlines()) != 1 or "\n" in text or "\r" in text:
        problems.append(f"not one line: {text!r}")
    names_option = bool(error.option) and text.startswith(f"{error.option}: ")
    names_place = bool(error.source) and text.endswith(f"({error.source})")
    if not (names_option or names_place):
        problems.append(f"names neither an option nor a place: {text!r}")
    if line is not None and f"{CONF}:" in text and f"{CONF}:{line})" not in text:
        problems.append(f"names the wrong line (expected {CONF}:{line}): {text!r}")
    return problems


def layered_problems(result: config.Layered) -> list[str]:
    """A Layered result must be complete and hold only values the server can use."""
    problems = [f"{name} missing" for name in TABLE if name not in result.values]
    for name in result.values.get("sig_passthrough", ()):
        number = getattr(signal, "SIG" + name, None)
        if not isinstance(number, signal.Signals) or number in SIGNALS_REFUSED:
            problems.append(f"sig_passthrough accepted {name!r}, which is no signal that can be passed through")
    return problems


def judge(call, line: int | None = None) -> list[str]:
    try:
        result = call()
    except ConfigError as error:
        return message_problems(error, line)
    if isinstance(result, list):  # parse_conf_text alone
        return []
    return layered_problems(result)


def build_from_file(path: str) -> config.Layered:
    return config.build(table=TABLE, constructor={}, argv=["--conf_file", path], run_kwargs={},
                        default_values={}, foreign=FOREIGN)


# --------------------------------------------------------------------------- generated input
INTERESTING_VALUES = [
    "0", "1", "-1", "+5", "2.5", "1e999", "nan", "inf", "-inf", "0x10", "010", "\u00b2", "\u0663", "1_000",
    "99999999999999999999999", "9" * 5000, "yes", "no", "maybe", "", " ", "flock", "semaphore", "pipe", "none",
    "bogus", "127.0.0.1:0", "[::1]:0", "70000", "unix:/tmp/x.sock", "0/udp", "*", "USR1", "USR1,USR2", "KILL",
    "SIG_DFL", "SIG_IGN", "CLD", "10.0.0.0/8", "10.0.0.0/33", "[", "(?P<", ".*", "root", "no_such_user_xyzzy",
    "0 0", "nobody,nogroup", "022", "8", "0o22", "syslog", "/dev/null", "a\\#b", "\x00", "\x1b[31m",
]
keys = st.one_of(st.sampled_from(sorted(TABLE)), st.from_regex(r"\A(--)?[A-Za-z_][\w-]{0,20}\Z"),
                 st.text(max_size=12))
values = st.one_of(st.sampled_from(INTERESTING_VALUES), st.text(max_size=24),
                   st.integers(-10 ** 20, 10 ** 20).map(str), st.floats().map(repr))
separators = st.sampled_from([" ", "\t", "=", ":", " = ", ": ", "", "   "])
lines = st.one_of(
    st.builds(lambda key, sep, value: key + sep + value, keys, separators, values),
    st.text(max_size=40),
    st.sampled_from(["# comment", "", "   ", "key value # comment", "\\#", "[section]", "=3", "-- x"]),
    st.sampled_from([1000, 100_000, 1_000_000]).flatmap(
        lambda n: st.sampled_from(["port " + "9" * n, "k" * n + " 1", "#" + "x" * n, "x" * n])),
)
endings = st.sampled_from(["\n", "\r\n", "\r", "", "\x0b", "\x0c", "\x85", "\u2028"])
conf_text = st.lists(st.tuples(lines, endings), max_size=8).map(lambda parts: "".join(a + b for a, b in parts))
conf_bytes = st.one_of(
    st.binary(max_size=300),
    st.tuples(conf_text, st.sampled_from(["utf-8", "latin-1", "utf-16", "utf-8-sig"]), st.binary(max_size=4),
              st.integers(0, 400)).map(
        lambda t: (lambda raw: raw[:t[3]] + t[2] + raw[t[3]:])(t[0].encode(t[1], "replace"))),
)
argv_tokens = st.lists(st.one_of(st.sampled_from(["--" + name for name in TABLE]), values,
                                 st.sampled_from(["--", "-x", "--help", "--port=", "--max-servers"])),
                       max_size=8)

FAST = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@settings(FAST, max_examples=300)
@given(conf_text)
def test_random_conf_text_gives_options_or_a_one_line_config_error(text):
    problems = judge(lambda: config.layer([config.parse_conf_text(text, CONF)], TABLE, FOREIGN))
    assert problems == []


def test_random_conf_bytes_read_from_a_file_give_options_or_a_one_line_config_error():
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, CONF)

        @settings(FAST, max_examples=200)
        @given(conf_bytes)
        def check(data: bytes) -> None:
            with open(path, "wb") as handle:
                handle.write(data)
            assert judge(lambda: build_from_file(path)) == []

        check()


@settings(FAST, max_examples=200)
@given(argv_tokens)
def test_random_command_lines_give_options_or_a_one_line_config_error(argv):
    problems = judge(lambda: config.build(table=TABLE, constructor={}, argv=argv, run_kwargs={},
                                          default_values={}, foreign=FOREIGN))
    assert problems == []


# --------------------------------------------------------------------------- hand-written, in process
HAND_WRITTEN = {
    "bad-value": ("max_servers 2\nmax_servers lots\n", 2),
    "unknown-key": ("# c\n\nbogus_key 1\n", 3),
    "no-value": ("max_servers\n", 1),
    "not-key-value": ("[server]\n", 1),
    "crlf": ("max_servers 2\r\nlog_level 9\r\n", 2),
    "nul-in-text": ("max_servers 2\nport \x00\n", 2),
    "huge-number": ("max_servers " + "9" * 10_000 + "\n", 1),
    "megabyte-line": ("k" * 1_000_000 + " 1\n", 1),
    "control-bytes": ("log_file \x1b[2J\x07\nmax_servers \x1b[31m\n", 2),
    # Known failure, see the report: an unknown key without a value is reported whole, as "<key>: needs a value".
    "megabyte-key-without-value": ("x" * 1_000_000 + "\n", 1),
    # Known failures, see the report: a form feed (or VT, FS, GS, RS, NEL, U+2028/9) counts as a line break.
    "form-feed-keeps-line-numbers": ("max_servers 2\x0c\nlog_level lots\n", 2),
    # sig_passthrough takes SIG_DFL/SIG_IGN/SIG_BLOCK... (not signals) and CLD (an alias of CHLD).
    "sig-passthrough-SIG_DFL": ("sig_passthrough SIG_DFL\n", 1),
    "sig-passthrough-CLD": ("sig_passthrough CLD\n", 1),
}


@pytest.mark.parametrize("case", list(HAND_WRITTEN))
def test_hand_written_bad_conf_text(case):
    text, line = HAND_WRITTEN[case]
    try:
        result = config.layer([config.parse_conf_text(text, CONF)], TABLE, FOREIGN)
    except ConfigError as error:
        assert message_problems(error, line, bounded=True) == []
    else:
        pytest.fail(f"accepted as valid: {layered_problems(result) or result.values}")


def test_control_the_judges_fail_bad_outcomes():
    assert message_problems(ConfigError(None, "x", None, "went wrong\nbadly"))
    assert message_problems(ConfigError(None, None, None, "nothing named"))
    assert message_problems(ConfigError("max_servers", "x", f"{CONF}:3", "is bad"), line=2)
    assert layered_problems(config.Layered({"sig_passthrough": ("_DFL",)}, {}))
    with pytest.raises(ZeroDivisionError):
        judge(lambda: 1 / 0)  # any other exception escapes the judge and fails the property


# --------------------------------------------------------------------------- end to end


def base_lines(folder, ports) -> list[str]:
    return [f"port 127.0.0.1:{ports[0]}", f"port 127.0.0.1:{ports[1]}", "serialize flock",
            f"lock_file {folder}/accept.lock", f"pid_file {folder}/server.pid", f"log_file {folder}/server.log",
            "max_servers 2", "# the lines above are valid"]


def start_problems(result, option: str | None, line: int | None) -> list[str]:
    """Exit 2, one line on stderr naming the option (or the line), no traceback."""
    err = result.stderr.decode(errors="replace")
    problems = []
    if result.returncode != 2:
        problems.append(f"exit status {result.returncode}, not 2")
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    if len(err.splitlines()) != 1 or not err.startswith("netserver: "):
        problems.append(f"not one 'netserver: ' line: {err[-300:]!r}")
    if len(err) > 1000:  # MESSAGE_LIMIT plus the conf file's path, twice at most
        problems.append(f"a message of {len(err)} characters")
    names_option = option is not None and err.startswith(f"netserver: {option}:")
    names_line = line is not None and f"/{CONF}:{line})" in err
    if not (names_option or names_line):
        problems.append(f"names neither {option} nor {CONF}:{line}: {err[:200]!r}")
    return problems


def leftovers(folder, ports) -> list[str]:
    procs.reap_strays()
    found = [name for name in ("server.pid", "accept.lock", "server.log")
             if os.path.lexists(os.path.join(folder, name))]
    found += [f"port {port} bound" for port in ports if not port_is_free(port)]
    found += [f"process {pid} left" for pid in procs.children_of(os.getpid())]
    return found


def run_conf(serve, folder, data: bytes) -> subprocess.CompletedProcess:
    with open(os.path.join(folder, CONF), "wb") as handle:
        handle.write(data)
    return serve.run("--conf_file", os.path.join(folder, CONF), timeout=20)


BAD_VALUES = {
    "max_servers": ["0", "-3", "lots", "2.5"], "max_requests": ["-1", "x"], "log_level": ["5", "-1", "loud"],
    "serialize": ["bogus", "flocks"], "timeout": ["-1", "nan", "inf", "soon"], "listen": ["0", "65536"],
    "umask": ["8", "1000", "x"], "background": ["maybe", "2"], "check_for_dead": ["0", "-1"],
    "port": ["127.0.0.1:70000", "127.0.0.1:-1"], "max_line_length": ["0"], "udp_recv_len": ["65536"],
    "graceful_timeout": ["0"], "cidr_allow": ["10.0.0.0/33", "x/8"], "allow": ["[", "(?P<"],
    "user": ["no_such_user_xyzzy"], "group": ["no_such_group_xyzzy"], "ipv": ["5"], "proto": ["sctp"],
    "sig_passthrough": ["KILL", "NOPE"], "reverse_lookups": ["sometimes"], "ready_fd": ["-2"],
}


#: Kinds of fault and how many generated files of each: 10 end-to-end runs in all.
QUOTA = {"unknown": 1, "value": 4, "no-value": 1, "syntax": 1, "nul": 1, "utf8": 1, "long": 1}


@st.composite
def bad_conf(draw, folder: str, ports: tuple[int, int], kind: str):
    """A valid base file with one fault of ``kind``; returns (bytes, option named, line named)."""
    lines_ = base_lines(folder, ports)
    for _ in range(draw(st.integers(0, 3))):
        lines_.insert(draw(st.integers(0, len(lines_))), draw(st.sampled_from(["", "# filler", "  # indented"])))
    at = draw(st.integers(0, len(lines_)))
    option = None
    sep = draw(st.sampled_from([" ", "\t", "=", ": ", " = "]))
    if kind == "unknown":
        key = draw(st.from_regex(r"\A[a-z][a-z_]{2,15}\Z", fullmatch=True).filter(lambda k: k not in TABLE))
        fault = f"{key}{sep}1"
    elif kind == "value":
        option = draw(st.sampled_from(sorted(BAD_VALUES)))
        fault = f"{option}{sep}{draw(st.sampled_from(BAD_VALUES[option]))}"
    elif kind == "no-value":
        option = draw(st.sampled_from(["max_servers", "port", "user", "serialize"]))
        fault = option
    elif kind == "syntax":
        fault = draw(st.sampled_from(["[server]", "= 3", "123 abc", "@port 1", "-x"]))
    elif kind == "long":
        fault = "k" * draw(st.sampled_from([10_000, 1_000_000])) + " 1"
    else:
        option = "conf_file"
        fault = "# " + ("nul" if kind == "nul" else "bytes")
    lines_.insert(at, fault)
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    data = "".join(line + ending for line in lines_).encode()
    if kind in ("nul", "utf8"):
        offset = len("".join(line + ending for line in lines_[:at]).encode())
        junk = b"\x00" if kind == "nul" else draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80"]))
        data = data[:offset] + junk + data[offset:]
    return data, option, at + 1


@pytest.mark.parametrize("kind", list(QUOTA))
def test_generated_bad_conf_files_exit_2_and_leave_nothing(serve, tmp_path, kind):
    folder = str(tmp_path)
    ports = (free_port(), free_port())
    runs = []

    @settings(max_examples=QUOTA[kind], deadline=None, derandomize=True, database=None,
              phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
    @given(bad_conf(folder, ports, kind))
    def check(case) -> None:
        data, option, line = case
        result = run_conf(serve, folder, data)
        runs.append(result.stderr.decode(errors="replace").strip()[:110])
        assert start_problems(result, option, line) == [], data[:300]
        assert leftovers(folder, ports) == []

    check()
    print("\n[abuse config] " + "\n[abuse config] ".join(runs))
    assert 1 <= len(runs) <= QUOTA[kind]


HAND_WRITTEN_E2E = {
    "crlf": (lambda base: "\r\n".join(base + ["log_level 9"]) + "\r\n", "log_level", 9),
    "non-utf8": (lambda base: "\n".join(base[:2] + ["# caf\udce9"] + base[2:]) + "\n", "conf_file", None),
    "megabyte-key": (lambda base: "\n".join(base + ["x" * 1_000_000 + " 1"]) + "\n", None, 9),
    # Known failures, see the report:
    "megabyte-key-without-value": (lambda base: "\n".join(base + ["x" * 1_000_000]) + "\n", None, 9),
    "sig_passthrough-SIG_DFL": (lambda base: "\n".join(base + ["sig_passthrough SIG_DFL"]) + "\n",
                                "sig_passthrough", 9),
    "syslog_facility": (lambda base: "\n".join(base + ["log_file syslog", "syslog_facility bogus"]) + "\n",
                        "syslog_facility", 10),
    "bad-port-not-last-names-its-line": (lambda base: "\n".join(["port 127.0.0.1:70000"] + base) + "\n", None, 1),
    "form-feed": (lambda base: "\n".join(base[:-1] + ["# page\x0c", "max_servers lots"]) + "\n", None, 9),
}


@pytest.mark.parametrize("case", list(HAND_WRITTEN_E2E))
def test_hand_written_bad_conf_files_exit_2_and_leave_nothing(serve, tmp_path, case):
    make, option, line = HAND_WRITTEN_E2E[case]
    folder = str(tmp_path)
    ports = (free_port(), free_port())
    data = make(base_lines(folder, ports)).encode("utf-8", "surrogateescape")
    result = run_conf(serve, folder, data)
    assert leftovers(folder, ports) == []
    err = result.stderr.decode(errors="replace")
    problems = start_problems(result, option, line)
    cited = re.search(rf"/{re.escape(CONF)}:(\d+)\)", err)
    if line is not None and cited and int(cited.group(1)) != line:
        problems.append(f"cites {CONF}:{cited.group(1)}, but the fault is on line {line}")
    assert problems == [], err


def test_control_the_end_to_end_judges_fail_bad_outcomes(tmp_path):
    crashed = subprocess.CompletedProcess([], 1, b"", b"Traceback (most recent call last):\n  boom\nValueError\n")
    assert len(start_problems(crashed, "max_servers", 3)) >= 3
    unnamed = subprocess.CompletedProcess([], 2, b"", b"netserver: something is wrong\n")
    assert start_problems(unnamed, "max_servers", 3)
    folder, ports = str(tmp_path), (free_port(), free_port())
    (tmp_path / "server.pid").write_text("1\n")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[0]))
        holder.listen()
        assert len(leftovers(folder, ports)) == 2
