"""A protocol mixin with its own options composes with a personality (issue: the seams)."""

from __future__ import annotations

import pytest

from support.clients import talk


@pytest.mark.parametrize("server_type", ["PreForkSimple", "Single"])
def test_a_handler_with_its_own_options_runs_on_a_personality(serve, server_type, tmp_path):
    conf = tmp_path / "greet.conf"
    conf.write_text("greeting howdy\n")
    extra = ["--max_servers", "2"] if server_type == "PreForkSimple" else []
    server = serve("--handler", "compose_handlers:Greeter", "--server_type", server_type, "--conf_file",
                   str(conf), *extra)
    assert talk(server.addr, b"ping\n") == b"howdy\nping\n"


def test_a_handler_whose_option_clashes_exits_2_naming_both(serve):
    result = serve.run("--handler", "compose_handlers:Clashing", "--port", "127.0.0.1:0")
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "handler: 'compose_handlers:Clashing' cannot be combined with PreForkSimple" in message
    assert "'timeout' is declared by both Server and Clashing" in message


def test_the_readmes_protocol_mixin_example_runs_on_both_personalities(serve, tmp_path):
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    block = readme.split("### Extending: a protocol mixin", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_mixin.py").write_text(block)
    single = serve("--handler", "readme_mixin:Uppercase", "--server_type", "Single", "--max_words", "2")
    assert talk(single.addr, b"one two three\n") == b"ONE TWO\n"
    pool = serve("--handler", "readme_mixin:UpperServer", "--max_servers", "2")
    assert talk(pool.addr, b"a b\n") == b"A B\n"
