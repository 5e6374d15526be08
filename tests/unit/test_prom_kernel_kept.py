"""Each namespace's kernel series kept while unchanged (prom_kernel.KernelRows): the families are those
built afresh, a changed value (a sysctl, a counter) shows in the next build, a vanished namespace's go."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, generate_latest

from connwatch.model import NetnsInfo, Snapshot
from connwatch.outputs.prom_kernel import KernelRows, kernel_families
from connwatch.outputs.prom_netns import ns_values

from .builders import listener, snapshot

BLUE = NetnsInfo(4026532101, "blue", pid=4242, command="python3")
RED = NetnsInfo(4026532102, "red", pid=4343, command="nginx")


def _ns(info: NetnsInfo | None, overflows: int, somaxconn: int = 4096) -> Snapshot:
    snap = snapshot(10.0, (listener(8080),), {"TcpExt.ListenOverflows": overflows, "Tcp.ActiveOpens": 3})
    return dataclasses.replace(snap, netns=info, sysctls=dataclasses.replace(snap.sysctls, somaxconn=somaxconn))


def _text(snaps: list[Snapshot], rows: KernelRows | None) -> str:
    class Fams:
        def collect(self):  # type: ignore[no-untyped-def]
            return kernel_families([(ns_values(s.netns), s) for s in snaps], None, rows)

    reg = CollectorRegistry()
    reg.register(Fams())
    return generate_latest(reg).decode()


def test_kept_rows_give_the_fresh_families_and_every_change() -> None:
    rows = KernelRows()
    rounds = [[_ns(None, 1), _ns(BLUE, 2), _ns(RED, 3)],
              [_ns(None, 1), _ns(BLUE, 2), _ns(RED, 3)],
              [_ns(None, 1), _ns(BLUE, 2, somaxconn=128), _ns(RED, 4)],  # a sysctl and a counter changed
              [_ns(None, 1), _ns(BLUE, 2, somaxconn=128)]]  # red is gone
    texts = []
    for snaps in rounds:
        kept = _text(snaps, rows)
        assert kept == _text(snaps, None)
        texts.append(kept)
    assert texts[0] == texts[1]
    assert 'connwatch_sysctl_net_core_somaxconn{netns="blue"} 4096.0' in texts[1]
    assert 'connwatch_sysctl_net_core_somaxconn{netns="blue"} 128.0' in texts[2]
    assert 'connwatch_netstat_tcpext_listen_overflows_total{netns="red"} 4.0' in texts[2]
    assert 'netns="red"' in texts[2] and 'netns="red"' not in texts[3]
    assert "connwatch_sysctl_net_core_somaxconn 4096.0" in texts[3]  # the own namespace: no empty labels


def test_each_attribute_exports_its_100_largest_values_ties_by_resource_in_order() -> None:
    from connwatch.findings import Measurement
    from connwatch.outputs.prom_measure import MAX_PER_ATTRIBUTE, measurement_families

    values = [0, 0, 3, 1, 3, 0, 2] * 40  # 280 ports, many ties
    ms = [Measurement("BacklogRejectsByPort", {"port": 1000 + i}, f"TCP({1000 + i})", v, "conns")
          for i, v in enumerate(values)]
    [fam] = [f for f in measurement_families(ms) if f.name == "connwatch_attribute_backlog_rejects_by_port"]
    expected = sorted(ms, key=lambda m: (-m.value, m.resource_key))[:MAX_PER_ATTRIBUTE]
    assert [(s.labels["port"], s.value) for s in fam.samples] == [(str(m.resource["port"]), m.value) for m in expected]
    assert len(fam.samples) == MAX_PER_ATTRIBUTE


def test_a_namespace_whose_sockstat_alone_moved_keeps_its_other_rows() -> None:
    """sockstat's host-wide fields (TCP alloc, orphan, mem) move in every namespace: only its rows are made again."""
    rows = KernelRows()
    snaps = [_ns(None, 1), _ns(BLUE, 2)]
    first = _text(snaps, rows)
    kept = {id(r[3]) for ns in rows.rows([(ns_values(s.netns), s) for s in snaps], None) for r in ns}
    moved = [dataclasses.replace(s, sockstat={**s.sockstat, "TCP.alloc": 77, "TCP.mem": 5}) for s in snaps]
    labelled = [(ns_values(s.netns), s) for s in moved]
    again = rows.rows(labelled, None)
    assert again == KernelRows().rows(labelled, None)  # (the same rows as made afresh)
    same = [r for ns in again for r in ns if id(r[3]) in kept]
    assert same and all(not r[1].startswith("connwatch_sockstat_") for r in same)
    assert any(r[1].startswith("connwatch_sockstat_") for ns in again for r in ns)
    text = _text(moved, rows)
    assert text == _text(moved, None) and text != first
    assert 'connwatch_sockstat_tcp_alloc{netns="blue"} 77.0' in text


