"""Parse /proc/net/tcp and /proc/net/tcp6: the fallback when netlink sock_diag is unavailable.

Format from net/ipv4/tcp_ipv4.c (get_tcp4_sock, get_timewait4_sock) and net/ipv6/tcp_ipv6.c:

      sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
       0: 0500000A:0016 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 2740 1 ...

Addresses are the kernel's 32-bit words printed in host byte order (little-endian here), ports in
hex. For LISTEN rows rx_queue is the accept-queue length; the backlog in force and the per-listener
drop counter are NOT in this file, so listeners from it carry backlog=None, drops=None.
`tm->when` is in clock ticks (USER_HZ = 100).
"""

from __future__ import annotations

import _socket  # (not socket, whose import loads enum: see sources/netlink.py)
from collections.abc import Iterable

from connwatch.errors import ParseError
from connwatch.model import STATE_NAMES, Listener
from connwatch.parsers.numbers import hexnum, num
from connwatch.parsers.sock_diag import SocketAggregator

_LISTEN = STATE_NAMES.index("LISTEN")  # (TcpState.LISTEN: the enum is not loaded by a sample)
USER_HZ_MS = 10


def _raw_address(hexaddr: str) -> bytes:
    """'0500000A' -> b'\\x0a\\x00\\x00\\x05' (+ zero padding to 16 bytes for IPv4)."""
    words = bytes.fromhex(hexaddr)
    if len(words) not in (4, 16):
        raise ValueError(f"address of {len(words)} bytes")
    raw = b"".join(words[i:i + 4][::-1] for i in range(0, len(words), 4))
    return raw.ljust(16, b"\0")


def _split(line: str) -> tuple[bytes, int, bytes, int, int, int, int, int, int, int]:
    """Fields of one row: local raw, local port, remote raw, remote port, state, rx, timer ms,
    uid, inode, tx."""
    f = line.split()
    local, lport = f[1].split(":")
    remote, rport = f[2].split(":")
    tx, rx = f[4].split(":")
    _tr, when = f[5].split(":")
    if len(lport) > 4 or len(rport) > 4 or len(f[3]) > 2:
        raise ValueError("port or state wider than the kernel prints (%04X, %02X)")
    return (_raw_address(local), hexnum(lport), _raw_address(remote), hexnum(rport), hexnum(f[3]),
            hexnum(rx), hexnum(when) * USER_HZ_MS, num(f[7]), num(f[9]), hexnum(tx))


def parse_proc_tcp(lines: Iterable[str], source: str, family: int,
                   listeners: list[Listener], aggregator: SocketAggregator | None) -> None:
    """Append LISTEN rows to `listeners`; feed other rows to `aggregator` (when given).

    Two passes are not needed by callers that know the listening ports; pass aggregator=None on
    a first pass to collect listeners only.
    """
    afam = _socket.AF_INET6 if family == 6 else _socket.AF_INET
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.lstrip().startswith("sl"):
            continue
        if not line.strip():
            continue
        try:
            src, sport, dst, dport, state, rx, when, uid, inode, _tx = _split(line)
        except (ValueError, IndexError) as exc:
            raise ParseError(source, f"malformed socket row ({exc}): {line.strip()[:80]!r}", number) from exc
        if state == _LISTEN:
            address = _socket.inet_ntop(afam, src if family == 6 else src[:4])  # as sock_diag shows it
            listeners.append(Listener(family=family, address=address, port=sport,
                                      queue=rx, backlog=None, drops=None, inode=inode, uid=uid))
        elif aggregator is not None:
            aggregator.add(afam, state, 0, 0, _socket.htons(sport), _socket.htons(dport), src, dst,
                           0, 0, 0, when, rx, 0, uid, inode)
