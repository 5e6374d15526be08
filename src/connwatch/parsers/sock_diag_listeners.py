"""LISTEN sockets from a sock_diag dump requested with the SKMEMINFO extension (pure: bytes in, Listener
rows out): ListenerDecoder, and MemoListenerDecoder for repeated polls. Layouts: parsers/sock_diag.py; the
drop counter is SK_MEMINFO_DROPS of the INET_DIAG_SKMEMINFO attribute, the accept queue idiag_rqueue and the
backlog in force idiag_wqueue (net/ipv4/tcp_diag.c, tcp_diag_get_info)."""

from __future__ import annotations

import _socket  # (not socket: see sources/netlink.py)
import struct

from connwatch.errors import ParseError
from connwatch.model import Listener
from connwatch.parsers.sock_diag import (
    _DIAG_REPLIES,
    _HDR,
    _MSG,
    INET_DIAG_SKMEMINFO,
    SK_MEMINFO_DROPS,
    SOURCE,
    _check_header,
    format_address,
)

_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")

def _skmeminfo_drops(chunk: bytes, start: int, end: int) -> int | None:
    """SK_MEMINFO_DROPS from the rtattrs between start and end, or None when absent."""
    while start + _RTA.size <= end:
        rta_len, rta_type = _RTA.unpack_from(chunk, start)
        if rta_len < _RTA.size:
            return None
        if rta_type == INET_DIAG_SKMEMINFO and rta_len >= _RTA.size + 4 * (SK_MEMINFO_DROPS + 1):
            return int(struct.unpack_from("=I", chunk, start + _RTA.size + 4 * SK_MEMINFO_DROPS)[0])
        start += (rta_len + 3) & ~3
    return None


# nlmsghdr + inet_diag_msg, what a listener row reads: length, type; family, sport (network order), src,
# cookie[2], rqueue, wqueue, uid, inode (88 bytes: the SKMEMINFO rtattr follows)
_LISTENER = struct.Struct("=IH10xB3xH2x16s16x4xII4xIIII")


def _skmeminfo_at(chunk: bytes, start: int, end: int) -> int | None:
    """Where _skmeminfo_drops finds the SKMEMINFO rtattr (its header's offset), or None."""
    while start + _RTA.size <= end:
        rta_len, rta_type = _RTA.unpack_from(chunk, start)
        if rta_len < _RTA.size:
            return None
        if rta_type == INET_DIAG_SKMEMINFO and rta_len >= _RTA.size + 4 * (SK_MEMINFO_DROPS + 1):
            return start
        start += (rta_len + 3) & ~3
    return None


class ListenerDecoder:
    """Collects LISTEN sockets from a dump requested with the SKMEMINFO extension."""

    __slots__ = ("listeners",)

    def __init__(self, listeners: list[Listener]) -> None:
        self.listeners = listeners

    def __call__(self, chunk: bytes) -> bool:
        """Decode one chunk; True once it met NLMSG_DONE. The hot path (5,000 listeners: a row each in the
        table): one unpack per reply, the attributes before SKMEMINFO compared as bytes with the previous
        reply's (the same bytes: the same walk; else walked), each address formatted once. Any other
        message (the end, an error, a short or truncated one) is read by _message, as it always was."""
        offset, size = 0, len(chunk)
        unpack, append = _LISTENER.unpack_from, self.listeners.append
        names: dict[tuple[int, bytes], tuple[int, str]] = {}
        prefix, skip = b"", -1  # the rtattr bytes before the last SKMEMINFO header (and it), their length
        while offset + _LISTENER.size <= size:
            length, kind, family, sport, src, ck0, ck1, rqueue, wqueue, uid, inode = unpack(chunk, offset)
            end = offset + length
            if kind not in _DIAG_REPLIES or length < _LISTENER.size or end > size:
                break
            attrs = offset + _LISTENER.size
            if skip >= 0 and attrs + skip <= end and chunk[attrs:attrs + skip] == prefix:
                at: int | None = attrs + skip - _RTA.size
            else:
                at = _skmeminfo_at(chunk, attrs, end)
                skip, prefix = (-1, b"") if at is None else (at + _RTA.size - attrs, chunk[attrs:at + _RTA.size])
            named = names.get((family, src))
            if named is None:
                named = names[(family, src)] = (6 if family == _socket.AF_INET6 else 4, _address(family, src))
            append(Listener(named[0], named[1], _socket.ntohs(sport), rqueue, wqueue,
                            None if at is None else _U32.unpack_from(chunk, at + _RTA.size + 4 * SK_MEMINFO_DROPS)[0],
                            inode, uid, (ck1 << 32) | ck0))
            offset += (length + 3) & ~3
        return self._messages(chunk, offset)

    def _messages(self, chunk: bytes, offset: int) -> bool:
        """Each message from `offset` on, one at a time (what the fast loop leaves)."""
        size = len(chunk)
        while offset + _HDR.size <= size:
            length, kind, _flags, _seq, _pid = _HDR.unpack_from(chunk, offset)
            if _check_header(chunk, offset, length, kind):
                return True
            if kind in _DIAG_REPLIES:
                self._decode(chunk, offset + _HDR.size, offset + length)
            offset += (length + 3) & ~3
        return False

    def _decode(self, chunk: bytes, start: int, end: int) -> None:
        """One reply, the straightforward way (the reference the fast loop is tested against)."""
        if end - start < _MSG.size:
            raise ParseError(SOURCE, f"inet_diag_msg of {end - start} bytes, expected {_MSG.size}")
        (family, _state, _t, _r, sport, _dport, src, _dst, _if, ck0, ck1,
         _exp, rqueue, wqueue, uid, inode) = _MSG.unpack_from(chunk, start)
        drops = _skmeminfo_drops(chunk, start + _MSG.size, end)
        self.listeners.append(Listener(
            family=6 if family == _socket.AF_INET6 else 4,
            address=_address(family, src),
            port=_socket.ntohs(sport), queue=rqueue, backlog=wqueue, drops=drops,
            inode=inode, uid=uid, cookie=(ck1 << 32) | ck0,
        ))


def _address(family: int, src: bytes) -> str:
    """A listener's address: IPv4, or IPv6 as inet_ntop writes it (an IPv4-mapped one stays IPv6)."""
    return format_address(family, src) if family == _socket.AF_INET else _socket.inet_ntop(_socket.AF_INET6, src)


class MemoListenerDecoder(ListenerDecoder):
    """A ListenerDecoder for repeated polls: a listener whose reply bytes are identical to the previous
    poll's (same socket, queue, backlog, drop counter...) is the previous Listener object, not decoded
    again. `seen` collects this poll's replies; pass it as `previous` to the next poll."""

    __slots__ = ("previous", "seen")

    def __init__(self, listeners: list[Listener], previous: dict[bytes, Listener], seen: dict[bytes, Listener]) -> None:
        super().__init__(listeners)
        self.previous, self.seen = previous, seen

    def __call__(self, chunk: bytes) -> bool:
        return self._messages(chunk, 0)  # (each reply through the memo)

    def _decode(self, chunk: bytes, start: int, end: int) -> None:
        key = chunk[start:end]
        known = self.previous.get(key)
        if known is None:
            ListenerDecoder._decode(self, chunk, start, end)
            known = self.listeners[-1]
        else:
            self.listeners.append(known)
        self.seen[key] = known
