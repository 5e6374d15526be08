"""Real kernel: `check`'s second sample does not walk the socket hash again for a namespace whose first sample
held nothing but its listeners while nothing moved (collect_quiet.empty_proof, sample_after_empty), and loses
nothing: a connection made or a SYN flood sent between the two samples is dumped, and judged, as without it.

The samples are taken as `check --netns NAME` takes them (a thread entering the namespace; commands/check.py
_first and _second), then compared with a full dump of the same moment and with what `ss` and the namespace's
own nstat say.
"""

from __future__ import annotations

import sys
from pathlib import Path

from connwatch.clock import SystemClock
from connwatch.collect import CollectOptions
from connwatch.collect_netns import collect_all, collect_listed
from connwatch.collect_quiet import empty_proof
from connwatch.commands.check import _first, _second, resampler
from connwatch.model import Snapshot

from .netns import Netns, poll
from .test_quiet_netns_live import CONNECT, QUIET, _norm, _skipped
from .test_rejects_live import (
    GatedCheck,
    _alerts,
    _delta,
    _half_open_setup,
    _kernel,
    _settled,
    _syn_flood,
    _syn_recv,
)

OPTS = CollectOptions(owners=False)


def _first_sample(ns: Netns) -> tuple[Snapshot, CollectOptions]:
    """The pair's first sample of the namespace, and the options of its second."""
    [first] = collect_all(SystemClock(), _first(OPTS), ns.name)
    return first, _second(OPTS, [first])


def _second_sample(ns: Netns, opts: CollectOptions) -> Snapshot:
    [second] = collect_all(SystemClock(), opts, ns.name)
    return second


def _fresh(ns: Netns) -> Snapshot:
    [fresh] = collect_all(SystemClock(), OPTS, ns.name)
    assert not _skipped(fresh)
    return fresh


def test_an_idle_namespace_is_not_walked_again_and_its_summary_is_an_empty_dumps(ns: Netns) -> None:
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")
    first, opts = _first_sample(ns)
    assert first.sockets is not None and first.sockets.inbound_only and first.sockets.total == 0
    assert empty_proof(first) is not None and opts.empty_before is not None
    assert first.netns is not None and set(opts.empty_before) == {first.netns.inode}
    second = _second_sample(ns, opts)
    assert _skipped(second)
    assert _norm(second) == _norm(_fresh(ns))  # what a dump gives, accept counts included
    assert [x.port for x in second.listeners] == [QUIET]


def test_a_namespace_with_a_connection_at_its_first_sample_has_no_proof(ns: Netns) -> None:
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")  # never accepts: the connection waits
    client = ns.popen([sys.executable, "-c", CONNECT, "127.0.0.1", str(QUIET)], stdin=-1)
    try:
        assert client.stdout is not None and client.stdout.readline().startswith("READY")
        first, opts = _first_sample(ns)
        assert first.sockets is not None and first.sockets.total == 1  # the server side, on the listening port
        assert empty_proof(first) is None and opts.empty_before is None
    finally:
        client.communicate("\n", timeout=10)


def test_a_connection_made_between_the_samples_is_dumped(ns: Netns) -> None:
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")
    _first, opts = _first_sample(ns)
    assert opts.empty_before
    client = ns.popen([sys.executable, "-c", CONNECT, "127.0.0.1", str(QUIET)], stdin=-1)
    try:
        assert client.stdout is not None and client.stdout.readline().startswith("READY")
        assert poll(lambda: len(ns.run(["ss", "-tanH", "state", "established"]).stdout.splitlines()) == 2, 5)
        second = _second_sample(ns, opts)
        assert not _skipped(second)
        established = len(ns.run(["ss", "-tanH", "state", "established"]).stdout.splitlines())
        assert second.sockets is not None and second.sockets.by_state.get("ESTABLISHED") == established == 2
        [lst] = second.listeners
        assert lst.queue == 1
    finally:
        client.communicate("\n", timeout=10)


