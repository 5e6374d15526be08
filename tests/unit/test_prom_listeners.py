"""/metrics listener families (outputs/prom_listeners.py): the samples made without empty namespace labels are
the series the families made by add_metric then prom_netns.without_empty were, and ListenerGroups' kept groups
give what grouping everything again gives, poll after poll."""

from __future__ import annotations

import random
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from connwatch.model import Listener, Process
from connwatch.outputs.prom_listeners import (
    LISTENER_LABELS,
    Group,
    GroupKey,
    ListenerGroups,
    ListenerSamples,
    Peaks,
    bounded_groups,
    bounded_sorted,
    group_listeners,
    listener_families,
)
from connwatch.outputs.prom_netns import NS_LABELS, OWN, without_empty

from .builders import listener

Sets = list[tuple[tuple[str, str, str], Sequence[Listener]]]


def _reference(sets: Sets, peaks: Peaks, bound: int) -> list[Metric]:
    """The families as prometheus.py built them before (add_metric, then without_empty)."""
    labels = [*NS_LABELS, *LISTENER_LABELS]
    fams: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily("connwatch_listener_queue", "Accept-queue length now (idiag_rqueue), summed over "
                              "SO_REUSEPORT sockets", labels=labels),
            GaugeMetricFamily("connwatch_listener_queue_peak", "Largest accept-queue length seen since the previous "
                              "full sample (listeners are polled between samples)", labels=labels),
            GaugeMetricFamily("connwatch_listener_backlog", "Listen backlog in force (idiag_wqueue)", labels=labels),
            CounterMetricFamily("connwatch_listener_drops", "SYNs/ACKs this listener dropped (SK_MEMINFO_DROPS; a "
                                "client retry counts again)", labels=labels),
            GaugeMetricFamily("connwatch_listener_sockets", "LISTEN sockets behind this label set", labels=labels),
            GaugeMetricFamily("connwatch_listener_owner_info", "Process owning the listener (1)",
                              labels=[*labels, "command", "user", "pid"])]
    queue, peak, backlog, drops, socks, owner = fams
    groups = group_listeners(sets, peaks)
    for key, g in bounded_groups(groups, bound):
        values = [key[0], key[1], key[2], str(key[3]), key[4], str(key[5])]
        queue.add_metric(values, g.queue)
        peak.add_metric(values, g.peak)
        socks.add_metric(values, g.sockets)
        if g.backlog is not None:
            backlog.add_metric(values, g.backlog)
        if g.drops is not None:
            drops.add_metric(values, g.drops)
        if g.owner is not None:
            owner.add_metric([*values, *g.owner], 1)
    omitted = GaugeMetricFamily("connwatch_listeners_omitted", "Listener label sets not exported "
                                f"(beyond the bound of {bound}, over every namespace)",
                                value=max(len(groups) - bound, 0))
    return without_empty([*fams, omitted])


def _text(families: list[Metric]) -> bytes:
    class Fixed:
        def collect(self) -> list[Metric]:
            return families

    registry = CollectorRegistry()
    registry.register(Fixed())
    return generate_latest(registry)


def _key(labels: dict[str, str]) -> GroupKey:
    return (labels.get("netns", ""), labels.get("container", ""), labels.get("pod", ""), int(labels["port"]),
            labels["address"], int(labels["family"]))


def _random_sets(rng: random.Random, spaces: int) -> Sets:
    sets: Sets = []
    for i in range(spaces):
        ns = OWN if i == 0 else (f"ns{i}", rng.choice(["", f"c{i}"]), rng.choice(["", f"shop/p{i}"]))
        lst = []
        for j in range(rng.randint(0, 8)):
            port = 8000 + rng.randint(0, 4)  # repeats: SO_REUSEPORT groups
            owner = Process(pid=100 + j, command="srv", user=rng.choice([None, "www"])) if rng.random() < 0.5 else None
            lst.append(listener(port, queue=rng.choice([0, 0, 3]), backlog=rng.choice([128, None]),
                                drops=rng.choice([0, 0, 7, None]), family=rng.choice([4, 6]),
                                inode=i * 1000 + j, owner=owner))
        sets.append((ns, tuple(lst)))
    return sets


def test_the_samples_are_the_series_without_empty_made_before() -> None:
    rng = random.Random(17)
    for bound in (1000, 5):
        for _ in range(30):
            sets = _random_sets(rng, rng.randint(1, 6))
            peaks = {x.identity: rng.randint(0, 9) for _ns, lst in sets for x in lst if rng.random() < 0.3}
            got = listener_families(sets, peaks, bound=bound)
            assert _text(got) == _text(_reference(sets, peaks, bound))
            assert [s.labels for f in got for s in f.samples] == [
                s.labels for f in _reference(sets, peaks, bound) for s in f.samples]


