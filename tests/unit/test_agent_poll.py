"""The own namespace's listener poll between full samples: unchanged replies give the last poll's tuple
itself (agent/poll.py), and the agent then keeps that poll's peaks and owned copies (agent/loop.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.agent.poll import ListenerPoller
from connwatch.clock import Clock, SystemClock
from connwatch.model import Listener, Process
from connwatch.rules.config import load_config
from connwatch.sources import netlink

FIX = Path(__file__).parents[1] / "fixtures" / "netlink"
PROC = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")
RQUEUE = 16 + 56  # nlmsghdr + inet_diag_msg's idiag_rqueue


class _Dumps:
    """A netlink socket answering each request with the next recorded dump (a list of chunks)."""

    def __init__(self, dumps: list[list[bytes]]) -> None:
        self.dumps, self.chunks = dumps, list[bytes]()

    def send(self, data: bytes, /) -> int:
        self.chunks = list(self.dumps.pop(0))
        return len(data)

    def recv(self, bufsize: int, /) -> bytes:
        return self.chunks.pop(0)

    def close(self) -> None:
        pass


def _recorded() -> tuple[bytes, bytes]:
    """The recorded IPv4 listener reply and the end of its dump (tests/fixtures/netlink/listeners.hex)."""
    chunks = [bytes.fromhex(line) for line in (FIX / "listeners.hex").read_text().split()]
    return chunks[0], chunks[1]


def _queued(reply: bytes, queue: int) -> bytes:
    return reply[:RQUEUE] + struct.pack("=I", queue) + reply[RQUEUE + 4:]


def test_unchanged_replies_give_the_last_tuple_and_a_changed_one_a_new_listener(monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    reply, done = _recorded()
    sock = _Dumps([[reply, done], [reply, done], [_queued(reply, 3), done], [_queued(reply, 3), done]])
    monkeypatch.setattr(netlink, "open_socket", lambda: sock)
    poller = ListenerPoller("/proc", use_netlink=True)
    clock = SystemClock()
    first = poller.poll(clock)
    assert len(first) == 1 and first[0].queue == 6 and first[0].port == 8080
    assert poller.poll(clock) is first  # the same bytes: the same tuple, the same Listener
    changed = poller.poll(clock)
    assert changed is not first and changed[0].queue == 3 and changed[0].identity == first[0].identity
    assert poller.poll(clock) is changed and poller.last is changed


class _Poller:
    """The own namespace's poll (agent/poll.py ListenerPoller.poll): what `answer` holds."""

    def __init__(self) -> None:
        self.answer: tuple[Listener, ...] = ()
        self.last: tuple[Listener, ...] = ()

    def poll(self, clock: Clock) -> tuple[Listener, ...]:
        self.last = self.answer
        return self.answer

    def close(self) -> None:
        pass


def test_a_repeated_own_poll_keeps_its_peaks_and_owned_copy_until_the_next_full_sample(tmp_path: Path) -> None:
    opts = AgentOptions(state_dir=tmp_path / "state", listen_port=0, proc_root=PROC, use_netlink=False)
    agent = Agent(opts, load_config(None), SystemClock())
    poller = _Poller()
    agent.poller = poller  # type: ignore[assignment]
    agent.full_sample()
    idle = (Listener(4, "0.0.0.0", 9000, 0, 128, 0, 77001, 0, 5),)
    queued = (Listener(4, "0.0.0.0", 9000, 7, 128, 0, 77001, 0, 5),)
    key = idle[0].identity
    owner = Process(pid=4242, command="server")
    agent.known.owners = {key: Listener(4, "0.0.0.0", 9000, 0, 128, 0, 77001, 0, 5, owner)}
    poller.answer = idle
    agent.listener_poll()
    first = agent._own_polled
    assert agent.peaks[key] == 0 and first is not None and first[1][0].owner == owner
    poller.answer = queued  # a new tuple: its queue is seen
    agent.listener_poll()
    assert agent.peaks[key] == 7
    poller.answer = idle
    agent.listener_poll()
    owned = agent._own_polled
    agent.listener_poll()  # the same tuple again (unchanged replies): its peaks and owned copy stand
    assert agent.peaks[key] == 7 and agent._own_polled is owned
    agent.full_sample()
    assert key not in agent.peaks and agent._own_polled is None
    agent.listener_poll()  # the same tuple as before the sample: counted again in the new interval
    assert agent.peaks[key] == 0 and agent._own_polled is not None and agent._own_polled[0] is idle
    agent.keeper.close()


def test_a_full_samples_listener_dump_reuses_the_listener_of_a_reply_unchanged() -> None:
    from connwatch.collect import netlink_listeners

    reply, done = _recorded()
    sock = _Dumps([[reply, done], [reply, done], [_queued(reply, 3), done]])
    replies: dict[bytes, Listener] = {}
    first = netlink_listeners(sock, [], one_walk=True, replies=replies)
    assert len(first) == 1 and first[0].queue == 6 and list(replies.values()) == first
    again = netlink_listeners(sock, [], one_walk=True, replies=replies)
    assert again[0] is first[0]  # the same bytes: the same Listener
    changed = netlink_listeners(sock, [], one_walk=True, replies=replies)
    assert changed[0] is not first[0] and changed[0].queue == 3 and changed[0] == netlink_listeners(
        _Dumps([[_queued(reply, 3), done]]), [], one_walk=True)[0]
    assert list(replies.values()) == changed  # (only this dump's replies are kept)


def test_the_owned_copy_of_the_same_listener_is_the_same_until_owners_are_scanned_again(tmp_path: Path) -> None:
    opts = AgentOptions(state_dir=tmp_path / "state", listen_port=0, proc_root=PROC, use_netlink=False)
    agent = Agent(opts, load_config(None), SystemClock())
    idle = Listener(4, "0.0.0.0", 9000, 0, 128, 0, 77001, 0, 5)
    owner = Process(pid=4242, command="server")
    agent.known.owners = {idle.identity: Listener(4, "0.0.0.0", 9000, 0, 128, 0, 77001, 0, 5, owner)}
    owned = agent.known.owned(idle)
    assert owned.owner == owner and agent.known.owned(idle) is owned
    equal = Listener(4, "0.0.0.0", 9000, 0, 128, 0, 77001, 0, 5)
    assert agent.known.owned(equal) is not owned and agent.known.owned(equal) == owned  # another object: another copy
    other = Process(pid=4343, command="other")
    agent.known.owners = {idle.identity: Listener(4, "0.0.0.0", 9000, 0, 128, 0, 77001, 0, 5, other)}  # a new scan
    assert agent.known.owned(equal).owner == other
    agent.keeper.close()
