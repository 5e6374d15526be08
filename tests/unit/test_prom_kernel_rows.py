"""The kernel families' rows and the 0.1 families against the walks over every counter they replaced
(outputs/prom_kernel.py: the needed counters looked up, the legacy series made without add_metric)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import CounterMetricFamily

from connwatch.attributes.registry import kernel_inputs
from connwatch.model import Snapshot
from connwatch.outputs import prom_kernel
from connwatch.outputs.prom_kernel import NOT_COUNTERS, Row, legacy_kernel_families, namespace_rows
from connwatch.parsers.netstat_snmp import parse_netstat_snmp
from tests.unit.builders import snapshot

PROC = Path(__file__).parent.parent / "fixtures" / "proc"


def walked_rows(labels: tuple[str, str, str], snap: Snapshot, needed: Collection[str] | None) -> list[Row]:
    """namespace_rows as it was: every counter sorted and filtered (its sockstat and sysctl rows as now)."""
    out: list[Row] = []
    for name, value in sorted(snap.counters.items()):
        if not name.startswith(("Tcp.", "TcpExt.")) or name in NOT_COUNTERS or value < 0 or (
                needed is not None and name not in needed):
            continue
        metric = prom_kernel.counter_metric(name)
        out.append((CounterMetricFamily, metric, f"Kernel counter {name} (/proc/net/netstat, /proc/net/snmp; "
                    "nstat's name)", prom_kernel._series(CounterMetricFamily, metric, labels, value)))
    rest = namespace_rows(labels, snapshot(0, counters={}), needed)
    return out + rest


def counters_of(tree: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in ("netstat", "snmp"):
        path = PROC / tree / "net" / name
        if path.exists():
            out.update(parse_netstat_snmp(path.read_text(), str(path)))
    return out


TREES = sorted(p.name for p in PROC.iterdir() if (p / "net" / "netstat").exists() or (p / "net" / "snmp").exists())


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("needed", [None, "inputs", ("TcpExt.ListenOverflows", "Tcp.MaxConn", "TcpExt.Nope")])
def test_rows_as_the_walk_over_every_counter(tree: str, needed: str | tuple[str, ...] | None) -> None:
    want = kernel_inputs() if needed == "inputs" else needed
    snap = snapshot(0, counters=counters_of(tree))
    rows = namespace_rows(("ns", "", ""), snap, want)
    assert rows == walked_rows(("ns", "", ""), snap, want)
    assert any(r[0] is CounterMetricFamily for r in rows) or not snap.counters or needed is not None


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["Tcp.ActiveOpens", "Tcp.MaxConn", "TcpExt.ListenOverflows",
                                        "TcpExt.ListenDrops", "Udp.InErrors", "IpExt.InOctets", "TcpExt.TW"]),
                       st.integers(-2, 10)),
       st.sampled_from([None, frozenset(), frozenset({"TcpExt.ListenDrops", "Tcp.MaxConn", "Udp.InErrors"})]))
def test_rows_and_legacy_fuzzed(counters: dict[str, int], needed: frozenset[str] | None) -> None:
    snap = snapshot(0, counters=counters)
    assert namespace_rows(("", "", ""), snap, needed) == walked_rows(("", "", ""), snap, needed)
    fam = CounterMetricFamily("connwatch_kernel_counter", "x", labels=["counter"])
    for name, value in sorted(counters.items()):
        if name.startswith(("Tcp.", "TcpExt.")) and name not in NOT_COUNTERS and value >= 0:
            fam.add_metric([name], value)
    assert legacy_kernel_families(snap)[0].samples == fam.samples
