"""sock_diag dumps with a kernel-side local-port filter (INET_DIAG_REQ_BYTECODE): I/O only.

Used for the sockets of a sample that reuses its outbound TIME_WAIT (collect_tw.py): every other socket
and the inbound TIME_WAIT (local port = a listening port) in one walk (full_or_inbound_program), or on
older kernels the inbound TIME_WAIT alone (sport_program); and for `check`'s first sample, the sockets on
listening ports. The kernel still walks its socket hash, but emits only what the program accepts, so
nothing else is copied or decoded.

The program is the one net/ipv4/inet_diag.c inet_diag_bc_run() interprets and inet_diag_bc_audit()
checks: struct inet_diag_bc_op {u8 code; u8 yes; u16 no;} (include/uapi/linux/inet_diag.h), a port
comparison followed by a second op whose `no` holds the port. Per range [lo, hi]:

    S_GE lo (yes: next op, no: next range)  S_LE hi (yes: the JMP, no: next range)  JMP to the end

reaching the end exactly accepts the socket; jumping past it rejects. S_GE/S_LE/JMP exist since
Linux 2.6 (S_EQ only since 4.x, so it is not used).

full_or_inbound_program() puts one CGROUP_COND op (Linux 5.9, b1f3e43dbfac "inet_diag: add support for
cgroup filter") before those ranges, so ONE walk emits every socket a sample must see fresh: inet_diag_bc_sk()
gives a full socket its cgroup v2 id (never 0: the root cgroup's is 1) and a TIME_WAIT or request socket 0
(`entry.cgroup_id = sk_fullsock(sk) ? cgroup_id(...) : 0`). Its sample line, as built here for ranges
[(8080, 8080)]: `0d 0c 20 00 | 00*8 | 02 08 18 00 ...` (code 13, yes 12, no 32 = the program's length).
"""

from __future__ import annotations

import _socket  # (not socket: its import was ~1.5 ms of `check`'s first sample; see sources/netlink.py)
import os
import struct
from collections.abc import Callable, Iterable

from connwatch.errors import SourceUnavailable
from connwatch.sources.netlink import (
    NLM_F_DUMP,
    NLM_F_REQUEST,
    RECV_SIZE,
    SOCK_DIAG_BY_FAMILY,
    TCPDIAG_GETSOCK,
    DiagSocket,
)

INET_DIAG_REQ_BYTECODE = 1
BC_JMP, BC_S_GE, BC_S_LE = 1, 2, 3
BC_CGROUP_COND = 13  # include/uapi/linux/inet_diag.h: u64 cgroup v2 id follows the op
MAX_RANGES = 32  # beyond this the per-socket program costs more than decoding what it would drop
_OP = struct.Struct("=BBH")
_CGROUP_OP = struct.Struct("=BBHQ")  # inet_diag_bc_op + the u64 id (get_unaligned: no padding)
_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_REQ = struct.Struct("=BBBxI48x")  # inet_diag_req_v2 (sockid zeroed)
_LEGACY_REQ = struct.Struct("=BBBB48xII")  # inet_diag_req


def port_ranges(ports: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ports as the fewest inclusive ranges: {80, 81, 82, 443} -> [(80, 82), (443, 443)]."""
    out: list[tuple[int, int]] = []
    for port in sorted(set(ports)):
        if out and port == out[-1][1] + 1:
            out[-1] = (out[-1][0], port)
        else:
            out.append((port, port))
    return out


def sport_program(ranges: list[tuple[int, int]]) -> bytes:
    """The bytecode accepting a socket whose local port lies in one of the ranges (at least one)."""
    if not ranges:
        raise ValueError("sport_program: no port range")
    block = 20
    total = block * len(ranges)
    out = []
    for i, (lo, hi) in enumerate(ranges):
        left = total - i * block  # bytes from this block's first op to the end
        last = i == len(ranges) - 1
        out.append(_OP.pack(BC_S_GE, 8, left + 4 if last else block) + _OP.pack(0, 0, lo))
        out.append(_OP.pack(BC_S_LE, 8, left - 8 + 4 if last else 12) + _OP.pack(0, 0, hi))
        out.append(_OP.pack(BC_JMP, 4, left - 16))
    return b"".join(out)


def full_or_inbound_program(ranges: list[tuple[int, int]]) -> bytes:
    """The bytecode accepting every full socket (any state asked for) and a TIME_WAIT or request socket
    only when its local port lies in one of the ranges: a sample's every-state-but-outbound-TIME_WAIT in
    one walk of the kernel's socket hash instead of two (collect_filtered._split_sockets). A request socket
    (SYN_RECV) has its listener's port, so it passes the ranges as in an unfiltered dump. A cgroup id
    equal to 0 (yes) goes on to the port ranges; any other (no) jumps to the end exactly: accepted."""
    ports = sport_program(ranges)
    return _CGROUP_OP.pack(BC_CGROUP_COND, _CGROUP_OP.size, _CGROUP_OP.size + len(ports), 0) + ports


def filtered_request(states: int, program: bytes, family: int | None, seq: int = 1) -> bytes:
    """A dump request with the program attached: SOCK_DIAG_BY_FAMILY for one family, or the legacy
    TCPDIAG_GETSOCK (both families in one walk) when family is None."""
    if family is None:
        body, kind = _LEGACY_REQ.pack(_socket.AF_INET, 0, 0, 0, states, 0), TCPDIAG_GETSOCK
    else:
        body, kind = _REQ.pack(family, _socket.IPPROTO_TCP, 0, states), SOCK_DIAG_BY_FAMILY
    attr = _NLATTR.pack(_NLATTR.size + len(program), INET_DIAG_REQ_BYTECODE) + program
    length = _NLMSGHDR.size + len(body) + len(attr)
    return _NLMSGHDR.pack(length, kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body + attr


def dump_filtered(sock: DiagSocket, states: int, program: bytes, family: int | None,
                  consume: Callable[[bytes], bool]) -> None:
    """Send one filtered dump request; feed each reply chunk to `consume` until it reports the end."""
    try:
        sock.send(filtered_request(states, program, family))
        while True:
            chunk = sock.recv(RECV_SIZE)
            if not chunk or consume(chunk):
                return
    except OSError as exc:
        raise SourceUnavailable("netlink sock_diag (port filter)", os.strerror(exc.errno or 0)) from exc
