"""Errors that carry their own exit status.

Library code raises these; only the command line (``netserver``, or ``run()``
when it parses ``sys.argv``) turns one into a line on stderr and an exit
status.  Every message is a single line naming what was wrong and where the
bad value came from.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The process exit statuses netserver uses (documented in the README)."""

    OK = 0  #: stopped cleanly
    FAILURE = 1  #: the environment refused start-up (port in use, pid file locked...)
    USAGE = 2  #: the configuration is wrong; nothing was started
    BOOT_FAILURE = 3  #: children kept failing to boot


class NetServerError(Exception):
    """Base class; ``exit_code`` says how the command line should exit."""

    exit_code: ExitCode = ExitCode.FAILURE


class ConfigError(NetServerError):
    """A configuration value is wrong.

    ``option`` is the option name, ``value`` the offending value as given,
    ``source`` where it came from (``server.conf:3``, ``command line``,
    ``run()``...), and ``hint`` what is wrong with it / what to do.
    """

    exit_code = ExitCode.USAGE

    def __init__(self, option: str | None, value: object, source: str | None, hint: str) -> None:
        self.option = option
        self.value = value
        self.source = source
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.option:
            name = self.option if len(self.option) <= 80 else self.option[:77] + "..."
            parts.append(f"{name}: ")
        if self.value is not None:
            parts.append(f"{_show(self.value)} ")
        parts.append(self.hint)
        if self.source:
            parts.append(f" ({self.source})")
        return "".join(parts)


class StartupError(NetServerError):
    """The environment refused start-up: a pid file, a lock file, a chroot..."""

    exit_code = ExitCode.FAILURE


class BindError(StartupError):
    """A listening socket could not be created, bound or adopted."""

    def __init__(self, address: str, error: OSError | str) -> None:
        self.address = address
        self.error = error
        reason = error if isinstance(error, str) else (error.strerror or str(error))
        if isinstance(error, OSError) and error.errno == 98:
            reason = "address already in use"
        super().__init__(f"cannot bind {address}: {reason}")


class ResolveError(StartupError):
    """A listening host name did not resolve (or not to the family asked for).

    Its own error rather than a BindError: it is found while configuring,
    before anything is bound, and ``--check_config`` binds nothing at all.
    """

    def __init__(self, option: str, value: str, source: str, reason: str) -> None:
        self.option = option
        self.value = value
        self.source = source
        super().__init__(f"{option}: {_show(value)} {reason} ({source})")


class BootFailure(NetServerError):
    """Children failed to boot too many times in a row."""

    exit_code = ExitCode.BOOT_FAILURE


def _show(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return repr(text)
