"""A pair's first sample with the sockets on listening ports alone, TIME_WAIT left out (CollectOptions.inbound_only):
one filtered dump (kernel-side port and state filter) whose sources and accepts equal those of a dump of every
socket but TIME_WAIT; every socket dumped when the filter cannot be used. The real kernel, and the pair judged
as with two full samples: tests/live/test_first_sample_live.py."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from connwatch.collect import INBOUND_STATES, TCPF_TIME_WAIT
from connwatch.collect_filtered import _inbound_sockets
from connwatch.model import Listener, SocketSummary
from connwatch.sources.diag_filter import MAX_RANGES
from connwatch.sources.netlink import TCPF_ALL_BUT_LISTEN

from .test_collect_tw import LISTEN_PORTS, TIME_WAIT, FakeDiag, _messages, _normal, _summary

TCPDIAG_GETSOCK = 18
SYN_SENT = 2
PLAIN_LEGACY = 16 + 60  # nlmsghdr + struct inet_diag_req: longer carries the bytecode
ASKED = INBOUND_STATES & ~TCPF_TIME_WAIT  # what the first sample's filtered dump asks


class _Kernel(FakeDiag):
    """Answers the legacy request; a filtered one (unless `refuse_filter`) with the recorded messages whose
    local port is in `ports` (what the program accepts) and state is asked for."""

    def __init__(self, ports: frozenset[int], refuse_filter: bool = False) -> None:
        super().__init__()
        self.ports, self.refuse_filter = ports, refuse_filter
        self.asked: list[tuple[bool, int]] = []  # (filtered, states)

    def send(self, data: bytes, /) -> int:
        assert struct.unpack_from("=H", data, 4)[0] == TCPDIAG_GETSOCK
        states, filtered = struct.unpack_from("=I", data, 16 + 52)[0], len(data) > PLAIN_LEGACY
        self.asked.append((filtered, states))
        if filtered and self.refuse_filter:
            self.refuse(data)
        elif filtered:
            chosen = [m for m in _messages()
                      if states >> m[17] & 1 and struct.unpack_from(">H", m, 20)[0] in self.ports]
            self.replies.append(b"".join(chosen) + struct.pack("=IHHIIi", 20, 3, 2, 1, 0, 0))
        else:
            self.answer(2, states)  # (the fake's IPv4 answer holds every recorded message)
        return len(data)


def _inbound_part(s: SocketSummary) -> tuple[object, ...]:
    """What a pair's judging reads of its first sample's sockets: the sources per port and the accepts."""
    return _normal(s)[3:]


def _but_time_wait(ports: frozenset[int] = LISTEN_PORTS) -> SocketSummary:
    return _summary([m for m in _messages() if m[17] != TIME_WAIT], ports)


def test_the_filtered_dump_has_the_sources_and_accepts_of_every_socket_but_time_wait() -> None:
    ports = LISTEN_PORTS | {46910}  # the recorded TIME_WAIT socket's local port made a listening one: inbound
    kernel = _Kernel(ports)
    got, whole = _inbound_sockets(kernel, ports, None, [], True, False), _summary(_messages(), ports)
    assert kernel.asked == [(True, ASKED)]
    assert got.inbound_only and not whole.inbound_only
    assert _inbound_part(got) == _inbound_part(_but_time_wait(ports)) and got.sources.by_port  # (inbound ones)
    assert not got.destinations and whole.destinations and got.total < whole.total
    # the server-side TIME_WAIT is in the whole dump (its source, its port's closed_by_age), not in the first sample
    assert whole.by_state.get("TIME_WAIT") and "TIME_WAIT" not in got.by_state
    assert any(u.states.get("TIME_WAIT") for u in whole.sources) and 46910 in whole.sources.by_port
    assert not any(u.states.get("TIME_WAIT") for u in got.sources) and 46910 not in got.sources.by_port


def test_split_asks_the_same_one_dump() -> None:
    """With TIME_WAIT many enough to be dumped apart (CollectOptions.split_time_wait): the same one filtered
    dump, TIME_WAIT not asked (split only shapes the fallback to every socket)."""
    kernel, one = _Kernel(LISTEN_PORTS), _Kernel(LISTEN_PORTS)
    got = _inbound_sockets(kernel, LISTEN_PORTS, None, [], True, True)
    assert kernel.asked == [(True, ASKED)]
    assert got == _inbound_sockets(one, LISTEN_PORTS, None, [], True, False) and got.inbound_only
    assert got.by_state.get("ESTABLISHED")


def test_a_syn_sent_socket_on_a_listening_port_stays_out_as_in_a_whole_dump() -> None:
    ports = LISTEN_PORTS | {42722}  # the recorded SYN_SENT socket's local port made a listening one
    syn_sent = [m for m in _messages() if m[17] == SYN_SENT and struct.unpack_from(">H", m, 20)[0] == 42722]
    assert syn_sent
    got, whole = _inbound_sockets(_Kernel(ports), ports, None, [], True, False), _summary(_messages(), ports)
    assert _inbound_part(got) == _inbound_part(_but_time_wait(ports))
    assert 42722 not in got.sources.by_port and 42722 not in whole.sources.by_port


def test_a_kernel_refusing_the_filter_gets_the_dump_of_every_socket() -> None:
    kernel = _Kernel(LISTEN_PORTS, refuse_filter=True)
    got = _inbound_sockets(kernel, LISTEN_PORTS, None, [], True, False)
    assert kernel.asked == [(True, ASKED), (False, TCPF_ALL_BUT_LISTEN)]
    assert not got.inbound_only and _normal(got) == _normal(_summary(_messages()))


def test_too_many_port_ranges_dump_every_socket() -> None:
    ports = LISTEN_PORTS | frozenset(range(20000, 20000 + 2 * MAX_RANGES, 2))  # every other port: one range each
    kernel = _Kernel(ports)
    got = _inbound_sockets(kernel, ports, None, [], True, False)
    assert kernel.asked == [(False, TCPF_ALL_BUT_LISTEN)]
    assert not got.inbound_only and _normal(got) == _normal(_summary(_messages(), ports))


def test_no_listener_no_dump() -> None:
    kernel = _Kernel(frozenset())
    got = _inbound_sockets(kernel, frozenset(), None, [], True, False)
    assert kernel.asked == [] and got.inbound_only and got.total == 0
    assert _inbound_part(got) == _inbound_part(_summary(_messages(), frozenset()))


@pytest.mark.parametrize("tw", [96, 95])
def test_a_first_sample_asks_no_time_wait_however_much_there_is(
        tw: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sample() with TIME_WAIT many enough to be dumped apart (SPLIT_TIME_WAIT_AT), beside few or many other
    sockets: the first sample's one filtered dump asks every inbound state but TIME_WAIT."""
    from connwatch import collect as collect_module
    from connwatch.clock import SystemClock
    from connwatch.collect import CollectOptions, sample
    from connwatch.sources import netlink
    from connwatch.sources.procfs import ProcFS

    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "sockstat").write_text(f"sockets: used 20\nTCP: inuse 10 orphan 0 tw {tw} alloc 12 mem 1\n")
    (tmp_path / "net" / "sockstat6").write_text("TCP6: inuse 2\n")
    ports = LISTEN_PORTS | {46910}  # the recorded TIME_WAIT socket's local port made a listening one
    kernel = _Kernel(ports)
    monkeypatch.setattr(netlink, "open_socket", lambda: kernel)
    monkeypatch.setattr(collect_module, "SPLIT_TIME_WAIT_AT", 90)
    monkeypatch.setattr(collect_module, "_first_dump", lambda *_: [  # (the recording holds no listener)
        Listener(4, "0.0.0.0", port, 0, 128, 0, 1, 0, 1) for port in sorted(ports)])
    snap = sample(SystemClock(), CollectOptions(owners=False, inbound_only=True), ProcFS(tmp_path))
    assert [states for on, states in kernel.asked if on] == [ASKED]
    assert snap.sockets is not None and snap.sockets.inbound_only and snap.sockets.by_state.get("ESTABLISHED")
    assert "TIME_WAIT" not in snap.sockets.by_state
    whole = sample(SystemClock(), CollectOptions(owners=False), ProcFS(tmp_path))  # (a full sample has it)
    assert whole.sockets is not None and whole.sockets.by_state.get("TIME_WAIT")
