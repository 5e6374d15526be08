"""Namespace labels on /metrics (issue 11): every sampled network namespace's series, bounded.

Every per-listener and per-namespace family carries `netns` (the `ip netns` name, else `netns:[inode]`),
`container` and `pod` (their names as `check` prints them), each empty when unknown; connwatch's own
namespace has all three empty. An empty label is no label to Prometheus, so empty ones are left out of
the text (`without_empty`): the own namespace's series are the very series they were before these labels.
`connwatch_netns_info` (1) names each exported namespace
(inode, pid and command of its representative process) for joins.

Bounded: at most MAX_NAMESPACES namespaces are exported, the own first, then those whose listeners
queue or drop, then by label; `connwatch_namespaces_omitted` counts the rest (their alerts are still
exported, in `connwatch_alert_*`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from connwatch.model import Container, NetnsInfo, Pod, Snapshot

NS_LABELS = ("netns", "container", "pod")
_NS = frozenset(NS_LABELS)
MAX_NAMESPACES = 100
OWN = ("", "", "")


def without_empty(families: Sequence[Metric]) -> list[Metric]:
    """The families with their empty namespace labels left out (the same series to Prometheus). A sample
    without an empty namespace label is kept as it is (the same object: a family kept from the last sample is
    then taken whole from the last /metrics rendering, agent/metrics_cache.py), another made by its class from
    its fields in order (not _replace: 392 samples, as a full sample at 100k sockets makes, 1.1 ms of CPU
    instead of 1.9 ms)."""
    for fam in families:
        out = []
        for s in fam.samples:
            labels = s[1]
            if not _NS.isdisjoint(labels) and "" in labels.values():
                s = s.__class__(s[0], {k: v for k, v in labels.items() if v or k not in _NS}, *s[2:])
            out.append(s)
        fam.samples = out
    return list(families)


def ns_values(info: NetnsInfo | None) -> tuple[str, str, str]:
    """(netns, container, pod) label values of a namespace; empty for connwatch's own."""
    if info is None or info.own:
        return OWN
    return (info.name or f"netns:[{info.inode}]", info.container.label if info.container is not None else "",
            info.pod.label if info.pod is not None else "")


def ns_values_of(data: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """The same from the JSON form of a namespace (snapshot_json.netns_dict: measurement notes, alerts)."""
    if not data or data.get("own"):
        return OWN
    if "inode" not in data:  # an alert whose namespace detail was not kept: its key
        return (str(data.get("key", "")), "", "")
    container = Container(**data["container"]) if data.get("container") else None
    pod = Pod(**data["pod"]) if data.get("pod") else None
    return ns_values(NetnsInfo(int(data["inode"]), data.get("name"), container, pod))


def bounded_namespaces(own: Snapshot, others: Sequence[Snapshot]) -> tuple[list[Snapshot], int]:
    """The namespaces to export (own first) and how many are left out."""
    ranked = sorted(others, key=lambda s: (not any(x.drops or x.queue for x in s.listeners), ns_values(s.netns)))
    kept = [own, *ranked[:MAX_NAMESPACES - 1]]
    return kept, len(others) + 1 - len(kept)


class Ranked:
    """bounded_namespaces(), answered again for the same own snapshot and sequence of others (objects): the
    agent asks once per full sample and listener poll (the listener families' key), ranking 100 namespaces
    by their 5,000 listeners each time."""

    def __init__(self) -> None:
        self._last: tuple[Snapshot, Sequence[Snapshot], tuple[list[Snapshot], int]] | None = None

    def __call__(self, own: Snapshot, others: Sequence[Snapshot]) -> tuple[list[Snapshot], int]:
        last = self._last
        if last is not None and last[0] is own and last[1] is others:
            return list(last[2][0]), last[2][1]
        got = bounded_namespaces(own, others)
        self._last = (own, others, (list(got[0]), got[1]))
        return got


def netns_families(snaps: Sequence[Snapshot], omitted: int) -> list[Metric]:
    info = GaugeMetricFamily("connwatch_netns_info", "A network namespace connwatch exports series of (1): "
                             "its nsfs inode, representative process and command", labels=[*NS_LABELS, "inode",
                                                                                            "pid", "command"])
    for snap in snaps:
        n = snap.netns
        if n is not None:
            info.add_metric([*ns_values(n), str(n.inode), "" if n.pid is None else str(n.pid), n.command or ""], 1)
    gone = GaugeMetricFamily("connwatch_namespaces_omitted", f"Sampled network namespaces whose series are not "
                             f"exported (beyond the bound of {MAX_NAMESPACES})", value=omitted)
    return [info, gone]
