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


Kept = tuple[Sequence[Listener], tuple[int, ...], dict[GroupKey, Group], list[tuple[GroupKey, Group]]]


def _first(kv: tuple[GroupKey, Group]) -> GroupKey:
    return kv[0]


class ListenerGroups:
    """group_listeners, each namespace's groups kept while its listeners are the same objects with the same
    peaks (its Group objects are never changed once made). Measured (100 namespaces of 50 idle listeners, one
    busy: CPU per poll that rebuilt the families): see the README's agent figures."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str, str], Kept] = {}
        self.ordered: list[tuple[GroupKey, Group]] = []  # the last call's groups in key order (bounded_sorted)
        self._ids: dict[int, tuple[Sequence[Listener], frozenset[tuple[int, int, int, str]]]] = {}

    def __call__(self, sets: Labelled, peaks: Peaks) -> dict[GroupKey, Group]:
        out: dict[GroupKey, Group] = {}
        kept: dict[tuple[str, str, str], Kept] = {}
        ids: dict[int, tuple[Sequence[Listener], frozenset[tuple[int, int, int, str]]]] = {}
        for ns, listeners in sets:
            if ns in kept:  # two namespaces with the same labels: their groups add up, as one
                self._kept, self._ids = {}, {}
                out = group_listeners(sets, peaks)
                self.ordered = sorted(out.items(), key=_first)
                return out
            marks = self._marks(listeners, peaks, ids)
            last = self._kept.get(ns)
            if last is None or last[0] is not listeners or last[1] != marks:
                groups = group_listeners(((ns, listeners),), peaks)
                last = (listeners, marks, groups, sorted(groups.items(), key=_first))
            kept[ns] = last
            out.update(last[2])
        self._kept, self._ids = kept, ids
        # a namespace's keys all start with its labels: the key order is the namespaces' order, each in its own
        self.ordered = [kv for ns in sorted(kept) for kv in kept[ns][3]]
        return out

    def _marks(self, listeners: Sequence[Listener], peaks: Peaks,
               ids: dict[int, tuple[Sequence[Listener], frozenset[tuple[int, int, int, str]]]]) -> tuple[int, ...]:
        """The peaks of these listeners, () when none has one: the identities of a tuple are kept while it is the
        same object, and only the few peaks are looked up in them (5,000 idle listeners: 1.5 ms per call less)."""
        last = self._ids.get(id(listeners))
        known = last[1] if last is not None and last[0] is listeners else frozenset(x.identity for x in listeners)
        ids[id(listeners)] = (listeners, known)
        if known.isdisjoint(peaks):
            return ()
        return tuple(peaks.get(x.identity, -1) for x in listeners)


def bounded_groups(groups: Mapping[GroupKey, Group], bound: int = MAX_LISTENER_GROUPS) -> list[tuple[GroupKey, Group]]:
    """At most `bound` over every namespace, those with drops or a queue first, then by namespace (the own
    first) and port."""
    if len(groups) <= bound:
        return sorted(groups.items(), key=lambda kv: kv[0])
    ranked = sorted(groups.items(), key=lambda kv: (not (kv[1].drops or kv[1].peak), kv[0]))
    return sorted(ranked[:bound], key=lambda kv: kv[0])


def bounded_sorted(ordered: Sequence[tuple[GroupKey, Group]], bound: int = MAX_LISTENER_GROUPS
                   ) -> list[tuple[GroupKey, Group]]:
    """bounded_groups of groups already in key order, in one pass instead of two sorts (5,000 groups: 2.5 ms)."""
    if len(ordered) <= bound:
        return list(ordered)
    hot = sum(1 for _k, g in ordered if g.drops or g.peak)
    if hot >= bound:
        return [kv for kv in ordered if kv[1].drops or kv[1].peak][:bound]
    cold = bound - hot
    out = []
    for kv in ordered:
        if kv[1].drops or kv[1].peak:
            out.append(kv)
        elif cold:
            out.append(kv)
            cold -= 1
    return out


GroupSamples = tuple[Sample, Sample, Sample, Sample | None, Sample | None, Sample | None]  # queue .. owner


class ListenerSamples:
    """Each group's samples, made once per Group object (a Group is never changed once made, and ListenerGroups
    keeps a namespace's while its listeners stand). A poll that regrouped one busy namespace among 100 idle ones
    then hands out the last families' Sample objects for all the others, which the /metrics rendering takes line
    by line without writing their values again (agent/metrics_cache.py again()). Measured: see
    docs/benchmarks.md (twelfth pass)."""

    def __init__(self) -> None:
        self._made: dict[GroupKey, tuple[Group, GroupSamples]] = {}

    def samples(self, chosen: list[tuple[GroupKey, Group]]) -> list[GroupSamples]:
        made: dict[GroupKey, tuple[Group, GroupSamples]] = {}
        out = []
        for key, g in chosen:
            last = self._made.get(key)
            got = last[1] if last is not None and last[0] is g else group_samples(key, g)
            made[key] = (g, got)
            out.append(got)
        self._made = made
        return out


def group_samples(key: GroupKey, g: Group) -> GroupSamples:
    """One group's series (queue, peak, sockets, backlog, drops, owner; None where it has none)."""
    netns, container, pod, port, address, family = key
    lab = {k: v for k, v in (("netns", netns), ("container", container), ("pod", pod)) if v}
    lab.update(port=str(port), address=address, family=str(family))
    return (Sample("connwatch_listener_queue", lab, g.queue),
            Sample("connwatch_listener_queue_peak", lab, g.peak),
            Sample("connwatch_listener_sockets", lab, g.sockets),
            None if g.backlog is None else Sample("connwatch_listener_backlog", lab, g.backlog),
            None if g.drops is None else Sample("connwatch_listener_drops_total", lab, g.drops),
            None if g.owner is None else Sample("connwatch_listener_owner_info", {
                **lab, "command": g.owner[0], "user": g.owner[1], "pid": g.owner[2]}, 1))


def listener_families(sets: Labelled, peaks: Peaks, grouped: dict[GroupKey, Group] | None = None,
                      bound: int = MAX_LISTENER_GROUPS, kept: ListenerSamples | None = None,
                      ordered: Sequence[tuple[GroupKey, Group]] | None = None) -> list[Metric]:
    """The families, their samples without empty namespace labels (`grouped`: group_listeners(sets, peaks)
    made already, by a ListenerGroups, and `ordered` its ordered: the same groups in key order; `kept`: the
    samples of groups that were in the last families)."""
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
    chosen = bounded_groups(groups, bound) if ordered is None else bounded_sorted(ordered, bound)
    made = [group_samples(k, g) for k, g in chosen] if kept is None else kept.samples(chosen)
    q, p, s, b, d, o = (f.samples for f in (queue, peak, socks, backlog, drops, owner))
    for x in made:
        q.append(x[0])
        p.append(x[1])
        s.append(x[2])
        if x[3] is not None:
            b.append(x[3])
        if x[4] is not None:
            d.append(x[4])
        if x[5] is not None:
            o.append(x[5])
    omitted = GaugeMetricFamily("connwatch_listeners_omitted", "Listener label sets not exported "
                                f"(beyond the bound of {bound}, over every namespace)",
                                value=max(len(groups) - bound, 0))
    return [queue, peak, backlog, drops, socks, owner, omitted]
