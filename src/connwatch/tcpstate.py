"""TCP states as an IntEnum (model.TcpState): loaded where a state is named or looked up by name, not by a
sample (enum's import and the class were 7.6 M of the 86.6 M instructions of a `snapshot` to its first
kernel read, callgrind, issue 17: the decoders use the numbers, model.STATE_NAMES the names)."""

from __future__ import annotations

from enum import IntEnum


class TcpState(IntEnum):
    """TCP states as numbered in include/net/tcp_states.h."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12

    @classmethod
    def name_of(cls, number: int) -> str:
        try:
            return cls(number).name
        except ValueError:
            return f"STATE_{number}"
