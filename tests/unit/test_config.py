"""Unit tests for netserver.config: precedence, the command line, the conf file, ranges.

Nothing here starts a server: sources are layered with ``config.build`` /
``config.layer`` against PreForkSimple's option table, or through a Server
subclass's ``configure()``, which reads every source and stops there.
"""

from __future__ import annotations

import itertools
import socket

import pytest

from netserver import config
from netserver.errors import ConfigError, ExitCode
from netserver.personalities import PreForkSimple, Single

TABLE = PreForkSimple.option_table()

from support.seed import SEED_CONF  # noqa: E402

SOURCES = ("constructor", "argv", "run", "conf", "defaults")


def line_of(text: str, prefix: str) -> int:
    """1-based number of the first line starting with prefix."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(prefix))


def build(tmp_path, *, constructor=None, argv=(), run=None, conf=None, defaults=None, table=TABLE,
          foreign=None) -> config.Layered:
    """config.build with an optional conf text, named by run() keyword ``conf_file``."""
    run = dict(run or {})
    if conf is not None:
        path = tmp_path / "server.conf"
        path.write_text(conf)
        run["conf_file"] = str(path)
    return config.build(table=table, constructor=dict(constructor or {}), argv=list(argv), run_kwargs=run,
                        default_values=dict(defaults or {}), foreign=foreign)


def layer_one(name: str, value, origin: str = "server.conf:3") -> dict:
    return config.layer([[config.Raw(name, value, origin)]], TABLE).values


# --- precedence -----------------------------------------------------------------------------------

SCALAR = {"constructor": 11, "argv": 12, "run": 13, "conf": 14, "defaults": 15}
LISTS = {"constructor": ("c1", "c2"), "argv": ("a1", "a2"), "run": ("r1", "r2"), "conf": ("f1", "f2"),
         "defaults": ("d1", "d2")}
ORIGIN = {"constructor": "constructor", "argv": "command line", "run": "run()", "defaults": "default_values()"}
SUBSETS = [combo for size in range(len(SOURCES) + 1) for combo in itertools.combinations(SOURCES, size)]


def stack(tmp_path, present, name, values, conf_render):
    kwargs = {"constructor": {}, "argv": [], "run": {}, "defaults": {}, "conf": None}
    for source in present:
        value = values[source]
        if source == "argv":
            items = value if isinstance(value, tuple) else (value,)
            kwargs["argv"] = [word for item in items for word in (f"--{name}", str(item))]
        elif source == "conf":
            kwargs["conf"] = conf_render(value)
        else:
            kwargs[source][name] = list(value) if isinstance(value, tuple) else value
    return build(tmp_path, constructor=kwargs["constructor"], argv=kwargs["argv"], run=kwargs["run"],
                 conf=kwargs["conf"], defaults=kwargs["defaults"])


@pytest.mark.parametrize("present", SUBSETS, ids=lambda p: "+".join(p) or "none")
def test_scalar_precedence(tmp_path, present):
    layered = stack(tmp_path, present, "max_servers", SCALAR,
                    lambda value: f"# conf\nmax_servers {value}\n")
    winner = next((source for source in SOURCES if source in present), None)
    assert layered.values["max_servers"] == (SCALAR[winner] if winner else 50)
    expected_origin = ("default" if winner is None else
                       f"{tmp_path / 'server.conf'}:2" if winner == "conf" else ORIGIN[winner])
    assert layered.origins["max_servers"] == expected_origin


@pytest.mark.parametrize("present", SUBSETS, ids=lambda p: "+".join(p) or "none")
def test_list_precedence_takes_the_whole_highest_source(tmp_path, present):
    layered = stack(tmp_path, present, "allow", LISTS,
                    lambda values: "".join(f"allow {value}\n" for value in values))
    winner = next((source for source in SOURCES if source in present), None)
    assert layered.values["allow"] == (LISTS[winner] if winner else ())


@pytest.mark.parametrize("name", ["port", "host", "proto", "ipv", "allow", "deny", "cidr_allow", "cidr_deny",
                                  "sig_passthrough"])
def test_list_options_are_declared_multi(name):
    assert TABLE[name].multi


@pytest.mark.parametrize("name, higher, lower, expected", [
    ("port", ["9001", "9002"], ["1", "2", "3"], ("9001", "9002")),
    ("host", ["::1"], ["127.0.0.1", "10.0.0.1"], ("::1",)),
    ("proto", ["udp"], ["tcp", "tcp"], ("udp",)),
    ("ipv", ["4", "6"], ["*"], ("4", "6")),
    ("deny", ["x"], ["y", "z"], ("x",)),
    ("cidr_allow", ["10.0.0.0/8"], ["192.168.0.0/16"], ("10.0.0.0/8",)),
    ("cidr_deny", ["10.0.0.0/8"], ["192.168.0.0/16"], ("10.0.0.0/8",)),
])
def test_command_line_list_replaces_conf_list(tmp_path, name, higher, lower, expected):
    argv = [word for value in higher for word in (f"--{name}", value)]
    conf = "".join(f"{name} {value}\n" for value in lower)
    assert build(tmp_path, argv=argv, conf=conf).values[name] == expected


def test_conf_list_used_when_command_line_names_other_options(tmp_path):
    layered = build(tmp_path, argv=["--host", "::1"], conf="port 1\nport 2\nhost 127.0.0.1\n")
    assert layered.values["port"] == ("1", "2")
    assert layered.values["host"] == ("::1",)


def test_sig_passthrough_repeated_and_comma_lists_give_flat_signal_names(tmp_path):
    # The parent does getattr(signal, "SIG" + name) for each entry: every entry must be one name.
    layered = build(tmp_path, argv=["--sig_passthrough", "USR1,USR2", "--sig_passthrough", "SIGHUP"])
    assert layered.values["sig_passthrough"] == ("USR1", "USR2", "HUP")


@pytest.mark.parametrize("argv, expected", [
    (["--max_servers", "3", "--max_servers", "4"], 4),
    (["--max_servers=3", "--max-servers", "5"], 5),
])
def test_scalar_takes_last_occurrence_on_the_command_line(tmp_path, argv, expected):
    assert build(tmp_path, argv=argv).values["max_servers"] == expected


def test_scalar_takes_last_occurrence_in_the_conf_file(tmp_path):
    layered = build(tmp_path, conf="max_servers 3\nmax_servers 4\nmax-servers 6\n")
    assert layered.values["max_servers"] == 6
    assert layered.origins["max_servers"].endswith("server.conf:3")


def test_conf_file_named_on_the_command_line_is_read(tmp_path):
    path = tmp_path / "other.conf"
    path.write_text("max_servers 9\n")
    assert build(tmp_path, argv=["--conf_file", str(path)]).values["max_servers"] == 9


# --- configure() on a Server subclass -----------------------------------------------------------

class Configured(PreForkSimple):
    def default_values(self):
        return {"max_servers": 7, "max_requests": 70, "check_for_dead": 7.5, "port": ["7000", "7001"],
                "log_level": 1}


def test_configure_layers_every_source_on_a_subclass(tmp_path):
    conf = tmp_path / "server.conf"
    conf.write_text("max_requests 40\nlog_level 3\ncheck_for_dead 4\nport 4000\nport 4001\nport 4002\n")
    server = Configured(max_servers=1)
    server.configure(["--max_servers", "2", "--log_level", "4", "--conf_file", str(conf)],
                     {"max_servers": 3, "log_level": 0, "max_requests": 30, "port": ["3000"]})
    options = server.options
    assert options.max_servers == 1  # constructor beats everything
    assert options.log_level == 4  # command line beats run()
    assert options.max_requests == 30  # run() beats the conf file
    assert options.check_for_dead == 4.0  # conf file beats default_values()
    assert options.port == ("3000",)  # run()'s list replaces the conf file's and the defaults'
    assert options.listen == socket.SOMAXCONN  # declared default
    assert server.option_origins["max_servers"] == "constructor"
    assert server.option_origins["log_level"] == "command line"
    assert server.option_origins["max_requests"] == "run()"
    assert server.option_origins["check_for_dead"] == f"{conf}:3"
    assert server.option_origins["listen"] == "default"
    with pytest.raises(AttributeError):
        options.max_servers = 5


def test_configure_falls_back_to_default_values(tmp_path):
    server = Configured()
    server.configure([], {})
    assert (server.options.max_servers, server.options.port) == (7, ("7000", "7001"))
    assert server.option_origins["max_servers"] == "default_values()"


@pytest.mark.parametrize("constructor, run, source", [
    ({"bogus": 1}, {}, "(constructor)"),
    ({}, {"bogus": 1}, "(run())"),
    ({}, {"max-servers": 2, "no_such_option": "x"}, "(run())"),
])
def test_unknown_keywords_are_refused(constructor, run, source):
    with pytest.raises(ConfigError) as caught:
        PreForkSimple(**constructor).configure([], run)
    assert "is not a known option" in str(caught.value) and str(caught.value).endswith(source)
    assert caught.value.exit_code == 2


def test_single_refuses_a_prefork_option_by_name():
    with pytest.raises(ConfigError) as caught:
        Single().configure(["--max_servers", "3"], {})
    assert "max_servers: is not valid for Single" in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE == 2


def test_single_refuses_a_prefork_option_in_its_conf_file(tmp_path):
    conf = tmp_path / "single.conf"
    conf.write_text("port 0\nmax_servers 3\n")
    with pytest.raises(ConfigError) as caught:
        Single().configure(["--conf_file", str(conf)], {})
    assert "max_servers: is not valid for Single" in str(caught.value)
    assert f"{conf}:2" in str(caught.value)


# --- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, name, expected", [
    (["--max_servers=80"], "max_servers", 80),
    (["--max_servers", "80"], "max_servers", 80),
    (["--max-servers", "80"], "max_servers", 80),
    (["--max-servers=80"], "max_servers", 80),
    (["--check-for-dead", "2.5"], "check_for_dead", 2.5),
    (["--background"], "background", True),
    (["--reverse-lookups"], "reverse_lookups", True),
    (["--background", "--max_servers", "3"], "background", True),
    (["--background", "--max_servers", "3"], "max_servers", 3),
    *[([f"--background={word}"], "background", value)
      for word, value in [("0", False), ("1", True), ("yes", True), ("no", False), ("true", True),
                          ("false", False), ("on", True), ("off", False), ("YES", True), ("Off", False)]],
    *[(["--background", word], "background", value)
      for word, value in [("0", False), ("1", True), ("yes", True), ("no", False), ("true", True),
                          ("false", False), ("on", True), ("off", False)]],
    (["--background", "0", "--max_servers", "3"], "max_servers", 3),
    (["max_servers=80"], "max_servers", 80),  # Net::Server's form, without the dashes
    (["max-servers=80", "--log_level", "3"], "max_servers", 80),
    (["background=1"], "background", True),
    (["--background", "max_servers=8"], "max_servers", 8),  # a flag ends at the next option, dashes or not
    (["--background", "max_servers=8"], "background", True),
])
def test_command_line_forms(tmp_path, argv, name, expected):
    assert build(tmp_path, argv=argv).values[name] == expected


@pytest.mark.parametrize("argv, fragments", [
    (["--bogus", "1"], ["'--bogus' is not a known option", "(command line)"]),
    (["--bogus=1"], ["'--bogus=1' is not a known option"]),
    (["max_servers", "3"], ["'max_servers' is not an option"]),
    (["--max_servers"], ["max_servers: needs a value"]),
    (["--max_servers", "--log_level", "3"], ["max_servers: needs a value"]),
    (["--background=maybe"], ["background: 'maybe' is not a boolean"]),
    (["--background", "maybe"], ["background: 'maybe' is not a boolean", "(command line)"]),
    (["-x"], ["'-x' is not an option"]),
    (["bogus=1"], ["'bogus=1' is not a known option"]),
    (["=1"], ["'=1' is not an option"]),
])
def test_command_line_refusals(tmp_path, argv, fragments):
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, argv=argv)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert caught.value.exit_code == 2


# --- the conf file ------------------------------------------------------------------------------

@pytest.mark.parametrize("line, name, expected", [
    ("max_servers 80", "max_servers", 80),
    ("max_servers\t80", "max_servers", 80),
    ("max_servers=80", "max_servers", 80),
    ("max_servers = 80", "max_servers", 80),
    ("max_servers: 80", "max_servers", 80),
    ("max_servers:80", "max_servers", 80),
    ("--max_servers 80", "max_servers", 80),
    ("--max-servers=80", "max_servers", 80),
    ("max-servers 80", "max_servers", 80),
    ("   max_servers 80   ", "max_servers", 80),
    ("max_servers 80 # eighty", "max_servers", 80),
    ("max_servers 80# eighty", "max_servers", 80),
    ("log_file /var/log/x.log   \t", "log_file", "/var/log/x.log"),
    (r"lock_file /tmp/a\#b # a comment", "lock_file", "/tmp/a#b"),
    (r"allow foo\#bar", "allow", ("foo#bar",)),
    ("allow .+\\.(net|com)", "allow", (r".+\.(net|com)",)),
    ("port localhost:20204", "port", ("localhost:20204",)),
    ("port: [::1]:8080", "port", ("[::1]:8080",)),
    ("background 1", "background", True),
    ("background off", "background", False),
])
def test_conf_line_forms(line, name, expected):
    entries = config.parse_conf_text(f"# first\n\n{line}\n", "server.conf")
    assert [(raw.name, raw.origin) for raw in entries] == [(name, "server.conf:3")]
    assert config.layer([entries], TABLE).values[name] == expected


def test_conf_comments_blank_lines_and_repeated_keys():
    text = "# comment\n\n   \n\t# indented comment\nport 1 # one\nallow a\nport 2\nallow b\n\nport 3\n"
    entries = config.parse_conf_text(text, "server.conf")
    assert [(raw.name, raw.value, raw.origin) for raw in entries] == [
        ("port", "1", "server.conf:5"), ("allow", "a", "server.conf:6"), ("port", "2", "server.conf:7"),
        ("allow", "b", "server.conf:8"), ("port", "3", "server.conf:10")]
    values = config.layer([entries], TABLE).values
    assert values["port"] == ("1", "2", "3")
    assert values["allow"] == ("a", "b")


@pytest.mark.parametrize("text, fragments", [
    ("max_servers 3\nbogus 1\n", ["'bogus' is not a known option", "(server.conf:2)"]),
    ("max_servers 3\n[server]\n", ["'[server]' is not a 'key value' line (server.conf:2)"]),
    ("# c\n\n= 5\n", ["is not a 'key value' line (server.conf:3)"]),
    ("# c\n\n123 abc\n", ["is not a 'key value' line (server.conf:3)"]),
    ("# c\nmax_servers\n", ["max_servers: needs a value (server.conf:2)"]),
    ("# c\nmax_servers # none\n", ["max_servers: needs a value (server.conf:2)"]),
    ("# c\n\nmax_servers lots\n", ["max_servers: 'lots' is not a whole number (server.conf:3)"]),
])
def test_conf_refusals_name_file_and_line(tmp_path, text, fragments):
    with pytest.raises(ConfigError) as caught:
        config.layer([config.parse_conf_text(text, "server.conf")], TABLE)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert caught.value.exit_code == 2


def test_conf_refusal_through_build_names_the_path(tmp_path):
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, conf="max_servers 3\n\nnot-an-option yes\n")
    assert f"{tmp_path / 'server.conf'}:3" in str(caught.value)


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: str(tmp / "missing.conf"), "cannot be read: No such file or directory"),
    (lambda tmp: str(tmp), "cannot be read: Is a directory"),
])
def test_unreadable_conf_file(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, argv=["--conf_file", path])
    assert str(caught.value) == f"conf_file: {path!r} {fragment} (command line)"


def test_the_seeds_sample_conf_file_parses_as_it_is(tmp_path):
    entries = config.parse_conf_text(SEED_CONF, "test.conf")
    layered = config.layer([entries], TABLE)
    values = layered.values
    assert values["max_servers"] == 80
    assert values["max_requests"] == 1000
    assert values["user"] == "somebody"
    assert values["group"] == "everybody"
    assert values["log_file"] == "/var/log/server.log"
    assert values["log_level"] == 3
    assert values["pid_file"] == "/tmp/server.pid"
    assert values["allow"] == (r".+\.(net|com)", r"domain\.com")
    assert values["deny"] == ("a.+",)
    assert values["background"] is True
    assert values["host"] == ("127.0.0.1",)
    assert values["port"] == ("localhost:20204", "20205")
    assert values["reverse_lookups"] is False  # commented out
    assert layered.origins["user"] == f"test.conf:{line_of(SEED_CONF, 'user')}" == "test.conf:8"
    assert layered.origins["port"] == f"test.conf:{line_of(SEED_CONF, 'port') + 1}"


def test_the_seeds_conf_file_through_build_and_the_command_line_override(tmp_path):
    layered = build(tmp_path, argv=["--port", "127.0.0.1:0", "--background", "0"], conf=SEED_CONF)
    assert layered.values["port"] == ("127.0.0.1:0",)
    assert layered.values["host"] == ("127.0.0.1",)
    assert layered.values["background"] is False
    assert layered.values["max_servers"] == 80


# --- ranges and messages --------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, expected", [
    ("max_servers", "1", 1),
    ("max_servers", "+80", 80),
    ("max_requests", "0", 0),
    ("max_requests", "5", 5),
    ("check_for_dead", "0.5", 0.5),
    ("check_for_dead", "30", 30.0),
    ("graceful_timeout", "0.25", 0.25),
    ("check_for_dequeue", "1", 1.0),
    ("timeout", "0", 0.0),
    ("timeout", "2.5", 2.5),
    ("log_level", "0", 0),
    ("log_level", "4", 4),
    ("listen", "1", 1),
    ("max_servers", 3, 3),  # native values from keywords
    ("timeout", 0, 0.0),
    ("background", True, True),
])
def test_values_in_range(name, value, expected):
    result = layer_one(name, value)[name]
    assert result == expected and type(result) is type(expected)


def test_listen_defaults_to_somaxconn():
    assert config.layer([], TABLE).values["listen"] == socket.SOMAXCONN


@pytest.mark.parametrize("name, value, hint", [
    ("max_servers", "lots", "is not a whole number"),
    ("max_servers", "0", "must be at least 1"),
    ("max_servers", "-1", "must be at least 1"),
    ("max_servers", "1.5", "is not a whole number"),
    ("max_requests", "-1", "must be at least 0"),
    ("max_requests", "many", "is not a whole number"),
    ("check_for_dead", "0", "must be greater than 0"),
    ("check_for_dead", "-1", "must be greater than 0"),
    ("check_for_dead", "soon", "is not a number of seconds"),
    ("check_for_dead", "nan", "is not a finite number of seconds"),
    ("check_for_dead", "inf", "is not a finite number of seconds"),
    ("graceful_timeout", "0", "must be greater than 0"),
    ("check_for_dequeue", "0", "must be greater than 0"),
    ("timeout", "-1", "must not be negative"),
    ("timeout", "never", "is not a number of seconds"),
    ("log_level", "5", "must be at most 4"),
    ("log_level", "-1", "must be at least 0"),
    ("log_level", "loud", "is not a whole number"),
    ("listen", "0", "must be at least 1"),
    ("background", "maybe", "is not a boolean"),
    ("proto", "sctp", "is not one of tcp, udp, unix"),
    ("ipv", "5", "is not one of"),
    ("serialize", "bogus", "is not one of"),
])
def test_bad_values_name_option_value_and_source(name, value, hint):
    with pytest.raises(ConfigError) as caught:
        layer_one(name, value)
    message = str(caught.value)
    assert message.startswith(f"{name}: {value!r} {hint}")
    assert message.endswith(" (server.conf:3)")
    assert caught.value.exit_code == 2


def test_the_style_guides_example_message():
    with pytest.raises(ConfigError) as caught:
        layer_one("max_servers", "lots")
    assert str(caught.value) == "max_servers: 'lots' is not a whole number (server.conf:3)"


@pytest.mark.parametrize("constructor, argv, run, source", [
    ({"max_servers": 0}, [], {}, "(constructor)"),
    ({}, ["--max_servers", "0"], {}, "(command line)"),
    ({}, [], {"max_servers": 0}, "(run())"),
])
def test_bad_value_names_each_source(constructor, argv, run, source):
    with pytest.raises(ConfigError) as caught:
        PreForkSimple(**constructor).configure(argv, run)
    assert str(caught.value) == f"max_servers: '0' must be at least 1 {source}"


def test_a_bad_value_is_refused_even_where_a_higher_source_overrides_it():
    from netserver import PreForkSimple
    from netserver.config import Raw, layer
    from netserver.errors import ConfigError

    table = PreForkSimple.option_table()
    cli = [Raw("max_servers", "3", "command line")]
    conf = [Raw("max_servers", "lots", "server.conf:4")]
    with pytest.raises(ConfigError) as caught:
        layer([cli, conf], table)
    assert str(caught.value) == "max_servers: 'lots' is not a whole number (server.conf:4)"
