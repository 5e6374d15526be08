"""connwatch(1) in roff, generated from the argument parser (so the page cannot drift from the options).

`connwatch --print-man-page > connwatch.1`; contrib/connwatch.1 is this output (a test keeps it current).
"""

from __future__ import annotations

import argparse
import re

from connwatch import __version__
from connwatch.cli import DEFAULT_CONFIG

SECTIONS = {
    "EXIT STATUS": ["check and analyze: 0 OK, 1 WARNING (only severity 3 Medium or 4 Low breached), 2 CRITICAL "
                    "(severity 1 Critical or 2 High), 3 UNKNOWN (an error: one line on stderr). Other commands: "
                    "0 success, 3 error. Usage errors exit 3, never 2."],
    "FILES": [f"{DEFAULT_CONFIG}: the rules file every command with --config reads when it exists and --config "
              "is not given.",
              "/var/lib/connwatch (root) or ~/.local/state/connwatch: alert history and notification outbox."],
    "ENVIRONMENT": ["CONNWATCH_CONFIG: the rules file when --config is not given (empty: the built-in rules).",
                    "CONNWATCH_STATE_DIR: the state directory. CONNWATCH_PROC_ROOT: the procfs root.",
                    "CONNWATCH_DEBUG=1: print a traceback on an internal error.",
                    "NOTIFY_SOCKET, WATCHDOG_USEC, JOURNAL_STREAM: set by systemd for `connwatch run` (readiness, "
                    "watchdog, journald priorities)."],
    "SEE ALSO": ["ss(8), nstat(8), sysctl(8); docs/runbooks.md and README.md of the connwatch distribution."],
}


def _esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        metavar = action.metavar if isinstance(action.metavar, str) else None
        names = ", ".join(action.option_strings) or metavar or action.dest
        if action.option_strings and action.nargs != 0:
            choices = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else None
            names += f" {metavar or choices or action.dest.upper()}"
        out += [".TP", f"\\fB{_esc(str(names))}\\fR", _esc((action.help or "").replace("%(default)s",
                                                                                         str(action.default)))]
    return out


def render(parser: argparse.ArgumentParser) -> str:
    lines = [f'.TH CONNWATCH 1 "" "connwatch {__version__}" "User Commands"', ".SH NAME",
             "connwatch \\- " + _esc(parser.description or ""), ".SH SYNOPSIS",
             "\\fBconnwatch\\fR [\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]", ".SH OPTIONS",
             *_options(parser), ".SH COMMANDS"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, cmd in sub.choices.items():
        lines += [f".SS {name}", _esc(cmd.description or ""), *_options(cmd)]
    for title, paragraphs in SECTIONS.items():
        lines += [f".SH {title}"] + [p for text in paragraphs for p in (".PP", _esc(text))]
    return "\n".join(lines) + "\n"


def main() -> None:
    from connwatch.cli import build_parser

    print(render(build_parser()), end="")


if __name__ == "__main__":
    main()
