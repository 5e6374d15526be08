"""collect_quiet's probe: only the namespace's own values count (sockstat's alloc and mem are host-wide).

The texts are this machine's /proc/thread-self/net/sockstat, sockstat6 and snmp (kernel 6.18, a test
namespace holding one listener; of snmp only its two Tcp lines, as a fresh namespace shows them), read
while writing this test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from connwatch.collect import NETLINK
from connwatch.collect_quiet import SKIPPED, QuietSignals, empty_proof, probe_inuse, probe_tw, read_probe, signals_of
from connwatch.model import Snapshot, SocketSummary, SourceStatus
from connwatch.record import replace

from .builders import listener, snapshot

SOCKSTAT = (b"sockets: used 2\nTCP: inuse 1 orphan 0 tw 0 alloc 12018 mem 2379\nUDP: inuse 0 mem 0\n"
            b"UDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n")
SOCKSTAT6 = b"TCP6: inuse 0\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n"
SNMP = (b"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab "
        b"InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\nTcp: 1 200 120000 -1 0 0 0 0 0 0 0 0 0 0 0\n")


def _fds(tmp: Path, *texts: bytes) -> tuple[int, ...]:
    fds = []
    for i, text in enumerate(texts):
        path = tmp / f"f{i}"
        path.write_bytes(text)
        fds.append(os.open(path, os.O_RDONLY))
    return tuple(fds)


def test_host_wide_fields_do_not_change_the_probe_and_own_ones_do(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    base = _fds(tmp_path / "a", SOCKSTAT, SOCKSTAT6, SNMP)
    other = SOCKSTAT.replace(b"alloc 12018 mem 2379", b"alloc 13000 mem 99").replace(b"orphan 0", b"orphan 7")
    (tmp_path / "b").mkdir()
    host_moved = _fds(tmp_path / "b", other, SOCKSTAT6, SNMP)
    (tmp_path / "c").mkdir()
    tw_moved = _fds(tmp_path / "c", SOCKSTAT.replace(b"tw 0", b"tw 3"), SOCKSTAT6, SNMP)
    (tmp_path / "d").mkdir()
    seg_moved = _fds(tmp_path / "d", SOCKSTAT, SOCKSTAT6, SNMP.replace(b"-1 0 0 0 0 0 0", b"-1 0 0 0 0 0 1"))
    try:
        probe = read_probe(base)
        assert probe is not None and probe_inuse(probe) == 1 and probe_tw(probe) == 0
        assert read_probe(host_moved) == probe
        moved = read_probe(tw_moved)
        assert moved is not None and moved != probe and probe_tw(moved) == 3
        assert read_probe(seg_moved) not in (None, probe)
    finally:
        for fd in (*base, *host_moved, *tw_moved, *seg_moved):
            os.close(fd)


def test_a_probe_without_tcp_lines_is_none(tmp_path: Path) -> None:
    fds = _fds(tmp_path, b"sockets: used 2\n", SOCKSTAT6, SNMP)
    try:
        assert read_probe(fds) is None
    finally:
        for fd in fds:
            os.close(fd)


def test_signals_need_every_value_and_add_both_families() -> None:
    counters = {"Tcp.InSegs": 5, "Tcp.OutSegs": 4, "TcpExt.TW": 9}
    sockstat = {"TCP.inuse": 2, "TCP6.inuse": 3, "TCP.tw": 0, "TCP.alloc": 40}
    got = signals_of(counters, sockstat)
    assert got is not None and got.inuse == 5 and got.tw == 0
    assert got.tcp == (("Tcp.InSegs", 5), ("Tcp.OutSegs", 4))  # TcpExt is not part of it
    assert signals_of(counters, {k: v for k, v in sockstat.items() if k != "TCP6.inuse"}) is None
    assert signals_of({"TcpExt.TW": 9}, sockstat) is None


PROC_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "proc"


def test_many_time_wait_reads_sockstat_before_the_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample dumps TIME_WAIT apart from the other states from SPLIT_TIME_WAIT_AT TIME_WAIT sockets on
    (sockstat's tw; real file: tests/fixtures/proc/insights_rhel, tw 2030); an unreadable sockstat: not."""
    from connwatch import collect as collect_module
    from connwatch.sources.procfs import ProcFS

    proc = ProcFS(PROC_FIXTURES / "insights_rhel")
    monkeypatch.setattr(collect_module, "SPLIT_TIME_WAIT_AT", 2030)
    assert collect_module._many_time_wait(proc)
    monkeypatch.setattr(collect_module, "SPLIT_TIME_WAIT_AT", 2031)
    assert not collect_module._many_time_wait(proc)
    monkeypatch.setattr(collect_module, "SPLIT_TIME_WAIT_AT", 1)
    assert not collect_module._many_time_wait(ProcFS(PROC_FIXTURES / "no-such-tree"))


