"""Parse `lsof -iTCP -n -P` (lsof's default output; one line per open file descriptor).

    COMMAND   PID USER   FD   TYPE DEVICE SIZE/OFF NODE NAME
    java     9581 didi  119u  IPv6 0x66767b91b9b028dd      0t0  TCP *:8080 (LISTEN)
    java     9581 didi  120u  IPv6 0x66767b91b9b00c1d      0t0  TCP 127.0.0.1:8080->127.0.0.1:53144 (ESTABLISHED)

NAME is `local->remote (STATE)` with lsof's TCP state names (the netstat spellings). A socket that
several processes share (forked workers) is listed once per descriptor: rows are de-duplicated by
DEVICE (the socket's kernel address or inode). Without `-P` lsof prints service names instead of
ports and without `-n` host names; a name connwatch cannot map is a ParseError naming the line.
lsof shows no queue lengths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from connwatch.errors import ParseError
from connwatch.model import TcpState
from connwatch.parsers.conn_rows import NETSTAT_STATES, ConnRow, split_colon
from connwatch.parsers.numbers import num

LSOF_HEADER = re.compile(r"COMMAND\s+PID\s+(?:TID\s+)?(?:TASKCMD\s+)?USER\s+FD\s+TYPE\s+DEVICE\s+SIZE/OFF"
                         r"\s+NODE\s+NAME")
LSOF_ROW = re.compile(r"(\S+)\s+(\d+)\s+\S+\s+\w+\s+(IPv[46])\s+(\S+)\s+\S+\s+(TCP|UDP)\s+(\S+)(?:\s+\((\w+)\))?\s*")
MAX_DEVICES = 1_000_000  # de-duplication set bound (memory); beyond it duplicates are not removed


def _row(m: re.Match[str], source: str, number: int) -> ConnRow:
    state_name = m.group(7) or ""
    state = NETSTAT_STATES.get(state_name.upper())
    if state is None:
        raise ParseError(source, f"unknown lsof TCP state {state_name[:20]!r}", number)
    fam = 6 if m.group(3) == "IPv6" else 4
    local_text, _arrow, remote_text = m.group(6).partition("->")
    try:
        pid = num(m.group(2))
        local, lport, fam = split_colon(local_text, fam)
        remote, rport = None, 0
        if remote_text:
            remote, rport, _ = split_colon(remote_text, fam)
    except ValueError as exc:
        raise ParseError(source, f"bad address ({exc}): run lsof with -n -P for numeric addresses and ports",
                         number) from None
    return ConnRow(fam, int(state), local, lport, None if state == TcpState.LISTEN else remote, rport,
                   pid=pid, command=m.group(1), line=number)


def iter_lsof_tcp(lines: Iterable[str], source: str) -> Iterator[ConnRow]:
    """TCP sockets of lsof output, one per socket (not per descriptor), streamed."""
    seen: set[str] = set()
    rows = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or LSOF_HEADER.fullmatch(text):
            continue
        m = LSOF_ROW.fullmatch(text)
        if m is None:
            raise ParseError(source, f"not an lsof network row: {text[:60]!r}", number)
        rows += 1
        if m.group(5) != "TCP":
            continue
        device = m.group(4)
        if device in seen:
            continue
        if len(seen) < MAX_DEVICES:
            seen.add(device)
        yield _row(m, source, number)
    if not rows:
        raise ParseError(source, "no lsof rows")