def test_kept_groups_equal_grouping_everything_again_poll_after_poll() -> None:
    """Polls where one namespace's listeners change (new objects), a peak rises on an unchanged one, a namespace
    comes and goes, two namespaces share labels (their groups add up): each poll's groups, and so its
    families, are those of grouping every listener again."""
    rng = random.Random(5)
    kept = ListenerGroups()
    samples = {1000: ListenerSamples(), 7: ListenerSamples()}
    last: dict[int, dict[GroupKey, tuple[Group, Sample]]] = {1000: {}, 7: {}}
    reused = {1000: 0, 7: 0}
    sets = _random_sets(rng, 8)
    peaks: dict[tuple[int, int, int, str], int] = {}
    for poll in range(60):
        i = rng.randrange(len(sets))
        ns, lst = sets[i]
        change = poll % 5
        if change == 0 and lst:  # a new poll reply: new objects, a queue moved
            sets[i] = (ns, tuple(listener(x.port, queue=x.queue + 1, backlog=x.backlog, drops=x.drops,
                                          family=x.family, inode=x.inode) for x in lst))
        elif change == 1 and lst:  # the same objects, a higher peak
            peaks[lst[0].identity] = peaks.get(lst[0].identity, 0) + 2
        elif change == 2:  # a namespace goes, another comes
            sets.pop(i)
            sets.append(_random_sets(rng, 2)[1])
        elif change == 3 and len(sets) > 2:  # two namespaces with the same labels
            sets.append((sets[1][0], _random_sets(rng, 2)[1][1]))
        elif change == 4 and len(sets) > 2 and sets[-1][0] == sets[1][0]:
            sets.pop()
        got = kept(sets, peaks)
        assert got == group_listeners(sets, peaks)
        assert kept.ordered == sorted(got.items(), key=lambda kv: kv[0])
        for bound in (1000, 7):
            made = listener_families(sets, peaks, got, bound, samples[bound], kept.ordered)
            assert _text(made) == _text(listener_families(sets, peaks, bound=bound))
            queues = {_key(x.labels): x for x in made[0].samples}  # (connwatch_listener_queue)
            chosen = dict(bounded_groups(got, bound))
            # a group kept (the same object, chosen again) hands out the very Sample objects of the last families
            kept_groups = [k for k, g in chosen.items() if k in last[bound] and last[bound][k][0] is g]
            assert all(queues[k] is last[bound][k][1] for k in kept_groups)
            reused[bound] += len(kept_groups)
            last[bound] = {k: (g, queues[k]) for k, g in chosen.items()}
    assert reused[1000] > 10 and reused[7] > 5, reused  # (the test saw groups kept)


def test_an_unchanged_namespace_is_not_grouped_again() -> None:
    kept = ListenerGroups()
    idle = (("idle", "", ""), (listener(80), listener(443)))
    busy_ns = ("busy", "", "")
    first = kept([idle, (busy_ns, (listener(8080, queue=1),))], {})
    second = kept([idle, (busy_ns, (listener(8080, queue=2),))], {})
    idle_key = ("idle", "", "", 80, "0.0.0.0", 4)
    busy_key = ("busy", "", "", 8080, "0.0.0.0", 4)
    assert second[idle_key] is first[idle_key]  # kept: the same Group object
    assert second[busy_key] is not first[busy_key] and second[busy_key].queue == 2
    third = kept([idle, (busy_ns, (listener(8080, queue=2),))], {idle[1][0].identity: 5})
    assert third[idle_key] is not first[idle_key] and third[idle_key].peak == 5


def test_bounded_sorted_chooses_what_bounded_groups_does() -> None:
    """Groups with drops or a peak first, then by key, at most `bound`, in key order: also when more are hot
    than the bound allows, or all fit."""
    rng = random.Random(23)
    for _ in range(200):
        groups = group_listeners(_random_sets(rng, rng.randint(1, 9)), {})
        for g in groups.values():
            g.peak = rng.choice([0, 0, 0, 2])
        ordered = sorted(groups.items(), key=lambda kv: kv[0])
        hot = sum(1 for g in groups.values() if g.drops or g.peak)
        for bound in {1, 3, hot, hot + 1, len(groups), len(groups) + 1} - {0}:
            assert bounded_sorted(ordered, bound) == bounded_groups(groups, bound), (bound, hot, len(groups))
