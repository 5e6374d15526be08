"""Errors and the exit codes the CLI maps them to (documented in README)."""

from __future__ import annotations

# Nagios plugin convention, used by `check` and `analyze`.
EXIT_OK = 0
EXIT_WARNING = 1
EXIT_CRITICAL = 2
EXIT_UNKNOWN = 3


class ConnwatchError(Exception):
    """Base class: every expected failure is one of these and prints as one line."""

    exit_code = EXIT_UNKNOWN


class ParseError(ConnwatchError):
    """A source could not be parsed. Names the source, and the line when known."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.message = message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class SourceUnavailable(ConnwatchError):
    """A source is missing or unreadable (not a parse problem): reported as 'unavailable'."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: unavailable: {reason}")


class ConfigError(ConnwatchError):
    """The rules/config file is invalid."""


class UsageError(ConnwatchError):
    """The command line asks for something that cannot be done (a bad combination of options)."""


class StateError(ConnwatchError):
    """The state directory or its database cannot be used."""


class SelectorError(ConnwatchError):
    """A --netns selector that is malformed or matches no network namespace."""