def test_measurement_series_kept_per_object_give_the_fresh_families() -> None:
    from connwatch.findings import Measurement
    from connwatch.outputs.prom_measure import MeasurementSamples, measurement_families
    from connwatch.outputs.prom_netns import without_empty

    def ms(ns: str | None, shift: int) -> list[Measurement]:
        notes = {"netns": {"inode": 5, "name": ns}} if ns else {}
        return [Measurement(a, {"port": 1000 + i, "destination": "10.0.0.1:80", "local_address": ""}, f"TCP({i})",
                            float((i * 7 + shift) % 5), "conns", notes=notes)
                for a in ("BacklogRejectsByPort", "EphemeralPortUsage") for i in range(120)]

    memo = MeasurementSamples()
    blue, red = ms("blue", 0), ms("red", 1)
    rounds = [[*ms(None, 0), *blue, *red], [*ms(None, 1), *blue, *red], [*ms(None, 1), *blue, *ms("red", 2)],
              [*ms(None, 2), *blue], [*ms(None, 2), *ms("blue", 3), *red]]
    for measured in rounds:
        fresh = without_empty(measurement_families(measured))
        kept = measurement_families(measured, memo)
        assert [(f.name, f.documentation, f.type, f.samples) for f in kept] == \
               [(f.name, f.documentation, f.type, f.samples) for f in fresh]
        assert [list(s.labels.items()) for f in kept for s in f.samples] == \
               [list(s.labels.items()) for f in fresh for s in f.samples]
    again = measurement_families(rounds[-1], memo)
    assert all(a is b for f, g in zip(again, kept, strict=True) for a, b in zip(f.samples, g.samples, strict=True))


def test_measurements_ranked_again_only_where_their_namespace_blocks_changed_give_the_fresh_ranking() -> None:
    """The agent hands one block per namespace (agent/steady.py keeps a standing namespace's tuple): the memo ranks
    again only new blocks, and the export is what ranking everything gives, whichever blocks are kept, new, moved
    or gone; ties (the same ports and values in every namespace) are taken in namespace order, as before."""
    from connwatch.findings import Measurement
    from connwatch.outputs.prom_measure import MAX_PER_ATTRIBUTE, MeasurementSamples, measurement_families
    from connwatch.outputs.prom_netns import without_empty

    def block(ns: str | None, shift: int) -> tuple[Measurement, ...]:
        notes = {"netns": {"inode": 5, "name": ns}} if ns else {}
        return tuple(Measurement(a, {"port": 1000 + i}, f"TCP({1000 + i})", float((i * 3 + shift) % 2), "conns",
                                 notes=notes) for a in ("BacklogRejectsByPort", "AcceptQueueFill") for i in range(60))

    own1, blue, red, green = block(None, 1), block("blue", 0), block("red", 1), block("green", 0)
    rounds = [[block(None, 0), blue, red], [own1, blue, red], [own1, blue, red], [block(None, 1), red, blue],
              [block(None, 2), blue], [block(None, 2), blue, green, block("red", 3)], [own1, blue, green, red]]
    memo = MeasurementSamples()
    for blocks in rounds:
        flat = [m for b in blocks for m in b]
        fresh = without_empty(measurement_families(flat))
        kept = measurement_families(flat, memo, blocks)
        assert [(f.name, f.samples) for f in kept] == [(f.name, f.samples) for f in fresh]
        assert [list(s.labels.items()) for f in kept for s in f.samples] == \
               [list(s.labels.items()) for f in fresh for s in f.samples]
        assert max(len(f.samples) for f in kept) == MAX_PER_ATTRIBUTE
