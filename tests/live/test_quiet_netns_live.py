"""Real kernel: a namespace holding only its listeners is not walked again (collect_quiet.py), and
nothing it would have shown is lost.

The agent samples the test's namespace by name (`--netns NAME`, every-namespace sampling's path:
a thread enters it). Two agents judge it side by side: one with the quiet gate (the default), one
without (`--time-wait every-sample`, whose samples dump every state every time). While nothing moves,
the gated one skips the non-listening dump and its summary equals a fresh dump's; a SYN flood (raw
SYNs whose SYN-ACKs are lost, so the handshakes stay SYN_RECV, which sockstat does not count) moves
Tcp InSegs, so the next sample dumps again: it sees the half-open handshakes `ss` shows, and both agents
raise the same alert, at the same sample, with the value the namespace's own nstat counted. A
connection made between samples (a full socket: sockstat's inuse) is seen the same way. Both also hold
when the gated agent serves a quiet namespace's last sample again instead of sampling it (agent/quiet.py,
the default): whatever moves ends that at the next sample.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from connwatch.agent.loop import LISTENERS_SOURCE, Agent
from connwatch.agent.options import AgentOptions
from connwatch.agent.owned import OWNER_REFRESH_S
from connwatch.agent.quiet import REUSED_SAMPLE
from connwatch.clock import SystemClock
from connwatch.collect import REUSED_LISTENERS, TCPF_TIME_WAIT, CollectOptions
from connwatch.collect_netns import REUSE_MAX_S, NetnsListenerPoller, collect_all, discover
from connwatch.collect_quiet import SKIPPED
from connwatch.model import Snapshot
from connwatch.rules.config import load_config
from connwatch.sources import netlink

from .netns import Netns, poll
from .test_rejects_live import _delta, _half_open_setup, _kernel, _settled, _syn_flood, _syn_recv

QUIET = 8095


def _agents(ns: Netns, tmp_path: Path, served: bool = False) -> dict[str, Agent]:
    """"gated": the defaults, but for `served`: without it, a quiet sample is taken afresh (through the quiet
    gate) instead of served again (agent/quiet.py); "every": every state dumped, every namespace sampled and
    judged at every sample."""
    agents = {name: Agent(AgentOptions(state_dir=tmp_path / name, listen_port=0, netns=ns.name,
                                       time_wait_when_due=name == "gated"), load_config(None), SystemClock())
              for name in ("gated", "every")}
    agents["every"].reuse_judgements = False
    agents["every"].netns.quiet = None
    if not served:
        agents["gated"].netns.quiet = None
    return agents


def _sample(agents: dict[str, Agent]) -> dict[str, Snapshot]:
    out = {}
    for name, agent in agents.items():
        agent.full_sample()
        [snap] = agent.prev.values()
        out[name] = snap
    return out


def _skipped(snap: Snapshot) -> bool:
    return any(s.detail == SKIPPED for s in snap.statuses)


def _served(snap: Snapshot) -> bool:
    return any(s.detail.endswith(REUSED_SAMPLE) for s in snap.statuses)


def _quiet(snap: Snapshot, served: bool) -> bool:
    """Whether the namespace was taken for quiet: its sample served again, or (`served` off) taken with no walk."""
    return _served(snap) if served else _skipped(snap) and not _served(snap)


def _close(agents: dict[str, Agent]) -> None:
    for agent in agents.values():
        agent.keeper.close()
        if agent.netns.others is not None:
            agent.netns.others.close()


def _norm(snap: Snapshot) -> list[Any]:
    s = snap.sockets
    assert s is not None
    return [s.total, dict(s.by_state), sorted(map(repr, s.destinations)), sorted(map(repr, s.sources)),
            sorted(map(repr, s.accepts or ()))]


def _no_alert(agents: dict[str, Agent]) -> None:
    """A healthy, quiet namespace: no agent holds an alert, and none was ever raised in its database."""
    for name, agent in agents.items():
        store = agent.keeper.get()
        assert store is not None, name
        assert agent.alerts == () and agent.raised is False, (name, agent.alerts)
        assert store.load_active() == {} and store.history(include_cleared=True) == [], name


def _port_alerts(agent: Agent, port: int) -> list[tuple[str, float]]:
    return sorted((a.attribute, a.value) for a in agent.alerts if a.resource.get("port") == port)


@pytest.mark.parametrize("served", [False, True], ids=["quiet-gate", "served-again"])
def test_a_quiet_namespace_is_skipped_and_a_syn_flood_is_still_seen_at_the_next_sample(
        ns: Netns, tmp_path: Path, served: bool) -> None:
    _half_open_setup(ns, 0, QUIET)  # syncookies off, listener backlog 5, SYN-ACKs toward the sources lost
    agents = _agents(ns, tmp_path, served)
    try:
        first = _sample(agents)  # remembered, nothing judged
        assert not _skipped(first["gated"]) and not _served(first["gated"]) and first["gated"].sockets is not None
        assert first["gated"].sockets.total == 0
        quiet = _sample(agents)
        assert _quiet(quiet["gated"], served) and not _skipped(quiet["every"]) and not _served(quiet["every"])
        assert quiet["gated"].taken_at > first["gated"].taken_at
        assert _norm(quiet["gated"]) == _norm(quiet["every"])
        [fresh] = collect_all(SystemClock(), CollectOptions(owners=False), ns.name)
        assert _norm(quiet["gated"]) == _norm(fresh)  # an empty dump's summary, accept counts included
        assert quiet["gated"].listeners == quiet["every"].listeners
        assert "judgements_reused" not in agents["gated"].samples  # judged: the first judgement of it
        steady = _sample(agents)  # the namespace stands still: its last judgement is reused (agent/steady.py)
        assert _quiet(steady["gated"], served) and agents["gated"].samples["judgements_reused"] == 1
        assert "judgements_reused" not in agents["every"].samples
        assert [(m.attribute, m.resource_key, m.value) for m in agents["gated"].measurements] == \
               [(m.attribute, m.resource_key, m.value) for m in agents["every"].measurements]
        _no_alert(agents)  # the quiet phase: judged (then reused) healthy by both agents

        before = _kernel(ns, QUIET)
        _syn_flood(ns, QUIET, 200)
        moved = _delta(before, _settled(ns, QUIET))
        half_open = _syn_recv(ns, QUIET)
        flooded = _sample(agents)
        assert not _skipped(flooded["gated"]) and not _served(flooded["gated"])  # Tcp InSegs moved: dumped again
        for snap in flooded.values():
            assert snap.sockets is not None and snap.sockets.by_state.get("SYN_RECV") == half_open > 0
        full = moved["TcpExtTCPReqQFullDrop"]
        assert full > 0 and half_open + full == 200, moved
        alerts = {name: _port_alerts(agent, QUIET) for name, agent in agents.items()}
        assert alerts["gated"] == alerts["every"], alerts
        assert ("BacklogRejectsByPort", full) in alerts["gated"], alerts  # at the first sample after the flood
    finally:
        _close(agents)


CONNECT = """import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("served", [False, True], ids=["quiet-gate", "served-again"])
def test_a_connection_made_between_samples_ends_the_skipping(ns: Netns, tmp_path: Path, served: bool) -> None:
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")  # never accepts: the connection waits
    agents = _agents(ns, tmp_path, served)
    client = None
    try:
        _sample(agents)
        assert _quiet(_sample(agents)["gated"], served)
        _no_alert(agents)
        client = ns.popen([sys.executable, "-c", CONNECT, "127.0.0.1", str(QUIET)], stdin=-1)
        assert client.stdout is not None and client.stdout.readline().startswith("READY")
        assert poll(lambda: len(ns.run(["ss", "-tanH", "state", "established"]).stdout.splitlines()) == 2, 5)
        seen = _sample(agents)
        assert not _skipped(seen["gated"]) and not _served(seen["gated"])
        established = len(ns.run(["ss", "-tanH", "state", "established"]).stdout.splitlines())
        for snap in seen.values():
            assert snap.sockets is not None and snap.sockets.by_state.get("ESTABLISHED") == established == 2
            [lst] = snap.listeners
            assert lst.queue == 1
        assert _norm(seen["gated"]) == _norm(seen["every"])
    finally:
        if client is not None:
            client.communicate("\n", timeout=10)
        _close(agents)


