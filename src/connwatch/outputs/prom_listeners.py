"""/metrics listener families (`connwatch_listener_*`): one series per namespace, port, address and family
(SO_REUSEPORT sockets summed), at most MAX_LISTENER_GROUPS over every namespace, those with drops or a queue
first.

They are rebuilt at a listener poll (every second) whenever any exported listener changed. `ListenerGroups`
keeps each namespace's groups while its listeners are the same objects (a poll whose replies are byte for byte
the last one's reuses them, collect_netns.py and agent/poll.py) with the same peaks, so one busy namespace
among 100 idle ones regroups its own listeners, not all 5,000. The samples are made without their empty
namespace labels (the series prom_netns.without_empty makes of them, built once instead of twice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from connwatch.model import Listener
from connwatch.outputs.prom_netns import NS_LABELS

MAX_LISTENER_GROUPS = 1000
LISTENER_LABELS = ("port", "address", "family")

GroupKey = tuple[str, str, str, int, str, int]  # netns, container, pod, port, address, family
Labelled = Sequence[tuple[tuple[str, str, str], Sequence[Listener]]]  # namespace label values, its listeners
Peaks = Mapping[tuple[int, int, int, str], int]


@dataclass(slots=True)
class Group:
    queue: int = 0
    peak: int = 0
    backlog: int | None = 0
    drops: int | None = 0
    sockets: int = 0
    owner: tuple[str, str, str] | None = None  # command, user, pid


def group_listeners(sets: Labelled, peaks: Peaks) -> dict[GroupKey, Group]:
    groups: dict[GroupKey, Group] = {}
    for ns, listeners in sets:
        for lst in listeners:
            g = groups.setdefault((*ns, lst.port, lst.address, lst.family), Group())
            g.queue += lst.queue
            g.peak += max(lst.queue, peaks.get(lst.identity, 0))
            g.backlog = None if g.backlog is None or lst.backlog is None else g.backlog + lst.backlog
            g.drops = None if g.drops is None or lst.drops is None else g.drops + lst.drops
            g.sockets += 1
            if g.owner is None and lst.owner is not None:
                o = lst.owner
                g.owner = (o.command, o.user or "", str(o.pid))
    return groups


class ListenerGroups:
    """group_listeners, each namespace's groups kept while its listeners are the same objects with the same
    peaks (its Group objects are never changed once made). Measured (100 namespaces of 50 idle listeners, one
    busy: CPU per poll that rebuilt the families): see the README's agent figures."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str, str], tuple[Sequence[Listener], tuple[int, ...], dict[GroupKey, Group]]] = {}

    def __call__(self, sets: Labelled, peaks: Peaks) -> dict[GroupKey, Group]:
        out: dict[GroupKey, Group] = {}
        kept: dict[tuple[str, str, str], tuple[Sequence[Listener], tuple[int, ...], dict[GroupKey, Group]]] = {}
        for ns, listeners in sets:
            if ns in kept:  # two namespaces with the same labels: their groups add up, as one
                self._kept = {}
                return group_listeners(sets, peaks)
            marks = tuple(peaks.get(x.identity, -1) for x in listeners)
            last = self._kept.get(ns)
            if last is not None and last[0] is listeners and last[1] == marks:
                groups = last[2]
            else:
                groups = group_listeners(((ns, listeners),), peaks)
            kept[ns] = (listeners, marks, groups)
            out.update(groups)
        self._kept = kept
        return out


def bounded_groups(groups: Mapping[GroupKey, Group], bound: int = MAX_LISTENER_GROUPS) -> list[tuple[GroupKey, Group]]:
    """At most `bound` over every namespace, those with drops or a queue first, then by namespace (the own
    first) and port."""
    if len(groups) <= bound:
        return sorted(groups.items(), key=lambda kv: kv[0])
    ranked = sorted(groups.items(), key=lambda kv: (not (kv[1].drops or kv[1].peak), kv[0]))
    return sorted(ranked[:bound], key=lambda kv: kv[0])


def listener_families(sets: Labelled, peaks: Peaks, grouped: dict[GroupKey, Group] | None = None,
                      bound: int = MAX_LISTENER_GROUPS) -> list[Metric]:
    """The families, their samples without empty namespace labels (`grouped`: group_listeners(sets, peaks)
    made already, by a ListenerGroups)."""
    labels = [*NS_LABELS, *LISTENER_LABELS]
    queue = GaugeMetricFamily("connwatch_listener_queue", "Accept-queue length now (idiag_rqueue), "
                              "summed over SO_REUSEPORT sockets", labels=labels)
    peak = GaugeMetricFamily("connwatch_listener_queue_peak", "Largest accept-queue length seen since "
                             "the previous full sample (listeners are polled between samples)", labels=labels)
    backlog = GaugeMetricFamily("connwatch_listener_backlog", "Listen backlog in force (idiag_wqueue)",
                                labels=labels)
    drops = CounterMetricFamily("connwatch_listener_drops", "SYNs/ACKs this listener dropped "
                                "(SK_MEMINFO_DROPS; a client retry counts again)", labels=labels)
    socks = GaugeMetricFamily("connwatch_listener_sockets", "LISTEN sockets behind this label set",
                              labels=labels)
    owner = GaugeMetricFamily("connwatch_listener_owner_info", "Process owning the listener (1)",
                              labels=[*labels, "command", "user", "pid"])
    groups = group_listeners(sets, peaks) if grouped is None else grouped
    q, p, b, d, s, o = (f.samples for f in (queue, peak, backlog, drops, socks, owner))
    for (netns, container, pod, port, address, family), g in bounded_groups(groups, bound):
        lab = {k: v for k, v in (("netns", netns), ("container", container), ("pod", pod)) if v}
        lab.update(port=str(port), address=address, family=str(family))
        q.append(Sample("connwatch_listener_queue", lab, g.queue))
        p.append(Sample("connwatch_listener_queue_peak", lab, g.peak))
        s.append(Sample("connwatch_listener_sockets", lab, g.sockets))
        if g.backlog is not None:
            b.append(Sample("connwatch_listener_backlog", lab, g.backlog))
        if g.drops is not None:
            d.append(Sample("connwatch_listener_drops_total", lab, g.drops))
        if g.owner is not None:
            o.append(Sample("connwatch_listener_owner_info", {**lab, "command": g.owner[0], "user": g.owner[1],
                                                               "pid": g.owner[2]}, 1))
    omitted = GaugeMetricFamily("connwatch_listeners_omitted", "Listener label sets not exported "
                                f"(beyond the bound of {bound}, over every namespace)",
                                value=max(len(groups) - bound, 0))
    return [queue, peak, backlog, drops, socks, owner, omitted]