def test_a_syn_flood_between_the_samples_is_dumped(ns: Netns) -> None:
    _half_open_setup(ns, 0, QUIET)  # syncookies off, backlog 5, SYN-ACKs lost: the handshakes stay SYN_RECV
    _first, opts = _first_sample(ns)
    assert opts.empty_before  # (request sockets are not in sockstat: Tcp InSegs is what tells)
    _syn_flood(ns, QUIET, 200)
    _settled(ns, QUIET)
    half_open = _syn_recv(ns, QUIET)
    second = _second_sample(ns, opts)
    assert not _skipped(second)
    assert second.sockets is not None and second.sockets.by_state.get("SYN_RECV") == half_open > 0


def test_check_of_a_namespace_flooded_between_its_samples_alerts_on_its_own_counters(
        ns: Netns, tmp_path: Path) -> None:
    """The command, from the host's namespace (`--netns NAME`), held after its first sample of the idle namespace
    (proof made) while a SYN flood is sent: the verdict is the namespace's own count, as without the proof."""
    _half_open_setup(ns, 0, QUIET)
    gated = GatedCheck(ns, tmp_path, netns=ns.name, interval="0.5")
    before = _kernel(ns, QUIET)
    _syn_flood(ns, QUIET, 200)
    moved = _delta(before, _settled(ns, QUIET))
    code, report = gated.finish()
    full = moved["TcpExtTCPReqQFullDrop"]
    assert full > 0 and _syn_recv(ns, QUIET) + full == 200, moved
    [alert] = _alerts(report, "BacklogRejectsByPort", QUIET)
    assert alert["value"] == full and alert["netns"]["name"] == ns.name, (alert["value"], moved)
    assert code == 2


def test_watch_carries_the_proof_from_sample_to_sample_until_something_moves(ns: Netns) -> None:
    """`check --watch`: each sample is judged against the one before; an idle namespace is walked at the first
    sample only, while nothing moves, and a connection made between two samples is dumped at the next one."""
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "5")
    listed: list[frozenset[str] | None] = [None]
    first = collect_all(SystemClock(), _first(OPTS), ns.name)
    again = resampler(lambda o: collect_listed(SystemClock(), o, ns.name), OPTS, first, listed)
    skipped = [_skipped(again()[0]) for _ in range(3)]
    assert skipped == [True, True, True]
    client = ns.popen([sys.executable, "-c", CONNECT, "127.0.0.1", str(QUIET)], stdin=-1)
    try:
        assert client.stdout is not None and client.stdout.readline().startswith("READY")
        assert poll(lambda: len(ns.run(["ss", "-tanH", "state", "established"]).stdout.splitlines()) == 2, 5)
        [moved] = again()
        assert not _skipped(moved)
        assert moved.sockets is not None and moved.sockets.by_state.get("ESTABLISHED") == 2
        [still] = again()  # the connection stands: a socket besides the listener, so no proof
        assert not _skipped(still) and still.sockets is not None and still.sockets.total == 2
    finally:
        client.communicate("\n", timeout=10)


def test_check_of_a_healthy_namespace_connected_to_between_its_samples_raises_nothing(
        ns: Netns, tmp_path: Path) -> None:
    """The flood test's shape, healthy: the same idle namespace (proof made at the first sample), 50 connections
    between the samples to a listener that accepts them. Nothing was rejected (the namespace's own nstat), and
    the check says so: exit 0, no alert."""
    ns.python("listener.py", "--port", str(QUIET), "--backlog", "64", "--accept")
    gated = GatedCheck(ns, tmp_path, netns=ns.name, interval="0.5")
    before = _kernel(ns, QUIET)
    connect = ("import socket, sys\nfor _ in range(50):\n"
               f"    socket.create_connection(('127.0.0.1', {QUIET}), timeout=5).close()\n")
    ns.run([sys.executable, "-c", connect], timeout=60)
    moved = _delta(before, _settled(ns, QUIET))
    code, report = gated.finish()
    assert moved["TcpExtListenOverflows"] == moved["TcpExtTCPReqQFullDrop"] == moved["d"] == 0, moved
    assert [n["name"] for n in report["namespaces"] if not n["own"]] == [ns.name]
    assert report["alerts"] == [] and code == 0, report["alerts"]