# Runs an Agent in its namespace and records every request its samples send to the kernel: each
# netlink socket the collector opens (sources.netlink.open_socket, looked up at each sample) is wrapped,
# its send() noting the request's nlmsg type and state mask (include/uapi/linux/inet_diag.h).
ONE_WALK_AGENT = """import json, struct, sys
from pathlib import Path
from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.clock import SystemClock
from connwatch.rules.config import load_config
from connwatch.sources import netlink
sent = []
opened = netlink.open_socket
class Seen:
    def __init__(self, sock):
        self.sock = sock
    def send(self, data):
        kind = struct.unpack_from("=IH", data)[1]
        # states: legacy inet_diag_req after family..ext (4) and the sockid (48); v2 after 4 + pad (4)
        states = struct.unpack_from("=I", data, 16 + (52 if kind == netlink.TCPDIAG_GETSOCK else 4))[0]
        sent.append([kind, states])
        return self.sock.send(data)
    def recv(self, size):
        return self.sock.recv(size)
    def close(self):
        self.sock.close()
netlink.open_socket = lambda: Seen(opened())
a = Agent(AgentOptions(state_dir=Path(sys.argv[1]), listen_port=0), load_config(None), SystemClock())
out = []
for _ in range(3):
    sent.clear()
    a.full_sample()
    [s] = a.prev.values()
    out.append({"sent": list(sent), "families": sorted(x.family for x in s.listeners),
                "states": dict(s.sockets.by_state), "ok": all(st.ok for st in s.statuses if "netlink" in st.name)})
a.keeper.close()
print(json.dumps(out))
"""


