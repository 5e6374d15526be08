"""/metrics families: values, types, label bounds (parsed back with prometheus_client's own parser)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from connwatch.findings import Alert
from connwatch.model import DestinationUsage, Process, SocketSummary, SourceStatus, SourceTable, SourceUsage
from connwatch.outputs import prometheus as prom
from connwatch.outputs.prometheus import AgentStats, SnapshotCollector, View, build_parts

from .builders import listener, snapshot


def _scrape(collector: SnapshotCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _text(families: list[Metric]) -> bytes:
    """The exposition text of some families alone."""
    registry = CollectorRegistry()

    class Fixed:
        def collect(self) -> list[Metric]:
            return families

    registry.register(Fixed())
    return generate_latest(registry)


def _one(series: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    found = [v for lab, v in series[name] if all(lab.get(k) == want for k, want in labels.items())]
    assert len(found) == 1, (name, labels, series.get(name))
    return found[0]


def _alert(port: int, severity: int = 3) -> Alert:
    return Alert(attribute="BacklogRejectsByPort", resource_key=f"TCP({port})", resource={"port": port},
                 value=12.0, unit="conns", limit=0.0, severity=severity, alert_class="backlog", state="active",
                 created_at=1.0, last_updated=1.0, occurrences=1, last_occurred=1.0, clear_after=3,
                 system_name="testhost", id=port)


def test_listener_series_sum_reuseport_groups_and_keep_the_peak() -> None:
    owner = Process(pid=42, command="nginx", user="www")
    a = listener(8080, queue=3, backlog=5, drops=7, inode=1, owner=owner)
    b = listener(8080, queue=2, backlog=5, drops=1, inode=2)  # SO_REUSEPORT sibling
    c = listener(8080, queue=0, backlog=128, drops=0, address="::", family=6, inode=3)
    col = SnapshotCollector()
    col.update(View(snapshot(10.0, (a, b, c)), (a, b, c), peaks={a.identity: 6}))
    series = _scrape(col)
    v4 = {"port": "8080", "address": "0.0.0.0", "family": "4"}
    assert _one(series, "connwatch_listener_queue", **v4) == 5
    assert _one(series, "connwatch_listener_queue_peak", **v4) == 6 + 2
    assert _one(series, "connwatch_listener_backlog", **v4) == 10
    assert _one(series, "connwatch_listener_drops_total", **v4) == 8  # exposed as a counter
    assert _one(series, "connwatch_listener_sockets", **v4) == 2
    assert _one(series, "connwatch_listener_owner_info", command="nginx", user="www", pid="42") == 1
    assert _one(series, "connwatch_listener_backlog", port="8080", family="6") == 128


def test_unknown_backlog_or_drops_are_absent_not_zero() -> None:
    lst = listener(9000, queue=1, backlog=None, drops=None)
    col = SnapshotCollector()
    col.update(View(snapshot(1.0, (lst,)), (lst,)))
    series = _scrape(col)
    assert _one(series, "connwatch_listener_queue", port="9000") == 1
    assert "connwatch_listener_backlog" not in series and "connwatch_listener_drops_total" not in series


def test_listener_label_sets_are_bounded_with_busy_ones_kept() -> None:
    quiet = tuple(listener(10000 + i, inode=10000 + i) for i in range(prom.MAX_LISTENER_GROUPS + 50))
    busy = listener(65000, queue=0, drops=3, inode=1)
    col = SnapshotCollector()
    col.update(View(snapshot(1.0, (*quiet, busy)), (*quiet, busy)))
    series = _scrape(col)
    assert len(series["connwatch_listener_queue"]) == prom.MAX_LISTENER_GROUPS
    assert _one(series, "connwatch_listener_drops_total", port="65000") == 3  # the dropping one survived
    assert _one(series, "connwatch_listeners_omitted") == 51


def test_top_n_destinations_and_sources_from_the_summary() -> None:
    dests = tuple(DestinationUsage("10.0.0.1", f"10.1.0.{i}", 5432, {"ESTABLISHED": i, "TIME_WAIT": 1},
                                   time_wait_young=i % 2) for i in range(1, 41))
    sources = tuple(SourceUsage(f"192.0.2.{i}", 80, {"ESTABLISHED": i}) for i in range(1, 31))
    summary = SocketSummary(total=2000, by_state={"ESTABLISHED": 1500, "TIME_WAIT": 500},
                            destinations=dests, sources=SourceTable.of(sources))
    col = SnapshotCollector()
    col.update(View(snapshot(1.0, sockets=summary)))
    series = _scrape(col)
    assert len(series["connwatch_destination_sockets"]) == prom.TOP_N
    assert _one(series, "connwatch_destination_sockets", destination="10.1.0.40:5432") == 41
    assert not [lab for lab, _ in series["connwatch_destination_sockets"] if lab["destination"] == "10.1.0.1:5432"]
    assert len(series["connwatch_source_sockets"]) == prom.TOP_N
    assert _one(series, "connwatch_source_sockets", source="192.0.2.30", port="80") == 30
    assert _one(series, "connwatch_sockets", state="TIME_WAIT") == 500


def test_host_counters_sysctls_sources_alerts_and_agent_stats() -> None:
    counters = {"TcpExt.ListenOverflows": 196, "Tcp.CurrEstab": 9, "Ip.Forwarding": 1}
    snap = snapshot(1234.5, counters=counters, somaxconn=16)
    snap = snap.__class__(**{**{f: getattr(snap, f) for f in snap.__dataclass_fields__},
                             "statuses": (SourceStatus("/proc/net/netstat", True, "", 1.5),
                                          SourceStatus("/proc/net/snmp6", False, "gone", 0.1))})
    stats = AgentStats(samples={"full": 3, "listeners": 12}, sample_seconds={"full": 0.02},
                       source_errors={"/proc/net/snmp6": 2}, state_up=False, state_errors=4,
                       pending={"alertmanager http://am/api/v2/alerts": 5})
    col = SnapshotCollector()
    col.update(View(snap, alerts=(_alert(8080, 2), _alert(8081)), stats=stats))
    series = _scrape(col)
    assert _one(series, "connwatch_kernel_counter_total", counter="TcpExt.ListenOverflows") == 196
    assert not [lab for lab, _ in series["connwatch_kernel_counter_total"]
                if lab["counter"] in ("Tcp.CurrEstab", "Ip.Forwarding")]  # a gauge / not TCP
    assert _one(series, "connwatch_sysctl", sysctl="somaxconn") == 16
    assert _one(series, "connwatch_source_up", source="/proc/net/snmp6") == 0
    assert _one(series, "connwatch_source_errors_total", source="/proc/net/snmp6") == 2
    assert _one(series, "connwatch_source_duration_seconds", source="/proc/net/netstat") == 0.0015
    assert _one(series, "connwatch_alert_active", attribute="BacklogRejectsByPort", port="8080",
                severity="high", resource="TCP(8080)") == 1
    assert _one(series, "connwatch_alert_value", port="8081", severity="medium") == 12
    assert _one(series, "connwatch_samples_total", kind="listeners") == 12
    assert _one(series, "connwatch_state_up") == 0 and _one(series, "connwatch_state_errors_total") == 4
    assert _one(series, "connwatch_notifications_pending", receiver="alertmanager http://am/api/v2/alerts") == 5
    assert _one(series, "connwatch_last_sample_timestamp_seconds") == 1234.5


def test_an_unchanged_poll_keeps_the_listener_families_and_a_changed_one_rebuilds_them() -> None:
    col = SnapshotCollector()
    first = listener(7000, queue=0, backlog=5)
    col.update(View(snapshot(1.0, (first,)), (first,)))
    col.update_listeners((first,), {first.identity: 0}, AgentStats(samples={"listeners": 1}))
    kept = col._parts["listeners"]
    col.update_listeners((first,), {first.identity: 0}, AgentStats(samples={"listeners": 2}))
    assert col._parts["listeners"] is kept  # nothing changed: not rebuilt
    assert _one(_scrape(col), "connwatch_samples_total", kind="listeners") == 2  # the agent's own, fresh
    col.update_listeners((listener(7000, queue=3, backlog=5),), {first.identity: 3}, AgentStats())
    assert col._parts["listeners"] is not kept
    series = _scrape(col)
    assert _one(series, "connwatch_listener_queue", port="7000") == 3
    assert _one(series, "connwatch_listener_queue_peak", port="7000") == 3
    second = listener(7000, queue=0, backlog=5)
    col.update(View(snapshot(2.0, (second,)), (second,)))  # a full sample: rebuilt from it
    col.update_listeners((second,), {}, AgentStats())
    assert _one(_scrape(col), "connwatch_listener_queue", port="7000") == 0


def test_listener_families_are_kept_across_full_samples_and_polls_that_show_the_same() -> None:
    """The families a full sample built serve the poll after it, and the next full sample, while the
    listeners and peaks they show are equal; each time they equal a fresh build; a changed queue rebuilds."""
    col = SnapshotCollector()
    first = listener(7000, queue=0, backlog=5)
    col.update(View(snapshot(1.0, (first,)), (first,), {first.identity: 0}))
    kept = col._parts["listeners"]
    col.update_listeners((listener(7000, queue=0, backlog=5),), {first.identity: 0}, AgentStats())
    assert col._parts["listeners"] is kept
    view = View(snapshot(2.0, (listener(7000, queue=0, backlog=5),)), (first,), {first.identity: 0})
    col.update(view)
    assert col._parts["listeners"] is kept
    assert _text(kept) == _text(build_parts(view)["listeners"])
    col.update(View(snapshot(3.0, (first,)), (first,), {first.identity: 2}))  # a peak between samples
    assert col._parts["listeners"] is not kept
    assert _one(_scrape(col), "connwatch_listener_queue_peak", port="7000") == 2


def test_listener_poll_rebuilds_listeners_and_keeps_host_families() -> None:
    col = SnapshotCollector()
    first = listener(7000, queue=0, backlog=5)
    col.update(View(snapshot(1.0, (first,), counters={"TcpExt.ListenDrops": 3}), (first,)))
    col.update_listeners((listener(7000, queue=4, backlog=5),), {first.identity: 6}, AgentStats())
    series = _scrape(col)
    assert _one(series, "connwatch_listener_queue", port="7000") == 4
    assert _one(series, "connwatch_listener_queue_peak", port="7000") == 6
    assert _one(series, "connwatch_kernel_counter_total", counter="TcpExt.ListenDrops") == 3
