"""Print the README's option tables from the option declarations.

    python tools/options_table.py            # print the tables
    python tools/options_table.py --check    # exit 1 if README.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from netserver import Fork, PreFork, PreForkSimple, Server  # noqa: E402
from netserver.options import all_options, option_table  # noqa: E402

BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"


def _default(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table(options, title: str) -> str:
    rows = [f"#### {title}", "", "| option | value | default | meaning |", "|---|---|---|---|"]
    for option in options:
        multi = " (repeatable)" if option.multi else ""
        rows.append(f"| `{option.name}` | {option.metavar}{multi} | {_default(option.default)} | "
                    f"{option.help.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def render() -> str:
    base = option_table(all_options(Server))
    simple = option_table(all_options(PreForkSimple))
    prefork_simple = [o for name, o in simple.items() if name not in base]
    # PreFork: what it declares itself (max_servers as a ceiling, the spare band); the rest is PreForkSimple's.
    prefork = list(PreFork.declared_options)
    from netserver.protocols.wsgi import HTTP_OPTIONS  # httptools: the http extra

    return "\n\n".join([table(base.values(), "Every personality"), table(prefork_simple, "PreForkSimple (and PreFork)"),
                        table(prefork, "PreFork (in addition; max_servers is a ceiling here)"),
                        table(Fork.declared_options, "Fork (in addition to every personality's)"),
                        table(HTTP_OPTIONS, "HTTP and WSGI (--app, or the WSGIProtocol mixin)")])


def main() -> int:
    generated = f"{BEGIN}\n{render()}\n{END}"
    if "--check" in sys.argv:
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        start, end = readme.find(BEGIN), readme.find(END)
        current = readme[start:end + len(END)] if start >= 0 else ""
        if current != generated:
            print("README.md option tables are out of date: run python tools/options_table.py --write")
            return 1
        return 0
    if "--write" in sys.argv:
        path = Path(__file__).resolve().parent.parent / "README.md"
        readme = path.read_text()
        start, end = readme.find(BEGIN), readme.find(END)
        path.write_text(readme[:start] + generated + readme[end + len(END):])
        return 0
    print(generated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
