"""Unit tests for what a new user hits first (issue 9): IPv6 values in conf files, a flag given a
word that is not a boolean, a suggestion for a mistyped option, server_type and handler in a conf
file, and the effective configuration that --check_config prints.

Nothing here starts a server: sources go through ``config`` against a real option table, or
through a Server subclass's ``configure()``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netserver import config
from netserver.errors import ConfigError
from netserver.options import Option, all_options, option_table, text
from netserver.personalities import PreForkSimple, Single

TABLE = option_table(all_options(PreForkSimple))
EXAMPLE_CONF = Path(__file__).resolve().parents[2] / "examples" / "server.conf"


def conf_values(line: str) -> dict:
    return config.layer([config.parse_conf_text(f"# first\n{line}\n", "server.conf")], TABLE).values


# --- item 2: the separator is never the first character of a value -------------------------------

@pytest.mark.parametrize("line, name, expected", [
    ("allow ::1", "allow", ("::1",)),
    ("allow\t::1", "allow", ("::1",)),
    ("allow ::ffff:127\\.0\\.0\\.1", "allow", (r"::ffff:127\.0\.0\.1",)),
    ("host ::", "host", ("::",)),
    ("host ::1", "host", ("::1",)),
    ("host=::1", "host", ("::1",)),
    ("host = ::1", "host", ("::1",)),
    ("host: ::1", "host", ("::1",)),
    ("host : ::", "host", ("::",)),
    ("port :8080", "port", (":8080",)),
    ("max_servers 8", "max_servers", 8),
    ("max_servers=8", "max_servers", 8),
    ("max_servers = 8", "max_servers", 8),
    ("max_servers: 8", "max_servers", 8),
    ("max_servers:8", "max_servers", 8),
    ("max_servers  =  8", "max_servers", 8),
    ("lock_file =/tmp/x", "lock_file", "=/tmp/x"),  # after a space, a touching "=" starts the value
])
def test_conf_separator_and_values_that_start_with_colons(line, name, expected):
    assert conf_values(line)[name] == expected


@pytest.mark.parametrize("line", ["max_servers =", "max_servers :", "max_servers:", "max_servers = # none"])
def test_a_separator_without_a_value_still_needs_a_value(line):
    with pytest.raises(ConfigError) as caught:
        conf_values(line)
    assert str(caught.value) == "max_servers: needs a value (server.conf:2)"


def test_the_shipped_example_conf_allows_ipv6_loopback():
    layered = config.layer([config.parse_conf_text(EXAMPLE_CONF.read_text(), "server.conf")], TABLE)
    assert layered.values["allow"] == (r"127\.0\.0\.1", "::1")
    assert layered.values["port"] == ("127.0.0.1:20203", "[::1]:20203")


# --- item 15: a flag followed by a word that is not a boolean --------------------------------------

@pytest.mark.parametrize("argv", [["--background", "bogus"], ["--background", "bogus", "--max_servers", "2"],
                                  ["--reverse-lookups", "-1"]])
def test_a_flag_given_a_word_that_is_no_boolean_says_it_needs_one(argv):
    with pytest.raises(ConfigError) as caught:
        config.layer([config.parse_argv(argv, TABLE)], TABLE)
    name = argv[0][2:].replace("-", "_")
    assert str(caught.value) == (f"{name}: {argv[1]!r} is not a boolean (use 1, 0, yes, no, true, false, "
                                 "on or off) (command line)")


@pytest.mark.parametrize("argv, expected", [
    (["--background"], True),
    (["--background", "--max_servers", "2"], True),
    (["--background", "off"], False),
    (["--max_servers", "2", "--background"], True),
])
def test_a_flag_alone_or_with_a_boolean_still_works(argv, expected):
    assert config.layer([config.parse_argv(argv, TABLE)], TABLE).values["background"] is expected


# --- item 10: did you mean ------------------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    (lambda: config.parse_argv(["--max_server", "8"], TABLE),
     "'--max_server' is not a known option; did you mean max_servers? (command line)"),
    (lambda: config.parse_argv(["--max-server=8"], TABLE),
     "'--max-server=8' is not a known option; did you mean max_servers? (command line)"),
    (lambda: config.layer([config.parse_conf_text("log_levle 3\n", "server.conf")], TABLE),
     "'log_levle' is not a known option; did you mean log_level? (server.conf:1)"),
    (lambda: PreForkSimple().configure([], {"graceful_timout": 3}),
     "'graceful_timout' is not a known option; did you mean graceful_timeout? (run())"),
    (lambda: config.parse_argv(["--bogus", "1"], TABLE), "'--bogus' is not a known option (see --help) (command line)"),
])
def test_an_unknown_option_gets_the_closest_known_one(source, expected):
    with pytest.raises(ConfigError) as caught:
        source()
    assert str(caught.value) == expected
    assert caught.value.exit_code == 2


# --- item 8: server_type and handler may only confirm the class -----------------------------------

@pytest.mark.parametrize("cls, argv", [
    (PreForkSimple, ["--server_type", "PreForkSimple"]),
    (PreForkSimple, ["--server_type", "preforksimple"]),
    (PreForkSimple, ["--server_type", "Net::Server::PreForkSimple"]),
    (Single, ["--server_type", "Single"]),
])
def test_a_server_type_that_names_the_class_is_accepted(cls, argv):
    server = cls()
    server.configure(argv, {})
    assert server.option_origins["server_type"] == "command line"


class Policy(PreForkSimple):
    pass


def test_a_server_type_naming_another_personality_is_refused_naming_both(tmp_path):
    conf = tmp_path / "policy.conf"
    conf.write_text("max_servers 2\nserver_type Single\n")
    with pytest.raises(ConfigError) as caught:
        Policy().configure(["--conf_file", str(conf)], {})
    assert str(caught.value) == ("server_type: 'Single' names another personality than this server's: "
                                 f"Policy is a PreForkSimple ({conf}:2)")
    assert caught.value.exit_code == 2


def test_a_handler_in_a_scripts_conf_file_is_refused(tmp_path):
    conf = tmp_path / "policy.conf"
    conf.write_text("handler mymodule:Other\n")
    with pytest.raises(ConfigError) as caught:
        Policy().configure(["--conf_file", str(conf)], {})
    assert str(caught.value) == ("handler: 'mymodule:Other' is read by the netserver command only; "
                                 f"this server's class is Policy ({conf}:1)")


def test_a_handler_that_names_the_class_built_from_it_is_accepted():
    built = type("Built", (PreForkSimple,), {"handler_spec": "mymodule:Built"})
    server = built()
    server.configure(["--handler", "mymodule:Built"], {})
    assert server.options.handler == "mymodule:Built"


# --- item 17: the effective configuration ---------------------------------------------------------

class Custom(PreForkSimple):
    declared_options = (
        Option("greeting", text, "hello", "Greeting.", metavar="TEXT"),
    )


def test_effective_lines_list_what_a_source_set_with_the_winner(tmp_path):
    conf = tmp_path / "server.conf"
    conf.write_text("max_servers 4\nlog_level 3\nallow ::1\nallow a\\#b\numask 027\nmax_requests 1000\n"
                    "greeting hi there\nsig_passthrough USR1,USR2\n")
    server = Custom()
    server.configure(["--conf_file", str(conf), "--max_servers", "3", "--timeout", "2.5", "--background", "0"], {})
    table = option_table(all_options(Custom))
    lines = config.effective_lines(server.options.as_dict(), server.option_origins, table)
    assert lines[0].startswith("#")
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        ["conf_file", str(conf), "#", "command", "line"],
        ["log_level", "3", "#", f"{conf}:2"],
        ["background", "0", "#", "command", "line"],  # set, even to its default value
        ["umask", "027", "#", f"{conf}:5"],
        ["allow", "::1", "#", str(conf)],  # a list from several lines names the file
        ["allow", "a\\#b", "#", str(conf)],
        ["timeout", "2.5", "#", "command", "line"],
        ["max_servers", "3", "#", "command", "line"],
        ["max_requests", "1000", "#", f"{conf}:6"],
        ["sig_passthrough", "USR1", "#", str(conf)],
        ["sig_passthrough", "USR2", "#", str(conf)],
        ["greeting", "hi", "there", "#", f"{conf}:7"],
    ]
    assert not any(line.split()[0] in ("port", "check_config", "serialize") for line in lines[1:])


def test_effective_lines_read_back_as_the_same_configuration(tmp_path):
    argv = ["--max_servers", "3", "--umask", "007", "--allow", "::1", "--allow", "x#y", "--check_for_dead", "2",
            "--reverse_lookups", "--port", "[::1]:0", "--port", "127.0.0.1:0", "--greeting", "a # b"]
    first = Custom()
    first.configure(argv, {})
    table = option_table(all_options(Custom))
    saved = tmp_path / "effective.conf"
    saved.write_text("\n".join(config.effective_lines(first.options.as_dict(), first.option_origins, table)))
    again = Custom()
    again.configure(["--conf_file", str(saved)], {})
    assert again.option_origins["max_servers"].startswith(f"{saved}:")
    assert {**again.options.as_dict(), "conf_file": None} == first.options.as_dict()
