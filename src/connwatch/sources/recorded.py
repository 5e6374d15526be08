"""Recorded sock_diag replies, answered in place of the kernel (golden end-to-end tests, replay).

A directory of recorded exchanges stands in for a NETLINK_SOCK_DIAG socket: `collect()` sends the
same requests as to the kernel and gets the recorded reply chunks back, in order, so everything
after the socket (decoding, aggregation, rules, outputs) runs unchanged.

One file per dump, named `<kind>-ipv<family>.hex` (kind "listeners" or "sockets"), text:

    request 4c0000001400010301000000...   (the request bytes, hex; must equal what is sent)
    reply 2c010000140002000100000000...   (one recv() chunk per line, hex, as the kernel returned it)
    reply ...

tests/fixtures/e2e/record.py writes these files from a real kernel. A request with no file gives
ENOENT (read like a kernel refusing that dump: a missing IPv6 file reads as "no IPv6 sock_diag");
a request that differs from the recorded one gives EPROTO, so a replay never answers a question
that was not asked.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from pathlib import Path

from connwatch.errors import SourceUnavailable
from connwatch.sources import netlink

KINDS = {netlink.TCPF_LISTEN: "listeners", netlink.TCPF_ALL_BUT_LISTEN: "sockets"}
FAMILY_NAMES: dict[int, int] = {socket.AF_INET: 4, socket.AF_INET6: 6}
NAME = "netlink sock_diag (recorded)"
_REQ_FAMILY_OFFSET = 16  # first byte after struct nlmsghdr
_REQ_STATES_OFFSET = 20  # inet_diag_req_v2.idiag_states (__u32, after family, protocol, ext, pad)


def file_name(family: int, states: int) -> str:
    """The recording's file name for one dump request ("listeners-ipv4.hex")."""
    return f"{KINDS[states]}-ipv{FAMILY_NAMES[family]}.hex"


def format_exchange(request: bytes, chunks: list[bytes]) -> str:
    """One recorded dump as text (what RecordedSocket reads back)."""
    return "".join([f"request {request.hex()}\n", *(f"reply {c.hex()}\n" for c in chunks)])


class RecordedSocket:
    """send()/recv() over a directory of recorded replies, shaped like the netlink socket collect uses."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pending: deque[bytes] = deque()

    def close(self) -> None:
        self._pending.clear()

    def send(self, data: bytes, /) -> int:
        family = data[_REQ_FAMILY_OFFSET]
        states = int.from_bytes(data[_REQ_STATES_OFFSET:_REQ_STATES_OFFSET + 4], "little")
        if family not in FAMILY_NAMES or states not in KINDS:
            raise OSError(errno.EPROTO, os.strerror(errno.EPROTO))
        path = self.directory / file_name(family, states)
        try:
            lines = path.read_text(encoding="ascii").split()
        except (OSError, UnicodeDecodeError):
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT)) from None
        pairs = list(zip(lines[::2], lines[1::2], strict=False))
        if (len(lines) % 2 or not pairs or pairs[0] != ("request", data.hex())
                or any(word != "reply" for word, _ in pairs[1:])):
            raise OSError(errno.EPROTO, os.strerror(errno.EPROTO))
        self._pending = deque(bytes.fromhex(h) for _, h in pairs[1:])
        return len(data)

    def recv(self, bufsize: int, /) -> bytes:
        return self._pending.popleft() if self._pending else b""


def open_recorded(directory: str) -> RecordedSocket:
    """The recorded replies in `directory`, or SourceUnavailable if it is not a directory."""
    path = Path(directory)
    if not path.is_dir():
        raise SourceUnavailable(NAME, f"{directory}: no such directory of recorded replies")
    return RecordedSocket(path)
