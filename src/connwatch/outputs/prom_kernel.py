"""The host's kernel values on /metrics, one metric per value, named and united as node_exporter does.

- Counters from /proc/net/netstat and /proc/net/snmp: `connwatch_netstat_<section>_<field>_total`
  in snake case (`TcpExt.ListenOverflows` -> `connwatch_netstat_tcpext_listen_overflows_total`;
  node_exporter's name for the same value is `node_netstat_TcpExt_ListenOverflows`).
- /proc/net/sockstat{,6}: `connwatch_sockstat_<protocol>_<field>` (`TCP.tw` -> `connwatch_sockstat_tcp_tw`),
  memory in bytes (`TCP.mem` is in pages: `connwatch_sockstat_tcp_mem_bytes`, as node_exporter's
  `node_sockstat_TCP_mem_bytes`).
- Sysctls: `connwatch_sysctl_<dotted name with _>` (`connwatch_sysctl_net_core_somaxconn`, node_exporter's
  sysctl collector names it `node_sysctl_net_core_somaxconn`); the size of the ephemeral range, which
  is computed, is `connwatch_ephemeral_ports`.
Every series carries the namespace labels (outputs/prom_netns.py: netns, container, pod; empty for
connwatch's own namespace), one series per sampled namespace. By default (`--kernel-counters needed`)
only the counters and sockstat values some attribute reads are exported (`inputs` in the attribute
registry); node_exporter exports the rest. `all` exports every TCP counter connwatch read.

The families of release 0.1 (`connwatch_kernel_counter_total{counter}`, `connwatch_sockstat{key}`,
`connwatch_sysctl{sysctl}`) are kept, unchanged, while `--legacy-metrics on` (the default of this
release); they put the metric in a label, and promtool flags the first for "counter" in its name.
"""

from __future__ import annotations

import functools
import re
import resource
from collections.abc import Collection, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from connwatch.model import Snapshot, Sysctls
from connwatch.outputs.prom_netns import NS_LABELS

# /proc/net/snmp "Tcp" fields that are settings or gauges, not counters.
NOT_COUNTERS = frozenset({"Tcp.RtoAlgorithm", "Tcp.RtoMin", "Tcp.RtoMax", "Tcp.MaxConn", "Tcp.CurrEstab"})
_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SYSCTL_NAMES = {"somaxconn": "net.core.somaxconn", "nf_conntrack_max": "net.netfilter.nf_conntrack_max",
                 "file_max": "fs.file-max"}  # every other field is net.ipv4.<field>
_SYSCTL_UNITS = {"tcp_tw_reuse_delay": "milliseconds", "tcp_fin_timeout": "seconds"}


def snake(name: str) -> str:
    """`TCPReqQFullDrop` -> `tcp_req_q_full_drop`, `ListenOverflows` -> `listen_overflows`."""
    return _WORD.sub("_", name).lower()


@functools.lru_cache(maxsize=4096)  # (a few hundred names, asked for every namespace at every sample)
def counter_metric(counter: str) -> str:
    """The metric name of a kernel counter as nstat prints it (`TcpExt.ListenOverflows`), without _total."""
    section, _, field = counter.partition(".")
    return f"connwatch_netstat_{section.lower()}_{snake(field)}"


@functools.lru_cache(maxsize=1024)
def sockstat_metric(key: str) -> tuple[str, int]:
    """Metric name and multiplier of a sockstat key (`TCP.mem` counts pages: bytes, like node_exporter)."""
    proto, _, field = key.partition(".")
    if field == "mem":
        return f"connwatch_sockstat_{proto.lower()}_mem_bytes", resource.getpagesize()
    if field == "memory":
        return f"connwatch_sockstat_{proto.lower()}_memory_bytes", 1
    return f"connwatch_sockstat_{proto.lower()}_{snake(field)}", 1


def sysctl_metric(field: str) -> str:
    return "connwatch_sysctl_" + dotted_sysctl(field).replace(".", "_").replace("-", "_")


def dotted_sysctl(field: str) -> str:
    return _SYSCTL_NAMES.get(field, f"net.ipv4.{field}")


Labelled = Sequence[tuple[Sequence[str], Snapshot]]  # (netns, container, pod) label values, the namespace's sample


Row = tuple[type[Metric], str, str, Sample]  # family kind, metric name, help, one series of a namespace


