"""MODULE:ATTR specs (``--handler``, ``--app``) loaded with errors that name the user's code."""

from __future__ import annotations

import importlib
import os
import sys

from .errors import ConfigError


def split_spec(spec: str) -> tuple[str, str]:
    """'package.module:attr' -> ('package.module', 'attr'); ValueError if either part is missing."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError("is not MODULE:ATTR")
    return module_name, attr


def load_object(spec: str, option: str, origin: str = "command line") -> object:
    """Import MODULE and return its ATTR (dotted); every failure is a ConfigError naming ``option``."""
    try:
        module_name, attr = split_spec(spec)
    except ValueError as error:
        raise ConfigError(option, spec, origin, str(error)) from None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure is the user's configuration
        # A SyntaxError's own text repeats its place, shortened to the file's base name.
        message = " ".join((error.msg if isinstance(error, SyntaxError) else str(error)).split())
        raise ConfigError(option, spec, origin,
                          f"cannot be imported: {type(error).__name__}: {message}{_where(error)}") from None
    try:
        target = module
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise ConfigError(option, spec, origin, f"module {module_name!r} has no {attr!r}") from None
    return target


def _where(error: BaseException) -> str:
    """`` at FILE:LINE``: the innermost frame of the user's code (and where it was raised, if elsewhere).

    The user's code is anything outside the standard library (its
    site-packages excepted), netserver and the frozen import machinery.
    """
    if isinstance(error, SyntaxError) and error.filename:
        return f" at {error.filename}:{error.lineno}"
    stdlib = os.path.dirname(os.__file__) + os.sep
    ours = os.path.dirname(os.path.abspath(__file__)) + os.sep
    user = raised = None
    tb = error.__traceback__
    while tb is not None:
        place = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        if not place[0].startswith("<"):
            raised = place
            in_stdlib = place[0].startswith(stdlib) and "-packages" + os.sep not in place[0]
            if not in_stdlib and not place[0].startswith(ours):
                user = place
        tb = tb.tb_next
    if user is None:
        return ""
    where = f" at {user[0]}:{user[1]}"
    return where if raised == user else f"{where} (raised in {raised[0]}:{raised[1]})"
