"""Parse snmpwalk output of the TCP-MIB connection tables (RFC 4022; net-snmp's text form).

    TCP-MIB::tcpConnectionState.ipv4."192.168.140.167".80.ipv4."192.168.140.248".41395 = INTEGER: established(5)
    TCP-MIB::tcpConnState.10.0.0.1.22.10.0.0.2.51000 = INTEGER: established(5)

tcpConnectionTable (index: local address type, address, port, remote type, address, port) lists
connections only; listeners are in tcpListenerTable (not read). The deprecated IPv4-only
tcpConnTable (tcpConnState) also lists listeners as listen(2). Only the State column is read;
other columns of the walk (tcpConnectionProcess, ...) are skipped. No queue lengths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from connwatch.errors import ParseError
from connwatch.model import TcpState
from connwatch.parsers.conn_rows import ConnRow, canonical_ip
from connwatch.parsers.numbers import port

_S = TcpState
MIB_STATES = {1: _S.CLOSE, 2: _S.LISTEN, 3: _S.SYN_SENT, 4: _S.SYN_RECV, 5: _S.ESTABLISHED, 6: _S.FIN_WAIT1,
              7: _S.FIN_WAIT2, 8: _S.CLOSE_WAIT, 9: _S.LAST_ACK, 10: _S.CLOSING, 11: _S.TIME_WAIT, 12: _S.CLOSE}
SNMP_LINE = re.compile(r"TCP-MIB::tcpConn\w*\..*")
_NEW = re.compile(r'TCP-MIB::tcpConnectionState\.(ipv4|ipv6)\."([^"]+)"\.(\d+)\.(?:ipv4|ipv6)\."([^"]+)"\.(\d+)'
                  r"\s+=\s+INTEGER:\s+\w+\((\d+)\)")
_OLD = re.compile(r"TCP-MIB::tcpConnState\.(\d+\.\d+\.\d+\.\d+)\.(\d+)\.(\d+\.\d+\.\d+\.\d+)\.(\d+)"
                  r"\s+=\s+INTEGER:\s+\w+\((\d+)\)")


def _state(code: str, source: str, number: int) -> int:
    state = MIB_STATES.get(int(code)) if len(code) < 4 else None
    if state is None:
        raise ParseError(source, f"unknown TCP-MIB state {code}", number)
    return int(state)


def iter_snmp_tcp(lines: Iterable[str], source: str) -> Iterator[ConnRow]:
    rows = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if not SNMP_LINE.fullmatch(text):
            raise ParseError(source, f"not a TCP-MIB connection-table line: {text[:60]!r}", number)
        rows += 1
        try:
            if m := _NEW.fullmatch(text):
                local, rem = canonical_ip(m.group(2)), canonical_ip(m.group(4))
                lport, rport, state = port(m.group(3)), port(m.group(5)), _state(m.group(6), source, number)
            elif m := _OLD.fullmatch(text):
                local, rem = canonical_ip(m.group(1)), canonical_ip(m.group(3))
                lport, rport, state = port(m.group(2)), port(m.group(4)), _state(m.group(5), source, number)
            else:
                continue  # another column of the table (tcpConnectionProcess, tcpConnLocalAddress, ...)
        except ValueError:
            local = None
        if local is None or rem is None:
            raise ParseError(source, "bad address or port in the TCP-MIB index", number)
        listen = state == TcpState.LISTEN
        yield ConnRow(local[1], state, local[0], lport, None if listen else rem[0], rport, line=number)
    if not rows:
        raise ParseError(source, "no TCP-MIB connection-table lines")