def test_time_wait_that_outnumbers_the_others_is_dumped_with_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dump of every state keeps TIME_WAIT in it where TIME_WAIT outnumbers the other sockets (sockstat's
    inuse: 1365 beside tw 2030) TIME_WAIT_PER_OTHER to one (its runs keyed by columns there too)."""
    from connwatch import collect as collect_module
    from connwatch.sources.procfs import ProcFS

    proc = ProcFS(PROC_FIXTURES / "insights_rhel")
    monkeypatch.setattr(collect_module, "SPLIT_TIME_WAIT_AT", 2030)
    monkeypatch.setattr(collect_module, "TIME_WAIT_PER_OTHER", 2)  # 2030 < 2 * 1365: apart
    assert collect_module._many_time_wait(proc)
    monkeypatch.setattr(collect_module, "TIME_WAIT_PER_OTHER", 1)  # 2030 >= 1365: one dump
    assert not collect_module._many_time_wait(proc)


def test_counters_are_read_between_the_listener_dump_and_the_other_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-listener drops and the namespace's counters they are reconciled with (attributes/rejects.py)
    come from one moment: the counters are read right after the listener dump, before the other sockets'
    dumps (a burst of re-sent SYNs during those once left rejections unattributed); the /proc fallback too."""
    from connwatch import collect as collect_module
    from connwatch.clock import SystemClock
    from connwatch.sources import netlink
    from connwatch.sources.procfs import ProcFS
    from connwatch.sources.procfs import read_counters as real

    calls: list[str] = []

    def called(name: str, result: object) -> Any:
        def record(*_args: object) -> object:
            calls.append(name)
            return result
        return record

    monkeypatch.setattr(collect_module, "read_counters", lambda proc: called("counters", real(proc))())
    monkeypatch.setattr(netlink, "open_socket", _FakeSocket)
    monkeypatch.setattr(collect_module, "_first_dump", called("listeners", []))
    monkeypatch.setattr(collect_module, "_all_sockets", called("sockets", None))
    proc = ProcFS(PROC_FIXTURES / "local_6x")
    snap = collect_module.sample(SystemClock(), collect_module.CollectOptions(owners=False), proc)
    assert calls == ["listeners", "counters", "sockets"]
    assert snap.counters == real(proc)[0] and snap.counters  # (the fixture's counters, read once)
    calls.clear()
    opts = collect_module.CollectOptions(owners=False, use_netlink=False, sockets=False)
    collect_module.sample(SystemClock(), opts, proc)
    assert calls == ["counters"]


