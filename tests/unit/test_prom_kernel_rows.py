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