def test_the_own_namespace_agent_dumps_both_families_in_one_walk(ns: Netns, tmp_path: Path) -> None:
    """`--netns own` (collect() in the agent's namespace) asks the kernel for both families at once: each
    sample sends one legacy request (TCPDIAG_GETSOCK, both families) for the listeners, one for the other
    sockets but TIME_WAIT and, when TIME_WAIT is due (the first two samples, which have no TIME_WAIT entry
    rate yet to compare), one for TIME_WAIT; when it is not (the third), one for every state but LISTEN with
    the program that passes only the inbound TIME_WAIT (collect_filtered._one_walk); never a
    per-family SOCK_DIAG_BY_FAMILY; the listeners of both families and the sockets are still all seen (as
    `ss` shows them)."""
    code = ("import socket, sys\n"
            f"a = socket.socket(socket.AF_INET6); a.bind(('::1', {QUIET})); a.listen(5)\n"
            f"b = socket.socket(); b.bind(('127.0.0.1', {QUIET})); b.listen(5)\n"
            f"c = socket.create_connection(('::1', {QUIET})); d = socket.create_connection(('127.0.0.1', {QUIET}))\n"
            "print('READY', flush=True); sys.stdin.readline()\n")
    proc = ns.popen([sys.executable, "-c", code], stdin=-1)
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    try:
        out = json.loads(ns.run([sys.executable, "-c", ONE_WALK_AGENT, str(tmp_path)]).stdout)
        established = len(ns.run(["ss", "-tanH", "state", "established"]).stdout.splitlines())
    finally:
        proc.communicate("\n", timeout=10)
    legacy, listen, others = netlink.TCPDIAG_GETSOCK, netlink.TCPF_LISTEN, netlink.TCPF_ALL_BUT_LISTEN
    due = [[legacy, listen], [legacy, others & ~TCPF_TIME_WAIT], [legacy, TCPF_TIME_WAIT]]
    assert [x["sent"] for x in out] == [due, due, [due[0], [legacy, others]]], out
    for got in out:
        assert {k: got[k] for k in ("families", "states", "ok")} == {
            "families": [4, 6], "states": {"ESTABLISHED": established}, "ok": True}, out
    assert established == 4


def test_the_listener_poll_reuses_a_dump_only_while_nothing_moved(ns: Netns) -> None:
    """The poll across namespaces answers from the last dump while the namespace's sockstat, sockstat6
    and snmp are byte-for-byte unchanged and it holds only listeners; a connection waiting in the queue
    is polled (queue 1, as `ss -ltn` shows), and so on while it waits."""
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")  # never accepts
    inode = os.stat(f"/run/netns/{ns.name}").st_ino
    poller = NetnsListenerPoller()
    client = None
    try:
        poller.refresh(ref for ref, _ in discover(CollectOptions())[0] if ref.inode == inode)
        first = poller.poll()[inode]
        assert first is not None and [(x.port, x.queue, x.backlog) for x in first] == [(QUIET, 0, 5)]
        assert poller.poll()[inode] == first and poller.reused == 1
        client = ns.popen([sys.executable, "-c", CONNECT, "127.0.0.1", str(QUIET)], stdin=-1)
        assert client.stdout is not None and client.stdout.readline().startswith("READY")
        for _ in range(2):
            [lst] = poller.poll()[inode] or ()
            assert lst.queue == 1 == int(ns.run(["ss", "-ltnH", f"sport = :{QUIET}"]).stdout.split()[1])
        assert poller.reused == 1
    finally:
        if client is not None:
            client.communicate("\n", timeout=10)
        poller.close()