class KernelRows:
    """Each namespace's kernel series (its rows) in three parts, counters, sockstat and sysctls, each kept while
    its input is the last sample's: with 100 idle namespaces, building them again was ~20 ms of CPU per sample.
    Per part, because sockstat's host-wide fields (TCP orphan, alloc, mem) move in every namespace whenever any
    socket on the host comes or goes, so a key of all three missed for nearly every namespace at every sample
    (`--netns all`, 100 idle namespaces, a busy one: 96 of 101 rebuilt; now only their sockstat rows)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, ...], tuple[tuple[object, ...], tuple[list[Row], list[Row], list[Row]]]] = {}

    def rows(self, snaps: Labelled, needed: Collection[str] | None) -> list[list[Row]]:
        """namespace_rows() of each namespace, in order; each part the last one while its input is unchanged."""
        out: list[list[Row]] = []
        kept: dict[tuple[str, ...], tuple[tuple[object, ...], tuple[list[Row], list[Row], list[Row]]]] = {}
        for labels, snap in snaps:
            ns = tuple(labels)
            key: tuple[object, ...] = (snap.counters, snap.sockstat, snap.sysctls, needed)
            last = self._last.get(ns)
            if last is None or last[0][3] != needed:
                parts = _counter_rows(labels, snap, needed), _sockstat_rows(labels, snap, needed), _sysctl_rows(
                    labels, snap)
            else:
                (counters, sockstat, sysctls, _), (c, k, y) = last
                parts = (c if counters == snap.counters else _counter_rows(labels, snap, needed),
                         k if sockstat == snap.sockstat else _sockstat_rows(labels, snap, needed),
                         y if sysctls == snap.sysctls else _sysctl_rows(labels, snap))
            kept[ns] = (key, parts)
            out.append([*parts[0], *parts[1], *parts[2]])  # (counter and sockstat names never meet)
        self._last = kept  # (a namespace not sampled any more is forgotten)
        return out


def _series(kind: type[Metric], name: str, labels: Sequence[str], value: float) -> Sample:
    """What kind(name).add_metric(labels, value) adds, its empty namespace labels left out
    (prom_netns.without_empty)."""
    return Sample(f"{name}_total" if kind is CounterMetricFamily else name,
                  {k: v for k, v in zip(NS_LABELS, labels, strict=True) if v}, value, None)


def kernel_families(snaps: Labelled, needed: Collection[str] | None, memo: KernelRows | None = None) -> list[Metric]:
    """One family per counter / sockstat value (only those in `needed` unless it is None) and sysctl, one
    series per namespace (empty namespace labels left out). `memo`: rows of unchanged namespaces reused."""
    by_name: dict[str, Metric] = {}
    for rows in (memo.rows(snaps, needed) if memo is not None else
                 [namespace_rows(labels, snap, needed) for labels, snap in snaps]):
        for kind, name, doc, series in rows:
            fam = by_name.get(name)
            if fam is None:
                fam = by_name[name] = kind(name, doc, labels=list(NS_LABELS))  # type: ignore[call-arg]
            fam.samples.append(series)
    return list(by_name.values())


def namespace_rows(labels: Sequence[str], snap: Snapshot, needed: Collection[str] | None) -> list[Row]:
    """The kernel series of one namespace, in kernel_families' order."""
    return [*_counter_rows(labels, snap, needed), *_sockstat_rows(labels, snap, needed), *_sysctl_rows(labels, snap)]


def _counter_rows(labels: Sequence[str], snap: Snapshot, needed: Collection[str] | None) -> list[Row]:
    out: list[Row] = []
    seen: set[str] = set()
    # (the counters needed and found, sorted, not all ~400 sorted and ~390 skipped at every sample: this
    # function took 0.39 ms, 0.13 ms this way, 13 needed of 397 read, bench_agent's load, min of 5x100, load
    # 1.1; tests/unit/test_prom_kernel_rows.py compares it with the walk over them all)
    counters = snap.counters
    for name in sorted(counters if needed is None else counters.keys() & needed):
        value = counters[name]
        if not name.startswith(("Tcp.", "TcpExt.")) or name in NOT_COUNTERS or value < 0:
            continue
        metric = counter_metric(name)
        if metric not in seen:
            seen.add(metric)
            out.append((CounterMetricFamily, metric, f"Kernel counter {name} (/proc/net/netstat, /proc/net/snmp; "
                        "nstat's name)", _series(CounterMetricFamily, metric, labels, value)))
    return out


