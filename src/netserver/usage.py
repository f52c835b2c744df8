"""The text of ``--help``: one for the ``netserver`` command and every script that calls ``run()``.

Both print the same sections from the same declarations, so a script's
``--help`` lists its own options exactly as ``netserver --handler
script:Class --help`` would.  Imported only when help is asked for.
"""

from __future__ import annotations

import os
import sys

from .options import all_options, format_help

EXIT_STATUS = """Exit status: 0 stopped cleanly, 1 the environment refused start-up,
2 the configuration is wrong, 3 children kept failing to boot.
"""


def help_text(cls: type, prog: str, usage: str = "[--OPTION VALUE ...]", intro: str = "") -> str:
    """``usage: PROG ...``, the caller's intro, the exit statuses, then every option of ``cls``."""
    name = cls.__name__ if cls.__name__ == cls.personality else f"{cls.__name__} ({cls.personality})"
    return (f"usage: {prog} {usage}\n\n{intro}{EXIT_STATUS}\n"
            f"Options of {name} "
            "(give them as --name value, --name=value or --name-with-dashes value):\n"
            + format_help(all_options(cls)))


def print_help(text: str) -> None:
    """Print the help; a reader that stops early (``| head``) ends it quietly, not with a traceback."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's own advice: point stdout at /dev/null, so the flush at exit fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