def test_a_full_sample_dump_serves_the_next_polls_only_while_nothing_moved(ns: Netns) -> None:
    """The agent hands each full sample's LISTEN dump to the poller with the probe read before the sample
    (NetnsListenerPoller.adopt): the next polls answer from it, not from dumps of their own, until a
    connection waits in the queue (then polled: queue 1, as `ss -ltn` shows)."""
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")  # never accepts
    inode = os.stat(f"/run/netns/{ns.name}").st_ino
    found = [(ref, info) for ref, info in discover(CollectOptions())[0] if ref.inode == inode]
    poller = NetnsListenerPoller()
    client = None
    try:
        poller.refresh(ref for ref, _ in found)
        probes = poller.probe_all()
        [snap] = collect_all(SystemClock(), CollectOptions(owners=False), f"/run/netns/{ns.name}")
        assert [(x.port, x.queue, x.backlog) for x in snap.listeners] == [(QUIET, 0, 5)]
        poller.adopt(inode, probes[inode], snap.listeners)
        assert poller.poll()[inode] is snap.listeners and poller.reused == 1  # no dump of its own
        client = ns.popen([sys.executable, "-c", CONNECT, "127.0.0.1", str(QUIET)], stdin=-1)
        assert client.stdout is not None and client.stdout.readline().startswith("READY")
        [lst] = poller.poll()[inode] or ()
        assert lst.queue == 1 == int(ns.run(["ss", "-ltnH", f"sport = :{QUIET}"]).stdout.split()[1])
        assert poller.reused == 1
        queued = poller.probe_all()
        poller.adopt(inode, queued[inode], (lst,))  # a queue: never adopted (the poll must see it drain)
        assert poller.poll()[inode] == (lst,) and poller.reused == 1  # dumped again (reused would be 2)
    finally:
        if client is not None:
            client.communicate("\n", timeout=10)
        poller.close()


def _listener_status(snap: Snapshot) -> str:
    [status] = [s for s in snap.statuses if s.name == LISTENERS_SOURCE]
    assert status.ok
    return status.detail


def test_a_quiet_namespaces_full_samples_take_its_last_dumps_listeners_until_something_moves(
        ns: Netns, tmp_path: Path) -> None:
    """A namespace holding only listeners, nothing moving: its full samples take the listeners of its last
    LISTEN dump (NetnsListenerPoller.known) instead of walking the host-wide listening hash; a new listener
    (a socket hashed: sockstat's inuse) is dumped at the next sample; and a dump at least every REUSE_MAX_S."""
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")
    agents = _agents(ns, tmp_path)
    gated = agents["gated"]
    try:
        first = _sample(agents)["gated"]
        assert _listener_status(first) == ""  # dumped
        quiet = [_sample(agents) for _ in range(2)]
        for got in quiet:
            assert _skipped(got["gated"]) and _listener_status(got["gated"]) == REUSED_LISTENERS
            assert got["gated"].listeners == got["every"].listeners == first.listeners  # as a dump shows them
            assert _listener_status(got["every"]) == ""  # every-sample: no quiet gate, so always dumped
        assert [(x.port, x.queue, x.backlog) for x in quiet[-1]["gated"].listeners] == [(QUIET, 0, 5)]
        ns.python("listener.py", "--port", str(QUIET + 1), "--backlog", "7")
        opened = _sample(agents)["gated"]
        assert _listener_status(opened) == ""  # sockstat's inuse moved: dumped
        assert sorted((x.port, x.backlog) for x in opened.listeners) == [(QUIET, 5), (QUIET + 1, 7)]
        again = _sample(agents)["gated"]
        assert _listener_status(again) == REUSED_LISTENERS and again.listeners == opened.listeners
        assert gated.netns.others is not None
        real = gated.netns.others.clock
        gated.netns.others.clock = lambda: real() + REUSE_MAX_S * 0.6  # a sample that takes them does not renew them,
        gated.known.at -= OWNER_REFRESH_S  # not even one that scans owners (which copies the listeners):
        assert _listener_status(_sample(agents)["gated"]) == REUSED_LISTENERS
        assert gated.known.at > 0  # (it did scan)
        gated.netns.others.clock = lambda: real() + REUSE_MAX_S  # the last dump is REUSE_MAX_S old
        assert _listener_status(_sample(agents)["gated"]) == ""
        gated.netns.others.clock = real
        _no_alert(agents)
    finally:
        _close(agents)


