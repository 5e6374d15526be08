"""Parse the z/OS Communications Server `netstat` COnn report (z/OS UNIX `netstat` / `onetstat`,
TSO `NETSTAT CONN`), wide form: one line per TCP connection or listener.

    MVS TCP/IP NETSTAT CS V2R5       TCPIP Name: TCPIP           00:20:01
    User Id  Conn     Local Socket           Foreign Socket         State
    -------  ----     ------------           --------------         -----
    BPXOINIT 0000000B 0.0.0.0..10007         0.0.0.0..0             Listen
    BUZAGNT1 00000064 127.0.0.1..1025        127.0.0.1..1026        Establsh

The port follows a double dot (`addr..port`, IPv6 `::ffff:9.57.165.181..9355`). States are the
abbreviations of the TSO/UNIX reports (Listen, SynSent, SynRcvd, Establsh, FinWait1, FinWait2,
ClosWait, LastAck, TimeWait, Closing, Closed). The report names the owning job (User Id) but shows
no queue lengths: backlog figures are only in `NETSTAT ALL` / `netstat -A`, which this does not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from connwatch.errors import ParseError
from connwatch.model import TcpState
from connwatch.parsers.conn_rows import ConnRow, canonical_ip
from connwatch.parsers.numbers import port

_S = TcpState
ZOS_STATES = {
    "Listen": _S.LISTEN, "SynSent": _S.SYN_SENT, "SynRcvd": _S.SYN_RECV, "Establsh": _S.ESTABLISHED,
    "FinWait1": _S.FIN_WAIT1, "FinWait2": _S.FIN_WAIT2, "ClosWait": _S.CLOSE_WAIT, "LastAck": _S.LAST_ACK,
    "TimeWait": _S.TIME_WAIT, "Closing": _S.CLOSING, "Closed": _S.CLOSE,
}
ZOS_BANNER = re.compile(r"MVS TCP/IP NETSTAT CS V\d+R\d+\b.*")
ZOS_ROW = re.compile(r"(\S{1,8})\s+([0-9A-Fa-f]{8})\s+(\S+\.\.\d+)\s+(\S+\.\.\d+)\s+([A-Za-z]\w*)\s*")
_HEADER = re.compile(r"User Id\s+Conn\b.*|[-\s]+")


def _socket(text: str) -> tuple[str, int, int]:
    addr, _sep, number = text.rpartition("..")
    if addr.startswith("::ffff:") and "." in addr:
        addr = addr[len("::ffff:"):]
    if canonical_ip(addr) is None:
        raise ValueError(f"not an IP address: {addr[:40]!r}")
    return addr, port(number), 6 if ":" in addr else 4


def iter_zos_conn(lines: Iterable[str], source: str) -> Iterator[ConnRow]:
    """The TCP rows of a wide COnn report, streamed. UDP endpoints (state UDP) are skipped."""
    rows = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or ZOS_BANNER.fullmatch(text) or _HEADER.fullmatch(text):
            continue
        m = ZOS_ROW.fullmatch(text)
        if m is None:
            raise ParseError(source, f"not a z/OS netstat COnn row: {text[:60]!r}", number)
        rows += 1
        if m.group(5) == "UDP":
            continue
        state = ZOS_STATES.get(m.group(5))
        if state is None:
            raise ParseError(source, f"unknown z/OS TCP state {m.group(5)[:20]!r}", number)
        try:
            local, lport, fam = _socket(m.group(3))
            remote, rport, _ = _socket(m.group(4))
        except ValueError as exc:
            raise ParseError(source, f"bad address: {exc}", number) from None
        yield ConnRow(fam, int(state), local, lport, None if state == TcpState.LISTEN else remote, rport,
                      command=m.group(1), line=number)
    if not rows:
        raise ParseError(source, "no z/OS netstat COnn rows")