def test_the_time_wait_plan_comes_from_the_counters_read_after_the_listener_dump(monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    """The agent's TIME_WAIT plan (TcpExt TW, sockstat's tw) is made right after the listener dump, before the
    other dumps: TcpExt TW from the sample's own counters (net/netstat read once per sample, where the plan
    once read it again before any dump), sockstat's tw read then, sockstat read again after the dumps."""
    from connwatch import collect as collect_module
    from connwatch import collect_filtered
    from connwatch.clock import SystemClock
    from connwatch.collect_tw import TimeWaitCaches
    from connwatch.sources import netlink
    from connwatch.sources.procfs import ProcFS

    calls: list[str] = []

    class Watched(ProcFS):
        def read_text(self, rel: str) -> str:
            calls.append(rel)
            return super().read_text(rel)

    plans: list[Any] = []

    def split(sock: object, ports: object, tw_delay: object, limits: object, one_walk: object, plan: Any,
              split: object) -> None:
        calls.append("sockets")
        plans.append(plan)

    def listeners(*_args: object) -> list[object]:
        calls.append("listeners")
        return []

    monkeypatch.setattr(netlink, "open_socket", _FakeSocket)
    monkeypatch.setattr(collect_module, "_first_dump", listeners)
    monkeypatch.setattr(collect_filtered, "_split_sockets", split)
    caches = TimeWaitCaches()
    opts = collect_module.CollectOptions(owners=False, time_wait=caches)
    snap = collect_module.sample(SystemClock(), opts, Watched(PROC_FIXTURES / "local_6x"))
    read = [c for c in calls if not c.startswith("sys/")]
    assert read[:read.index("sockets") + 1] == ["listeners", "net/netstat", "net/snmp", "net/snmp6", "net/sockstat",
                                                "sockets"]
    assert read.count("net/netstat") == 1 and read[read.index("sockets") + 1:][:2] == ["net/sockstat",
                                                                                        "net/sockstat6"]
    [plan] = plans
    assert plan.cache is caches.get(0) and plan.signals.now == snap.monotonic
    assert plan.signals.entered == snap.counters["TcpExt.TW"] == 8 and plan.signals.tw == snap.sockstat["TCP.tw"]


class _FakeSocket:
    def close(self) -> None:
        pass


# -- a pair's second sample (check): empty_proof ---------------------------------------------------------


def _pair_first(total: int = 0, tw: int = 0, inuse: int = 1, detail: str = "", ok: bool = True,
                dumped: bool = True) -> Snapshot:
    base = snapshot(1.0, (listener(8080),), {"Tcp.InSegs": 9, "Tcp.OutSegs": 9, "TcpExt.TW": 4},
                    sockets=SocketSummary(total, {"SYN_RECV": total} if total else {}, inbound_only=True)
                    if dumped else None)
    statuses = (SourceStatus(f"{NETLINK} listeners", True), SourceStatus(f"{NETLINK} sockets", ok, detail))
    return replace(base, statuses=statuses, sockstat={"TCP.inuse": inuse, "TCP6.inuse": 0, "TCP.tw": tw})


def test_only_a_dump_that_found_nothing_but_the_listeners_proves_the_next_one_empty() -> None:
    proof = empty_proof(_pair_first())
    assert proof == QuietSignals((("Tcp.InSegs", 9), ("Tcp.OutSegs", 9)), 1, 0)  # Tcp only, not TcpExt
    assert empty_proof(_pair_first(total=1)) is None  # a half-open handshake on the listening port
    assert empty_proof(_pair_first(tw=1)) is None  # TIME_WAIT (the inbound-only dump leaves it out)
    assert empty_proof(_pair_first(inuse=2)) is None  # a full socket the inbound-only dump does not show
    assert empty_proof(_pair_first(dumped=False)) is None
    assert empty_proof(_pair_first(ok=False)) is None  # the dump failed: its empty summary proves nothing
    # a sample that skipped its dump had the signals of an earlier empty dump's proof: it carries that proof on
    assert empty_proof(_pair_first(detail=SKIPPED)) == proof
    assert empty_proof(replace(_pair_first(), counters={})) is None  # no Tcp counters to compare
    assert empty_proof(replace(_pair_first(), sockstat={"TCP.inuse": 1, "TCP.tw": 0})) is None  # no sockstat6