UDP = """import socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
a = socket.socket(fam, socket.SOCK_DGRAM); a.bind((sys.argv[2], 0))
print("READY", flush=True)
if sys.argv[3] == "send":
    a.sendto(b"x", a.getsockname()); a.recv(10)
    print("SENT", flush=True)
sys.stdin.readline()
"""


def _udp(ns: Netns, family: str, address: str, send: bool) -> Any:
    proc = ns.popen([sys.executable, "-c", UDP, family, address, "send" if send else "hold"], stdin=-1)
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    if send:
        assert proc.stdout.readline().startswith("SENT")
    return proc


def test_a_quiet_namespaces_sample_is_served_again_until_anything_moves(ns: Netns, tmp_path: Path) -> None:
    """A namespace holding only an idle listener: from its second sample on, its last sample serves again (the
    time is the new sample's, the values are those a fresh sample reads); a UDP socket opened with no packet
    (sockstat's UDP inuse), an IPv6 UDP datagram (snmp6; no TCP segment, no IPv4 packet), a new listener and
    REUSE_MAX_S each make the next sample a fresh one, and a served sample is what a fresh one reads."""
    first_listener = ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")
    agents = _agents(ns, tmp_path, served=True)
    gated = agents["gated"]
    held = []
    try:
        first = _sample(agents)["gated"]
        assert not _served(first)
        again = _sample(agents)
        assert _served(again["gated"]) and not _served(again["every"])
        assert again["gated"].taken_at > first.taken_at and again["gated"].counters is first.counters
        fresh = again["every"]
        assert again["gated"].listeners == fresh.listeners and _norm(again["gated"]) == _norm(fresh)
        assert {k: v for k, v in again["gated"].counters.items() if not k.startswith("Ip")} == \
               {k: v for k, v in fresh.counters.items() if not k.startswith("Ip")}
        assert again["gated"].sysctls == fresh.sysctls and again["gated"].conntrack_count == fresh.conntrack_count
        for family, address, send in (("4", "127.0.0.1", False), ("6", "::1", True)):
            held.append(_udp(ns, family, address, send))
            moved = _sample(agents)["gated"]
            assert not _served(moved), (family, send)
            assert _served(_sample(agents)["gated"]), (family, send)  # quiet again: served from the next on
        second_listener = ns.python("listener.py", "--port", str(QUIET + 1), "--backlog", "7")
        opened = _sample(agents)["gated"]
        assert not _served(opened) and sorted(x.port for x in opened.listeners) == [QUIET, QUIET + 1]
        assert _served(_sample(agents)["gated"])
        scanned_at = gated.known.at
        gated.known.at -= OWNER_REFRESH_S  # a sample that scans owners serves too, its listeners' owners named
        scanned = _sample(agents)["gated"]  # by this scan
        assert gated.known.at > scanned_at and _served(scanned)
        assert {(x.port, x.owner.pid if x.owner else None) for x in scanned.listeners} == {
            (QUIET, first_listener.pid), (QUIET + 1, second_listener.pid)}
        assert gated.netns.quiet is not None
        real = gated.netns.quiet.clock
        gated.netns.quiet.clock = lambda: real() + REUSE_MAX_S  # the kept sample is REUSE_MAX_S old
        assert not _served(_sample(agents)["gated"])
        gated.netns.quiet.clock = real
        assert gated.netns.quiet.reused >= 4 and gated.samples["netns_served_again"] == gated.netns.quiet.reused
        _no_alert(agents)
    finally:
        for proc in held:
            proc.communicate("\n", timeout=10)
        _close(agents)