def _sockstat_rows(labels: Sequence[str], snap: Snapshot, needed: Collection[str] | None) -> list[Row]:
    out: list[Row] = []
    seen: set[str] = set()
    for key, value in sorted(snap.sockstat.items()):
        if needed is not None and key not in needed:
            continue
        metric, factor = sockstat_metric(key)
        if metric not in seen:
            seen.add(metric)
            out.append((GaugeMetricFamily, metric, f"/proc/net/sockstat{{,6}} {key}"
                        + (" (pages x page size)" if factor != 1 else ""),
                        _series(GaugeMetricFamily, metric, labels, value * factor)))
    return out


def _sysctl_rows(labels: Sequence[str], snap: Snapshot) -> list[Row]:
    out: list[Row] = []
    _sysctls(out, labels, snap.sysctls)
    return out


def _gauge(out: list[Row], name: str, doc: str, labels: Sequence[str], value: float) -> None:
    out.append((GaugeMetricFamily, name, doc, _series(GaugeMetricFamily, name, labels, value)))


def _sysctls(out: list[Row], labels: Sequence[str], s: Sysctls) -> None:
    for name in Sysctls.__dataclass_fields__:
        value = getattr(s, name)
        if isinstance(value, int):
            unit = f" ({_SYSCTL_UNITS[name]})" if name in _SYSCTL_UNITS else ""
            _gauge(out, sysctl_metric(name), f"Sysctl {dotted_sysctl(name)}{unit}; absent = "
                   "unreadable (or not applicable in the namespace)", labels, value)
    if s.ip_local_port_range is not None:
        low, high = s.ip_local_port_range
        base = sysctl_metric("ip_local_port_range")
        _gauge(out, f"{base}_low", "Sysctl net.ipv4.ip_local_port_range, first port", labels, low)
        _gauge(out, f"{base}_high", "Sysctl net.ipv4.ip_local_port_range, last port", labels, high)
        _gauge(out, "connwatch_ephemeral_ports", "Ports in net.ipv4.ip_local_port_range (before "
               "reserved and listening ports are taken out)", labels, max(high - low + 1, 0))
    if s.tcp_mem is not None:
        base = sysctl_metric("tcp_mem")
        for part, pages in zip(("min", "pressure", "max"), s.tcp_mem, strict=True):
            _gauge(out, f"{base}_{part}", f"Sysctl net.ipv4.tcp_mem, {part} (pages)", labels, pages)


# -- release 0.1 families (--legacy-metrics on) ----------------------------------


def legacy_kernel_families(snap: Snapshot) -> list[Metric]:
    """The 0.1 families, value for value: deprecated, removed in the release after next."""
    counters = CounterMetricFamily("connwatch_kernel_counter", "Deprecated (use connwatch_netstat_*): kernel TCP "
                                   "counters from /proc/net/netstat and /proc/net/snmp (name as nstat prints it, "
                                   "with a dot)", labels=["counter"])
    # (each series made as add_metric makes it, without its call: ~150 series, 0.47 -> 0.39 ms per sample;
    # min of 7x100, 3 interleaved runs, load 1.5-1.8; tests/unit/test_prom_kernel_rows.py)
    counters.samples += [Sample("connwatch_kernel_counter_total", {"counter": name}, value, None)
                         for name, value in sorted(snap.counters.items())
                         if name.startswith(("Tcp.", "TcpExt.")) and name not in NOT_COUNTERS and value >= 0]
    sockstat = GaugeMetricFamily("connwatch_sockstat", "Deprecated (use connwatch_sockstat_*): "
                                 "/proc/net/sockstat{,6} values", labels=["key"])
    for key, value in sorted(snap.sockstat.items()):
        sockstat.add_metric([key], value)
    return [counters, sockstat, _legacy_sysctl_family(snap.sysctls)]


def _legacy_sysctl_family(s: Sysctls) -> Metric:
    fam = GaugeMetricFamily("connwatch_sysctl", "Deprecated (use connwatch_sysctl_*): kernel settings that decide "
                            "how connections are turned away (absent = unreadable)", labels=["sysctl"])
    for name in Sysctls.__dataclass_fields__:
        value = getattr(s, name)
        if isinstance(value, int):
            fam.add_metric([name], value)
    if s.ip_local_port_range is not None:
        low, high = s.ip_local_port_range
        fam.add_metric(["ip_local_port_range_low"], low)
        fam.add_metric(["ip_local_port_range_high"], high)
        fam.add_metric(["ephemeral_ports"], max(high - low + 1, 0))
    if s.tcp_mem is not None:
        for name, pages in zip(("tcp_mem_min", "tcp_mem_pressure", "tcp_mem_max"), s.tcp_mem, strict=True):
            fam.add_metric([name], pages)
    return fam
