"""The argparse parser of the command line (cli.build_parser): built for help, usage errors and any argument
list fastargs.py leaves to it; `connwatch CMD` with plain options never loads it (nor argparse)."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable

from connwatch import __version__
from connwatch.cli import COMMANDS
from connwatch.errors import EXIT_UNKNOWN

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import NoReturn

EPILOG = """exit codes (check): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (error).
other commands: 0 success, 3 error. Errors print one line on stderr."""


class _Print(argparse.Action):
    """--print-completion SHELL (shtab, imported only then) and --print-man-page: print, exit 0."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        if option_string == "--print-man-page":
            from connwatch.manpage import render

            print(render(parser), end="")
            parser.exit(0)
        try:
            import shtab
        except ImportError:
            parser.exit(EXIT_UNKNOWN, "connwatch: shell completion needs shtab (pip install shtab)\n")
        print(shtab.complete(parser, shell=str(values)), end="")
        parser.exit(0)


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which a Nagios caller would read as CRITICAL: exit 3 instead."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument(); its default width comes from shutil (which
        # imports bz2, lzma...): the same width (COLUMNS, else the terminal's, else 80; minus 2) from os.
        make: Callable[..., argparse.HelpFormatter] = self.formatter_class  # (typeshed's protocol lacks width)
        return make(prog=self.prog, width=_help_width())

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument (?:-\w/)?(--[\w-]+)(?:/[^:]*)?: ", r"\1 ", message)  # "--interval must be ..."
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_UNKNOWN)


def _help_width() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; `only`: just that subcommand's (the others' modules are not even imported,
    so a command starts without loading every other command's code)."""
    parser = Parser(
        prog="connwatch", description="Find every way this host turns TCP connections away.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-V", "--version", action="version", version=f"connwatch {__version__}")
    parser.add_argument("--print-completion", action=_Print, choices=("bash", "zsh", "tcsh"),
                        help="print a shell completion script (e.g. > /etc/bash_completion.d/connwatch)")
    parser.add_argument("--print-man-page", action=_Print, nargs=0, help="print the connwatch(1) manual page (roff)")
    # prog given: argparse would otherwise build a help formatter (and import shutil) just to compute it
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog="connwatch")
    for name in COMMANDS if only is None else (only,):
        module = importlib.import_module(f"connwatch.commands.{name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser
