"""agent/quiet.py: which samples serve again, for how long, and what a served one carries (the real kernel's
side, with the probes read for real: tests/live/test_quiet_netns_live.py)."""

from __future__ import annotations

import os
from pathlib import Path

from connwatch.agent.quiet import REUSED_SAMPLE, QuietSamples, quiet, serve_again
from connwatch.collect_netns import NETNS_SOURCE, REUSE_MAX_S
from connwatch.collect_quiet import read_rest
from connwatch.model import NetnsInfo, Snapshot, SocketSummary, SourceStatus
from connwatch.record import replace
from connwatch.sources.netns import NetnsRef

from .builders import listener, snapshot
from .test_collect_quiet import SNMP, SOCKSTAT, SOCKSTAT6, _fds

INODE = 4026532101
PROBE = b"inuse 1 0 tw 0\n" + SNMP  # collect_quiet.read_probe's shape: one listener hashed, no TIME_WAIT
REST = b"UDP: inuse 0\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _snap(inode: int = INODE, own: bool = False, total: int = 0, queue: int = 0, ok: bool = True) -> Snapshot:
    base = snapshot(10.0, (listener(8080, queue=queue),), {"Tcp.InSegs": 5},
                    sockets=SocketSummary(total, {"ESTABLISHED": total} if total else {}))
    statuses = (SourceStatus(NETNS_SOURCE, True, "netns blue", 1.5), SourceStatus("/proc/net/snmp", ok))
    return replace(base, netns=NetnsInfo(inode, name="blue", own=own), statuses=statuses,
                   sockstat={"TCP.inuse": 1, "TCP.tw": 0, "TCP.orphan": 3, "TCP.mem": 7, "UDP.inuse": 0},
                   files_allocated=100)


def _chosen(*inodes: int) -> list[tuple[NetnsRef, NetnsInfo]]:
    return [(NetnsRef(i), NetnsInfo(i, name="blue")) for i in inodes]


def test_only_a_sample_that_found_nothing_but_idle_listeners_is_quiet() -> None:
    assert quiet(_snap(), PROBE)
    assert not quiet(_snap(), None)
    assert not quiet(_snap(own=True), PROBE)  # the own namespace is always sampled
    assert not quiet(_snap(total=1), PROBE)  # a socket besides the listeners
    assert not quiet(_snap(queue=1), PROBE)  # a connection waiting to be accepted
    assert not quiet(_snap(ok=False), PROBE)  # a source that failed is tried again
    assert not quiet(_snap(), PROBE.replace(b"tw 0", b"tw 2"))  # TIME_WAIT
    assert not quiet(_snap(), PROBE.replace(b"inuse 1 0", b"inuse 1 1"))  # a hashed socket no dump showed
    assert not quiet(replace(_snap(), sockets=None), PROBE)  # not dumped


def test_a_kept_sample_serves_while_probes_and_listeners_stand_and_for_at_most_reuse_max_s() -> None:
    clock = Clock()
    kept = QuietSamples(clock)
    snap = _snap()
    chosen = _chosen(INODE)
    kept.keep(chosen, [snap], {INODE: PROBE}, {INODE: REST}, {})
    known = {INODE: snap.listeners}
    clock.now += REUSE_MAX_S - 1
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, known) == {INODE: snap}
    moved = PROBE.replace(b"-1 0 0 0 0 0 0", b"-1 0 0 0 0 0 1")  # a segment
    assert kept.take(chosen, {INODE: moved}, {INODE: REST}, known) == {}
    assert kept.take(chosen, {INODE: PROBE}, {INODE: b"UDP: inuse 1\n"}, known) == {}  # a UDP socket
    assert kept.take(chosen, {INODE: PROBE}, {}, known) == {}  # its rest unreadable now
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, {INODE: (listener(8080),)}) == {}  # dumped again
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, {}) == {}  # the poller's dump is too old
    assert kept.take(_chosen(INODE + 1), {INODE: PROBE}, {INODE: REST}, known) == {}
    clock.now += 1
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, known) == {}  # REUSE_MAX_S old: sampled afresh


def test_a_sample_given_known_listeners_serves_while_the_poller_gives_those_even_if_it_holds_a_copy() -> None:
    """A sample that took the poller's listeners (no dump: collect.REUSED_LISTENERS) may hold a copy of them, with
    owners attached by an owner scan: it serves again while the poller gives the tuple it was given, and it serves
    that very tuple (the agent attaches the owners it knows): with the copy, every poll after every sample took
    the poller's listeners for new ones (~80 namespaces of 50 re-owned and regrouped per sample)."""
    from connwatch.collect import NETLINK, REUSED_LISTENERS
    from connwatch.model import Process

    kept = QuietSamples(Clock())
    given = _snap().listeners
    took = replace(_snap(), listeners=tuple(replace(x, owner=Process(pid=7, command="srv")) for x in given),
                   statuses=(*_snap().statuses, SourceStatus(f"{NETLINK} listeners", True, REUSED_LISTENERS)))
    chosen = _chosen(INODE)
    kept.keep(chosen, [took], {INODE: PROBE}, {INODE: REST}, {INODE: given})
    [(inode, served)] = kept.take(chosen, {INODE: PROBE}, {INODE: REST}, {INODE: given}).items()
    assert inode == INODE and served.listeners is given and served == replace(took, listeners=given)
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, {INODE: took.listeners}) == {}
    kept.keep(chosen, [took], {INODE: PROBE}, {INODE: REST}, {})  # (given none: never served)
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, {INODE: given}) == {}


def test_a_served_sample_keeps_its_time_and_a_fresh_unquiet_one_or_a_namespace_gone_is_forgotten() -> None:
    clock = Clock()
    kept = QuietSamples(clock)
    snap = _snap()
    chosen = _chosen(INODE)
    kept.keep(chosen, [snap], {INODE: PROBE}, {INODE: REST}, {})
    clock.now += REUSE_MAX_S / 2
    kept.keep(chosen, [], {INODE: PROBE}, {INODE: REST}, {})  # served this round (no fresh sample of it)
    clock.now += REUSE_MAX_S / 2
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, {INODE: snap.listeners}) == {}  # not renewed
    kept.keep(chosen, [snap], {INODE: PROBE}, {INODE: REST}, {})
    kept.keep(chosen, [_snap(total=2)], {INODE: PROBE}, {INODE: REST}, {})
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, {INODE: snap.listeners}) == {}
    kept.keep(chosen, [snap], {INODE: PROBE}, {INODE: REST}, {})
    kept.keep([], [], {}, {}, {})
    assert kept.take(chosen, {INODE: PROBE}, {INODE: REST}, {INODE: snap.listeners}) == {}


def test_a_served_sample_is_this_rounds_with_the_own_namespaces_host_wide_values_and_says_so() -> None:
    snap = _snap()
    own = replace(_snap(1, own=True), sockstat={"TCP.orphan": 9, "TCP.mem": 70, "TCP.inuse": 40, "UDP.mem": 2},
                  files_allocated=555)
    info = NetnsInfo(INODE, name="blue", pid=42)
    got = serve_again(snap, info, own, 2000.0, 1995.0)
    assert (got.taken_at, got.monotonic, got.netns, got.files_allocated) == (2000.0, 1995.0, info, 555)
    assert got.sockstat == {"TCP.inuse": 1, "TCP.tw": 0, "TCP.orphan": 9, "TCP.mem": 70, "UDP.inuse": 0}
    assert got.counters is snap.counters and got.listeners is snap.listeners and got.sysctls is snap.sysctls
    [entered] = [s for s in got.statuses if s.name == NETNS_SOURCE]
    assert entered.ok and entered.detail == f"{info.label}; {REUSED_SAMPLE}"
    assert serve_again(snap, info, None, 2000.0, 1995.0).sockstat == snap.sockstat  # no own sample this round


def test_in_order_puts_served_samples_where_their_namespaces_were_chosen() -> None:
    kept = QuietSamples(Clock())
    own, fresh, old = _snap(1, own=True), _snap(7), _snap(INODE)
    chosen = [(NetnsRef(1, own=True), NetnsInfo(1, own=True)), *_chosen(INODE, 7)]
    got = kept.in_order(chosen, [own, fresh], {INODE: old}, 2000.0, 1995.0)
    assert got[0] is own and got[2] is fresh and got[1].taken_at == 2000.0 and got[1].counters is old.counters
    assert kept.reused == 1
    assert kept.in_order(chosen, [own, fresh], {}, 2000.0, 1995.0) == [own, fresh]


SNMP6 = b"Ip6InReceives                   \t0\nIp6OutRequests                  \t0\n"  # (its first two lines here)


def test_the_rest_leaves_out_host_wide_values_and_every_socket_count_and_sees_udp_and_ipv6(tmp_path: Path) -> None:
    texts = {
        "base": (SOCKSTAT, SOCKSTAT6, SNMP, SNMP6),
        "host": (SOCKSTAT.replace(b"alloc 12018 mem 2379", b"alloc 1 mem 2").replace(b"used 2", b"used 9"),
                 SOCKSTAT6, SNMP, SNMP6),
        "udp": (SOCKSTAT.replace(b"UDP: inuse 0", b"UDP: inuse 1"), SOCKSTAT6, SNMP, SNMP6),
        "udp6": (SOCKSTAT, SOCKSTAT6.replace(b"UDP6: inuse 0", b"UDP6: inuse 1"), SNMP, SNMP6),
        "ipv6": (SOCKSTAT, SOCKSTAT6, SNMP, SNMP6.replace(b"Receives                   \t0", b"Receives      \t3")),
    }
    opened: dict[str, tuple[int, ...]] = {}
    try:
        for name, files in texts.items():
            (tmp_path / name).mkdir()
            opened[name] = _fds(tmp_path / name, *files)
        got = {name: read_rest(fds) for name, fds in opened.items()}
        assert got["base"] is not None and got["base"].startswith(b"TCP: inuse 1 tw 0 UDP: inuse 0 UDPLITE")
        assert got["host"] == got["base"]
        assert len({got[n] for n in ("base", "udp", "udp6", "ipv6")}) == 4
        assert read_rest(opened["base"][:3]) is None  # no snmp6 opened
    finally:
        for fds in opened.values():
            for fd in fds:
                os.close(fd)
