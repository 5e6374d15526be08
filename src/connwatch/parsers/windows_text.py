"""Parse Windows text that is not netstat: PowerShell `Get-NetTCPConnection` tables and
`netsh int ipv4 show dynamicport tcp`.

`Get-NetTCPConnection` (NetTCPIP module, MSFT_NetTCPConnection; default table view; the
AppliedSetting column is empty for listeners)::

    LocalAddress        LocalPort RemoteAddress      RemotePort State       AppliedSetting OwningProcess
    ------------        --------- -------------      ---------- -----       -------------- -------------
    10.23.0.2           49701     52.177.165.30      443        Established Internet       2988
    0.0.0.0             5987      0.0.0.0            0          Listen                     7916

States are the MSFT_NetTCPConnection State names (Listen, SynSent, SynReceived, Established,
FinWait1, FinWait2, CloseWait, Closing, LastAck, TimeWait, DeleteTCB, Bound, Closed). Bound rows
(a port bound by a socket that neither listens nor is connected) are not connections and are
skipped. Windows shows no accept-queue length here either.

and its list form (`| Format-List`; one record per connection, records separated by blank lines)::

    LocalAddress   : 172.18.0.8
    LocalPort      : 5847
    RemoteAddress  : 192.168.20.11
    RemotePort     : 15490
    State          : Established
    AppliedSetting : Internet
    OwningProcess  : 21616

`netsh int ipv4 show dynamicport tcp` (the ephemeral range outgoing connections use)::

    Protocol tcp Dynamic Port Range
    ---------------------------------
    Start Port      : 49152
    Number of Ports : 16384
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from connwatch.errors import ParseError
from connwatch.model import TcpState
from connwatch.parsers.conn_rows import ConnRow, canonical_ip
from connwatch.parsers.numbers import num, port

_S = TcpState
PS_STATES = {
    "Listen": _S.LISTEN, "SynSent": _S.SYN_SENT, "SynReceived": _S.SYN_RECV, "Established": _S.ESTABLISHED,
    "FinWait1": _S.FIN_WAIT1, "FinWait2": _S.FIN_WAIT2, "CloseWait": _S.CLOSE_WAIT, "Closing": _S.CLOSING,
    "LastAck": _S.LAST_ACK, "TimeWait": _S.TIME_WAIT, "DeleteTCB": _S.CLOSE, "Bound": _S.CLOSE, "Closed": _S.CLOSE,
}
PS_ROW = re.compile(r"(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(" + "|".join(PS_STATES) + r")(?:\s+(\w+))??(?:\s+(\d+))?\s*")
PS_HEADER = re.compile(r"LocalAddress\s+LocalPort\s+RemoteAddress\s+RemotePort\s+State\b.*")
PS_FIELD = re.compile(r"(LocalAddress|LocalPort|RemoteAddress|RemotePort|State|AppliedSetting|OwningProcess|"
                      r"CreationTime|OffloadState)\s*:(?:\s+(.*))?")
_NETSH_START = re.compile(r"Start Port\s*:\s*(\d+)")
_NETSH_COUNT = re.compile(r"Number of Ports\s*:\s*(\d+)")


def _address(text: str) -> tuple[str, int]:
    """`fe80::1%5` -> ("fe80::1", 6); `10.0.0.1` -> ("10.0.0.1", 4)."""
    addr = text.split("%", 1)[0]
    if canonical_ip(addr) is None:
        raise ValueError(f"not an IP address: {addr[:40]!r}")
    return addr, 6 if ":" in addr else 4


def iter_powershell_tcp(lines: Iterable[str], source: str) -> Iterator[ConnRow]:
    """The rows of a `Get-NetTCPConnection` table, streamed; header and dashes lines are skipped."""
    rows = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or PS_HEADER.fullmatch(text) or set(text) <= {"-", " "}:
            continue
        m = PS_ROW.fullmatch(text)
        if m is None:
            raise ParseError(source, f"not a Get-NetTCPConnection row: {text[:60]!r}", number)
        rows += 1
        if m.group(5) == "Bound":
            continue
        try:
            yield _table_row(m, number)
        except ValueError as exc:
            raise ParseError(source, str(exc), number) from None
    if not rows:
        raise ParseError(source, "no Get-NetTCPConnection rows")


def _table_row(m: re.Match[str], number: int) -> ConnRow:
    local, fam = _address(m.group(1))
    remote, _rfam = _address(m.group(3))
    state = int(PS_STATES[m.group(5)])
    listen = state == TcpState.LISTEN
    return ConnRow(fam, state, local, port(m.group(2)), None if listen else remote, port(m.group(4)),
                   pid=num(m.group(7)) if m.group(7) else None, line=number)


def _list_record(fields: dict[str, str], source: str, number: int) -> ConnRow:
    try:
        return _checked_record(fields, source, number)
    except ValueError as exc:
        raise ParseError(source, str(exc), number) from None


def _checked_record(fields: dict[str, str], source: str, number: int) -> ConnRow:
    state_name = fields.get("State", "")
    if state_name not in PS_STATES or "LocalAddress" not in fields or not fields.get("LocalPort", "").isdigit():
        raise ParseError(source, "Get-NetTCPConnection record without LocalAddress, LocalPort or a known State "
                         "(elided?)", number)
    local, fam = _address(fields["LocalAddress"])
    remote, _rfam = _address(fields.get("RemoteAddress") or "0.0.0.0")
    state = int(PS_STATES[state_name])
    rport = fields.get("RemotePort", "0")
    pid = fields.get("OwningProcess", "")
    return ConnRow(fam, state, local, port(fields["LocalPort"]), None if state == TcpState.LISTEN else remote,
                   port(rport) if rport.isdigit() else 0, pid=num(pid) if pid.isdigit() else None, line=number)


def iter_powershell_list(lines: Iterable[str], source: str) -> Iterator[ConnRow]:
    """The records of `Get-NetTCPConnection | Format-List`, streamed (one record held)."""
    fields: dict[str, str] = {}
    first = rows = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        m = PS_FIELD.fullmatch(text)
        if m and not (m.group(1) == "LocalAddress" and fields):
            fields[m.group(1)] = (m.group(2) or "").strip()
            first = first or number
            continue
        if fields:
            if fields.get("State") != "Bound":
                yield _list_record(fields, source, first)
            rows += 1
            fields, first = {}, 0
        if m:  # LocalAddress of the next record, no blank line between
            fields[m.group(1)], first = (m.group(2) or "").strip(), number
        elif text:
            raise ParseError(source, f"not a 'Name : value' line of Format-List output: {text[:60]!r}", number)
    if fields:
        if fields.get("State") != "Bound":
            yield _list_record(fields, source, first)
        rows += 1
    if not rows:
        raise ParseError(source, "no Get-NetTCPConnection records")


def parse_netsh_dynamicport(lines: Iterable[str], source: str) -> tuple[int, int]:
    """(first, last) port of `netsh int ipv4 show dynamicport tcp`."""
    start = count = None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        try:
            if m := _NETSH_START.fullmatch(text):
                start = num(m.group(1))
            elif m := _NETSH_COUNT.fullmatch(text):
                count = num(m.group(1))
        except ValueError as exc:
            raise ParseError(source, str(exc), number) from None
    if start is None or count is None:
        raise ParseError(source, "expected 'Start Port : N' and 'Number of Ports : N' (netsh dynamicport)")
    if not (1 <= start <= 65535 and count >= 1 and start + count - 1 <= 65535):
        raise ParseError(source, f"dynamic port range {start}+{count} outside 1-65535")
    return start, start + count - 1
