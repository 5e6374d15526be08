"""Prometheus exposition: a custom prometheus_client Collector over the agent's latest sample.

The metric families are built once per sample (`build_parts`) and handed out as they are on
every scrape, so a scrape costs the text encoding only (100 scrapes/s stay cheap) and never reads
the kernel. Every series name below is part of the contract `connwatch rules --format prometheus`
and contrib/grafana-connwatch.json rely on.

Every sampled network namespace is exported (outputs/prom_netns.py: `netns`, `container`, `pod` labels,
left out where empty, so the own namespace's series are the unlabelled ones). Label cardinality is
bounded by design:
- namespaces: at most MAX_NAMESPACES (100), the own first (connwatch_namespaces_omitted counts the rest);
- listeners: one label set per (namespace, port, address, family), at most MAX_LISTENER_GROUPS (1,000)
  over all namespaces, the ones with drops or a queue first; SO_REUSEPORT groups are summed;
- destinations and sources: the TOP_N (20) busiest each, over all namespaces;
- active alerts: at most MAX_ALERTS (200), most severe first;
- kernel counters, sockstat keys, TCP states, sysctls: fixed by the kernel, per namespace; sources: fixed;
- notification receivers: those configured.
Worst case about 1,000 x 6 + 2 x 20 + 2 x 200 + ~300 + ~30 per namespace ≈ 9,700 series; a typical host
has a few dozen listeners and stays under 600.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connwatch import __version__
from connwatch.attributes.registry import kernel_inputs
from connwatch.findings import Alert, Measurement
from connwatch.model import Listener, Snapshot
from connwatch.outputs.prom_kernel import KernelRows, kernel_families, legacy_kernel_families
from connwatch.outputs.prom_listeners import MAX_LISTENER_GROUPS as MAX_LISTENER_GROUPS  # (tests patch it here)
from connwatch.outputs.prom_listeners import ListenerGroups, ListenerSamples, listener_families
from connwatch.outputs.prom_measure import MeasurementSamples, measurement_families
from connwatch.outputs.prom_netns import (
    NS_LABELS,
    OWN,
    Ranked,
    bounded_namespaces,
    netns_families,
    ns_values,
    without_empty,
)

TOP_N = 20
MAX_ALERTS = 200
SAMPLE_KINDS = ("full", "listeners")
ALERT_LABELS = ("attribute", "resource", "severity", "port", "source", "destination")

Rank = Callable[[Snapshot, Sequence[Snapshot]], tuple[list[Snapshot], int]]  # bounded_namespaces or a Ranked


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    """What /metrics exports: `kernel_counters` "needed" (what the attributes read) or "all";
    `legacy`: also the 0.1 names (connwatch_kernel_counter_total{counter}, connwatch_sockstat{key},
    connwatch_sysctl{sysctl}, connwatch_source_*{source}) and the first host-limit families
    (connwatch_host_limit_usage{key}, connwatch_conntrack_stat_total{stat}) for one more release."""

    kernel_counters: str = "needed"
    legacy: bool = True


@dataclass(frozen=True, slots=True)
class AgentStats:
    """What the agent knows about itself, for the connwatch_agent_* / notification series."""

    samples: Mapping[str, int] = field(default_factory=dict)  # kind ("full", "listeners") -> count
    sample_seconds: Mapping[str, float] = field(default_factory=dict)  # kind -> last duration
    source_errors: Mapping[str, int] = field(default_factory=dict)  # source -> failed samples
    state_up: bool = True
    state_errors: int = 0
    reload_failures: int = 0
    config_ok: bool = True
    pending: Mapping[str, int] = field(default_factory=dict)  # receiver -> queued notifications
    sent: Mapping[str, int] = field(default_factory=dict)
    failures: Mapping[str, int] = field(default_factory=dict)
    timeouts: Mapping[str, int] = field(default_factory=dict)  # receiver -> answers later than the read timeout


@dataclass(frozen=True, slots=True)
class View:
    """One consistent picture: the last full sample, the latest listener poll and the alerts."""

    snapshot: Snapshot | None
    listeners: Sequence[Listener] = ()  # latest poll (fresher than snapshot.listeners)
    peaks: Mapping[tuple[int, int, int, str], int] = field(default_factory=dict)  # identity -> max queue
    alerts: Sequence[Alert] = ()
    stats: AgentStats = field(default_factory=AgentStats)
    measurements: Sequence[Measurement] = ()  # every attribute's value in the last judgement (every namespace)
    # The same, one block per namespace (its judgement's tuple: the same object while its judgement is kept)
    measured: Sequence[Sequence[Measurement]] | None = None
    namespaces: Sequence[Snapshot] = ()  # the other namespaces' last full samples (`snapshot` is the own one)
    elsewhere: Mapping[int, Sequence[Listener] | None] = field(default_factory=dict)  # inode -> latest poll


class SnapshotCollector(Collector):
    """Registered once; `update` swaps in freshly built families (thread-safe, scrapes never wait)."""

    def __init__(self, opts: MetricsOptions | None = None) -> None:
        self._lock = threading.Lock()
        self._opts = opts or MetricsOptions()
        self._view = View(None)
        self._kernel_rows = KernelRows()  # each namespace's kernel series, kept while unchanged
        self._measured = MeasurementSamples()  # each measurement's series, kept while the same object
        self._ranked = Ranked()  # the namespaces exported, ranked once per full sample
        self._parts = build_parts(self._view, self._opts)
        self._listeners_of: tuple[object, ...] | None = None  # what the listener parts show (_listener_key)
        self._groups = ListenerGroups()  # each namespace's listener groups, kept while its listeners stand
        self._listener_samples = ListenerSamples()  # each group's series, kept while the group stands

    def update(self, view: View) -> None:
        """A new full sample: rebuild everything but the listener families when they would be the same."""
        key = _listener_key(view, self._ranked)
        with self._lock:
            kept = self._parts.get("listeners") if self._listeners_of == key else None
        parts = build_parts(view, self._opts, kept if kept is not None else self._listener_families(view, view.peaks),
                            self._kernel_rows, self._measured, self._ranked)
        with self._lock:
            self._view, self._parts, self._listeners_of = view, parts, key

    def update_listeners(self, listeners: Sequence[Listener], peaks: Mapping[tuple[int, int, int, str], int],
                         stats: AgentStats, elsewhere: Mapping[int, Sequence[Listener] | None] | None = None) -> None:
        """A listener poll between full samples (`elsewhere`: the other namespaces', by inode): rebuild only the
        listener and agent families."""
        with self._lock:
            view = replace(self._view, listeners=listeners, peaks=peaks, stats=stats,
                           elsewhere=self._view.elsewhere if elsewhere is None else elsewhere)
            key = _listener_key(view, self._ranked)
            kept = self._parts.get("listeners") if self._listeners_of == key else None
        # The listener families again only when what they show changed: a listener, a peak (with many
        # namespaces of idle listeners, rebuilding them at every poll was most of the agent's CPU).
        if kept is None:
            kept = self._listener_families(view, peaks)
        fresh = {"listeners": kept, "agent": _agent_families(stats, view.snapshot)}
        with self._lock:
            self._view, self._parts = view, {**self._parts, **fresh}
            self._listeners_of = key

    def _listener_families(self, view: View, peaks: Mapping[tuple[int, int, int, str], int]) -> list[Metric]:
        """The listener families of the view, each namespace's groups kept while its listeners stand."""
        sets = _listener_sets(view, self._ranked)
        grouped = self._groups(sets, peaks)
        return listener_families(sets, peaks, grouped, MAX_LISTENER_GROUPS, self._listener_samples,
                                 self._groups.ordered)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            parts = self._parts
        return iter([m for part in parts.values() for m in part])


def build_parts(view: View, opts: MetricsOptions | None = None, listeners: list[Metric] | None = None,
                kernel_rows: KernelRows | None = None, measured: MeasurementSamples | None = None,
                ranked: Rank = bounded_namespaces) -> dict[str, list[Metric]]:
    """The families of one view, in parts that can be rebuilt separately (`listeners`: the listener families
    of a view with the same _listener_key, kept; `kernel_rows`: the kernel series of unchanged namespaces)."""
    opts = opts or MetricsOptions()
    snap = view.snapshot
    host: list[Metric] = []
    if snap is not None:
        snaps, omitted = ranked(snap, view.namespaces)
        labelled = [(ns_values(s.netns), s) for s in snaps]
        host = [*_host_families(labelled, opts, kernel_rows),
                *without_empty([*_destination_families(labelled), *_source_families(labelled),
                                *_collector_families(snap, view.stats, opts.legacy), *netns_families(snaps, omitted)])]
    build = GaugeMetricFamily("connwatch_build_info", "connwatch's version (1), as *_build_info in "
                              "client_golang", labels=["version"])
    build.add_metric([__version__], 1)
    if listeners is None:
        listeners = listener_families(_listener_sets(view, ranked), view.peaks, bound=MAX_LISTENER_GROUPS)
    return {"build": [build], "listeners": listeners,
            "host": host, "alerts": _alert_families(view.alerts),
            "measurements": (measurement_families(view.measurements, measured, view.measured)
                             if measured is not None else  # (the memo's: empty labels left out already)
                             without_empty(measurement_families(view.measurements))),
            "agent": _agent_families(view.stats, snap)}


def _listener_key(view: View, ranked: Rank = bounded_namespaces) -> tuple[object, ...]:
    """Everything the listener families are made of: each exported namespace's listeners (the same
    objects when a poll reused a namespace's dump, so comparing them is mostly identity checks) and the
    peaks (and the bound on groups). Equal keys, equal families."""
    return (_listener_sets(view, ranked), dict(view.peaks), MAX_LISTENER_GROUPS)


def _listener_sets(view: View, ranked: Rank = bounded_namespaces
                   ) -> list[tuple[tuple[str, str, str], Sequence[Listener]]]:
    """Each exported namespace's latest listeners: the own poll, the others' poll (else their full sample)."""
    out: list[tuple[tuple[str, str, str], Sequence[Listener]]] = [(OWN, view.listeners)]
    if view.snapshot is not None:
        out = [(ns_values(view.snapshot.netns), view.listeners)]
        for s in ranked(view.snapshot, view.namespaces)[0][1:]:
            polled = view.elsewhere.get(s.netns.inode) if s.netns is not None else None
            out.append((ns_values(s.netns), s.listeners if polled is None else polled))
    return out


# -- host --------------------------------------------------------------------


Labelled = Sequence[tuple[tuple[str, str, str], Snapshot]]  # namespace label values, its sample (own first)


def _host_families(snaps: Labelled, opts: MetricsOptions, kernel_rows: KernelRows | None = None) -> list[Metric]:
    """Kernel values, sockets by state and host limits, their empty namespace labels left out."""
    needed = None if opts.kernel_counters == "all" else kernel_inputs()
    own = snaps[0][1]
    out: list[Metric] = []
    if opts.legacy:
        out += legacy_kernel_families(own)
    states = GaugeMetricFamily("connwatch_sockets", "Non-listening TCP sockets by state",
                               labels=[*NS_LABELS, "state"])
    for ns, snap in snaps:
        for state, count in sorted(snap.sockets.by_state.items()) if snap.sockets is not None else ():
            states.add_metric([*ns, state], count)
    out.append(states)
    rest = out + _host_limit_families(snaps) + (_legacy_host_limit_families(own) if opts.legacy else [])
    return [*kernel_families(snaps, needed, kernel_rows), *without_empty(rest)]  # (the kernel's: left out already)


CONNTRACK_STATS = ("drop", "early_drop", "insert_failed", "invalid")


def _host_limit_families(snaps: Labelled) -> list[Metric]:
    """Conntrack entries and statistics of each namespace, the host's allocated file handles: one metric each,
    as node_exporter's conntrack and filefd collectors (node_nf_conntrack_entries, node_nf_conntrack_stat_drop,
    node_filefd_allocated); their limits are the sysctl series (connwatch_sysctl_net_netfilter_nf_conntrack_max,
    connwatch_sysctl_fs_file_max)."""
    entries = GaugeMetricFamily("connwatch_conntrack_entries", "Entries in the namespace's conntrack table "
                                "(net.netfilter.nf_conntrack_count)", labels=list(NS_LABELS))
    stats = {key: CounterMetricFamily(f"connwatch_conntrack_stat_{key}", f"/proc/net/stat/nf_conntrack {key} of "
                                      "the namespace, summed over CPUs", labels=list(NS_LABELS))
             for key in CONNTRACK_STATS}
    for ns, snap in snaps:
        if snap.conntrack_count is not None:
            entries.add_metric(list(ns), snap.conntrack_count)
        for key, fam in stats.items():
            if snap.conntrack_stats is not None and key in snap.conntrack_stats:
                fam.add_metric(list(ns), snap.conntrack_stats[key])
    out: list[Metric] = [f for f in (entries, *stats.values()) if f.samples]
    own = snaps[0][1]
    if own.files_allocated is not None:  # host-wide: one series, read in connwatch's own namespace
        out.append(GaugeMetricFamily("connwatch_filefd_allocated", "Allocated file handles, host-wide "
                                     "(first field of /proc/sys/fs/file-nr)", value=own.files_allocated))
    return out


def _legacy_host_limit_families(snap: Snapshot) -> list[Metric]:
    """The first names of these series (metric in a label), kept while --legacy-metrics on."""
    out: list[Metric] = []
    values = {"conntrack_entries": snap.conntrack_count, "files_allocated": snap.files_allocated}
    if any(v is not None for v in values.values()):
        fam = GaugeMetricFamily("connwatch_host_limit_usage", "Deprecated (use connwatch_conntrack_entries, "
                                "connwatch_filefd_allocated): entries of the namespace's conntrack table; "
                                "allocated file handles (host-wide)", labels=["key"])
        for key, value in values.items():
            if value is not None:
                fam.add_metric([key], value)
        out.append(fam)
    if snap.conntrack_stats is not None:
        stats = CounterMetricFamily("connwatch_conntrack_stat", "Deprecated (use connwatch_conntrack_stat_<stat>"
                                    "_total): /proc/net/stat/nf_conntrack, summed over CPUs", labels=["stat"])
        for key in CONNTRACK_STATS:
            if key in snap.conntrack_stats:
                stats.add_metric([key], snap.conntrack_stats[key])
        out.append(stats)
    return out


def _destination_families(snaps: Labelled) -> list[Metric]:
    labels = [*NS_LABELS, "local_address", "destination"]
    used = GaugeMetricFamily("connwatch_destination_sockets", f"Local ports held toward one destination "
                             f"from one local address (the {TOP_N} busiest over every namespace)", labels=labels)
    young = GaugeMetricFamily("connwatch_destination_time_wait_young", "TIME_WAIT sockets toward the "
                              "destination not yet reusable (younger than tcp_tw_reuse_delay)", labels=labels)
    every = [(ns, d) for ns, snap in snaps if snap.sockets is not None for d in snap.sockets.destinations]
    for ns, d in sorted(every, key=lambda x: (-x[1].total, x[0], x[1].destination))[:TOP_N]:
        used.add_metric([*ns, d.local_address, d.destination], d.total)
        young.add_metric([*ns, d.local_address, d.destination], d.time_wait_young)
    return [used, young]


def _source_families(snaps: Labelled) -> list[Metric]:
    fam = GaugeMetricFamily("connwatch_source_sockets", f"Sockets from one remote address to one "
                            f"listening port (the {TOP_N} busiest over every namespace)",
                            labels=[*NS_LABELS, "source", "port"])
    # each namespace's own top N holds every one of its sources that can make the overall top N
    every = [(ns, s) for ns, snap in snaps if snap.sockets is not None for s in snap.sockets.sources.busiest(TOP_N)]
    for ns, s in sorted(every, key=lambda x: (-x[1].total, x[0], x[1].source, x[1].port))[:TOP_N]:
        fam.add_metric([*ns, s.source, str(s.port)], s.total)
    return [fam]


def _collector_families(snap: Snapshot, stats: AgentStats, legacy: bool) -> list[Metric]:
    """Each data source connwatch reads (a "collector", as node_exporter says; `source` is a remote address)."""
    out: list[Metric] = []
    for prefix, label, note in (("connwatch_collector", "collector", ""),
                                *((("connwatch_source", "source", "Deprecated (use connwatch_collector_*): "),)
                                  if legacy else ())):
        up = GaugeMetricFamily(f"{prefix}_up", f"{note}1 if the data source answered in the last full sample",
                               labels=[label])
        took = GaugeMetricFamily(f"{prefix}_duration_seconds", f"{note}Time to read the data source in the "
                                 "last full sample", labels=[label])
        for st in snap.statuses:
            up.add_metric([st.name], 1 if st.ok else 0)
            took.add_metric([st.name], st.duration_ms / 1000)
        errors = CounterMetricFamily(f"{prefix}_errors", f"{note}Full samples in which the data source failed",
                                     labels=[label])
        for name, count in sorted(stats.source_errors.items()):
            errors.add_metric([name], count)
        out += [up, took, errors]
    return out


# -- alerts and the agent ----------------------------------------------------


def alert_label_values(a: Alert) -> list[str]:
    res = a.resource
    return [a.attribute, a.resource_key, a.severity_name.lower(),
            *("" if res.get(k) is None else str(res.get(k)) for k in ("port", "source", "destination"))]


def _alert_families(alerts: Sequence[Alert]) -> list[Metric]:
    active = GaugeMetricFamily("connwatch_alert_active", f"Active connwatch alerts (1; at most "
                               f"{MAX_ALERTS}, most severe first)", labels=list(ALERT_LABELS))
    value = GaugeMetricFamily("connwatch_alert_value", "Measured value of each active alert",
                              labels=list(ALERT_LABELS))
    shown = sorted(alerts, key=lambda a: (a.severity, a.attribute, a.resource_key))[:MAX_ALERTS]
    for a in shown:
        values = alert_label_values(a)
        active.add_metric(values, 1)
        value.add_metric(values, a.value)
    return [active, value]


def _by(name: str, doc: str, label: str, values: Mapping[str, float], counter: bool = False) -> Metric:
    fam = (CounterMetricFamily if counter else GaugeMetricFamily)(name, doc, labels=[label])
    for key, v in sorted(values.items()):
        fam.add_metric([key], v)
    return fam


def _agent_families(stats: AgentStats, snap: Snapshot | None) -> list[Metric]:
    out = [
        _by("connwatch_samples", "Samples taken, by kind", "kind",
            {**dict.fromkeys(SAMPLE_KINDS, 0), **stats.samples}, counter=True),
        _by("connwatch_sample_duration_seconds", "Duration of the last sample, by kind", "kind",
            stats.sample_seconds),
        GaugeMetricFamily("connwatch_state_up", "1 if the state database is writable",
                          value=1 if stats.state_up else 0),
        CounterMetricFamily("connwatch_state_errors", "Failed state database operations",
                            value=stats.state_errors),
        GaugeMetricFamily("connwatch_config_last_reload_successful", "1 if the last config (re)load "
                          "was accepted", value=1 if stats.config_ok else 0),
        CounterMetricFamily("connwatch_config_reload_failures", "Refused config reloads",
                            value=stats.reload_failures),
        _by("connwatch_notifications_pending", "Notifications queued in the outbox (undelivered, or "
            "active and awaiting re-send)", "receiver", stats.pending),
        _by("connwatch_notifications_sent", "Notifications delivered", "receiver", stats.sent, counter=True),
        _by("connwatch_notification_failures", "Failed delivery attempts", "receiver", stats.failures,
            counter=True),
        _by("connwatch_notification_timeouts", "Delivery attempts with no answer within the read timeout "
            "(they may have arrived; repeated with the same idempotency key)", "receiver", stats.timeouts,
            counter=True),
    ]
    if snap is not None:
        out.append(GaugeMetricFamily("connwatch_last_sample_timestamp_seconds", "When the last full "
                                     "sample was taken", value=snap.taken_at))
    return out
