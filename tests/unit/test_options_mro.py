"""Options collected along the class hierarchy: mixins compose, clashes are named."""

from __future__ import annotations

import pytest

from netserver import Option, PreForkSimple, Single
from netserver.options import OptionClash, integer, text

GREETING = Option("greeting", text, "hello", "What the protocol says first. Default hello.")


class Greeting:
    """A protocol mixin with an option of its own (not a Server subclass)."""

    declared_options = (GREETING,)


def test_a_mixin_in_front_keeps_the_personalitys_options():
    app = type("App", (Greeting, PreForkSimple), {})
    table = app.option_table()
    assert {"greeting", "max_servers", "port"} <= set(table)
    assert table["greeting"] is GREETING


def test_a_mixin_behind_composes_too():
    class App(PreForkSimple, Greeting):
        pass

    assert {"greeting", "max_servers"} <= set(App.option_table())


def test_a_mixin_behind_whose_methods_the_personality_would_hide_is_refused_naming_the_order_that_works():
    class Upper:
        def process_request(self, client):
            client.wfile.write(b"UP\n")

    with pytest.raises(TypeError) as caught:
        type("App", (Single, Upper), {})
    assert str(caught.value) == ("App: Upper.process_request is hidden by Server.process_request, because Upper "
                                 "comes after Single in the MRO; list the mixin first: class App(Upper, Single)")
    assert type("App", (Upper, Single), {}).process_request is Upper.process_request


def test_each_class_declares_only_its_own():
    assert "max_servers" not in Single.option_table()
    assert "max_servers" in PreForkSimple.option_table()
    assert all(option.name != "port" for option in PreForkSimple.declared_options)


def test_the_same_declaration_met_twice_is_one_option():
    class Again:
        declared_options = (GREETING,)

    app = type("App", (Greeting, Again, PreForkSimple), {})
    assert list(app.option_table()).count("greeting") == 1


def test_two_declarations_written_alike_are_one_option_whatever_their_parser():
    class Left:
        declared_options = (Option("workers", integer(1, 64), 4, "Workers. Default 4."),)

    class Right:
        declared_options = (Option("workers", integer(1, 64), 4, "Workers. Default 4."),)

    assert "workers" in type("App", (Left, Right, PreForkSimple), {}).option_table()


def test_a_subclass_may_redeclare_an_option_to_change_its_default():
    class Bigger(PreForkSimple):
        declared_options = (Option("max_servers", integer(1), 200, "A bigger pool. Default 200."),)

    assert Bigger.option_table()["max_servers"].default == 200
    assert PreForkSimple.option_table()["max_servers"].default == 50


def test_unrelated_classes_declaring_one_name_differently_clash_at_class_creation():
    class Other:
        declared_options = (Option("greeting", text, "bye", "Another meaning."),)

    with pytest.raises(OptionClash) as caught:
        type("App", (Greeting, Other, PreForkSimple), {})
    message = str(caught.value)
    assert "'greeting'" in message and "Greeting" in message and "Other" in message


def test_a_mixin_redefining_a_base_option_clashes_with_it():
    class Timeouts:
        declared_options = (Option("timeout", text, "5", "Not the server's timeout."),)

    with pytest.raises(OptionClash, match="'timeout' is declared by both Server and Timeouts"):
        type("App", (Timeouts, Single), {})


def test_the_combining_class_settles_a_clash_by_redeclaring():
    class Other:
        declared_options = (Option("greeting", text, "bye", "Another meaning."),)

    settled = Option("greeting", text, "hi", "The one this app means.")
    app = type("App", (Greeting, Other, PreForkSimple), {"declared_options": (settled,)})
    assert app.option_table()["greeting"] is settled


def test_options_of_other_personalities_are_named_as_foreign():
    assert Single.foreign_options()["max_servers"] == "Single"
    assert "max_servers" not in PreForkSimple.foreign_options()


def test_a_mixin_option_is_read_from_every_source(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("greeting howdy\n")
    app = type("App", (Greeting, PreForkSimple), {})()
    app.configure(["--conf_file", str(conf), "--max_servers", "3"], {})
    assert (app.options.greeting, app.options.max_servers) == ("howdy", 3)
    assert app.option_origins["greeting"] == f"{conf}:1"
