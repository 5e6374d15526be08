"""systemd integration with the standard library only: sd_notify readiness and watchdog, journald priorities.

- `notify(state, env)`: one datagram to $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace), as
  sd_notify(3) does; nothing (False) when not started by systemd with Type=notify.
- `watchdog_seconds(env, pid)`: how often to send WATCHDOG=1 (half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
  advises), None when the watchdog is off or meant for another process ($WATCHDOG_PID).
- `JournalFormatter`: `<N>` syslog priority prefixes (3 error .. 7 debug) when stderr is the journal
  ($JOURNAL_STREAM names stderr's device:inode), so journald stores errors as errors.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import TextIO

PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def notify(state: str, env: Mapping[str, str]) -> bool:
    address = env.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(state.encode())
    except OSError:
        return False  # systemd went away (or the socket is not ours): readiness is best effort
    return True


def watchdog_seconds(env: Mapping[str, str], pid: int) -> float | None:
    usec, owner = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdecimal() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 2_000_000


def journal_stderr(env: Mapping[str, str], stream: TextIO) -> bool:
    """True when `stream` is the journal stream systemd connected ($JOURNAL_STREAM = "device:inode")."""
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdecimal() and ino.isdecimal()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class JournalFormatter(logging.Formatter):
    """`<3>connwatch: ERROR: ...`: journald reads the prefix as the line's priority (SyslogLevelPrefix=yes)."""

    def format(self, record: logging.LogRecord) -> str:
        prio = PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())
