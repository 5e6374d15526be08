"""Parser for /proc/<pid>/limits: the soft RLIMIT_NOFILE of a process.

Pure function over text: no I/O here (connwatch.sources.processes reads the file).
"""

from __future__ import annotations

import re

from connwatch.errors import ParseError

_NOFILE = re.compile(r"^Max open files\s+(\S+)\s+(\S+)\s+files\s*$", re.M)


def parse_nofile_soft(text: str, source: str) -> int | None:
    """The soft limit of "Max open files" (None when "unlimited").

    The file is a table written by fs/proc/base.c proc_pid_limits() with the format
    "%-25s %-20s %-20s %-10s" (name, soft, hard, units), for example::

        Limit                     Soft Limit           Hard Limit           Units
        Max open files            1024                 524288               files

    It is readable by every user (mode 0444, no ptrace check), unlike prlimit(2), which needs
    the same uid or CAP_SYS_RESOURCE: that is why connwatch reads it.

    Raises ParseError when the "Max open files" row is missing or its soft value is not a number.
    """
    match = _NOFILE.search(text)
    if match is None:
        raise ParseError(source, "no 'Max open files' row")
    soft = match.group(1)
    if soft == "unlimited":
        return None
    if not soft.isdigit() or len(soft) > 20:
        line = text.count("\n", 0, match.start()) + 1
        raise ParseError(source, f"soft limit is not a number: {soft[:40]!r}", line)
    return int(soft)
