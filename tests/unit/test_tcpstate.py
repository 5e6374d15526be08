"""model's state names and numbers, written out so that a sample loads no enum, are TcpState's."""

from __future__ import annotations

import random

from connwatch import model
from connwatch.model import STATE_NAMES, STATE_UNIT, TcpState, pack_states, state_counts
from connwatch.parsers import sock_diag


def test_state_names_are_the_enums() -> None:
    assert tuple(TcpState.name_of(i) for i in range(16)) == STATE_NAMES
    assert model.TcpState is TcpState and int(TcpState.TIME_WAIT) == 6 and TcpState.name_of(13) == "STATE_13"
    assert (sock_diag._ST_ESTABLISHED, sock_diag._ST_SYN_SENT, sock_diag._ST_TIME_WAIT, sock_diag._ST_CLOSE,
            sock_diag._ST_CLOSE_WAIT) == (TcpState.ESTABLISHED, TcpState.SYN_SENT, TcpState.TIME_WAIT,
                                          TcpState.CLOSE, TcpState.CLOSE_WAIT)
    assert __import__("connwatch.parsers.proc_tcp").parsers.proc_tcp._LISTEN == TcpState.LISTEN


def test_pack_states_reads_names_as_the_enum_does() -> None:
    """pack_states: a name of TcpState counts in its state's slot, any other name in STATE_0's."""
    rng = random.Random("pack")
    names = [*TcpState.__members__, "STATE_0", "STATE_13", "bogus", "listen", ""]
    for _ in range(500):
        states = {rng.choice(names): rng.randint(0, 9) for _ in range(rng.randint(0, 6))}
        expected = sum(n * STATE_UNIT[TcpState[k] if k in TcpState.__members__ else 0] for k, n in states.items())
        assert pack_states(states) == expected, states
    assert state_counts(pack_states({"TIME_WAIT": 3, "LISTEN": 1})) == {"TIME_WAIT": 3, "LISTEN": 1}
