"""Every attribute's measured value on /metrics, one gauge per attribute, named from the registry.

`connwatch_attribute_<attribute in snake case>[_percent]`, e.g. `connwatch_attribute_backlog_rejects_by_port`
(requests rejected in the last sample interval) or `connwatch_attribute_ephemeral_port_usage_percent`,
labelled with the namespace (`netns`, as on every per-namespace series: "" for connwatch's own) and the
attribute's resource keys (port, destination, local_address, source; "" where the resource has none).
The value is the one the agent judged, before any rule: the generated Prometheus rules
(outputs/promrules.py) compare it with the same limits, so they reach the agent's verdicts.
Counter attributes hold the increase over the agent's --interval (a rate rule divides by it).

Bounded: at most MAX_PER_ATTRIBUTE resources per attribute (over every namespace), the largest values first.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from connwatch.attributes.registry import AttributeSpec, specs
from connwatch.findings import Measurement
from connwatch.outputs.prom_kernel import snake
from connwatch.outputs.prom_netns import NS_LABELS, ns_values_of

MAX_PER_ATTRIBUTE = 100
RESOURCE_LABELS = ("port", "destination", "local_address", "source")  # in this order, those a scope uses
SCOPE_LABELS = {"port": ("netns", "port"), "host": ("netns",),  # netns first: every attribute is judged per namespace
                "destination": ("netns", "destination", "local_address"), "source": ("netns", "source", "port")}


def attribute_metric(s: AttributeSpec[object]) -> str:
    return f"connwatch_attribute_{snake(s.name)}" + ("_percent" if s.unit == "%" else "")


def labels_of(s: AttributeSpec[object]) -> tuple[str, ...]:
    return SCOPE_LABELS.get(s.scope, ())


def _value(m: Measurement, key: str) -> str:
    if key == "netns":
        return ns_values_of(m.notes.get("netns"))[0]
    value = m.resource.get(key)
    return "" if value is None else str(value)


class MeasurementSamples:
    """Each measurement's series, kept while the agent hands the same Measurement object again (a namespace
    standing still keeps its last judgement, agent/steady.py): its labels are not worked out again and the
    family's series stay the same objects, which /metrics then takes from its last rendering line for line
    (agent/metrics_cache.py again()). Measured with KernelRows per part (100 idle namespaces of 50 listeners,
    `--netns all`, CPU per sample, bench/bench_netns_agent.py, medians of 3 interleaved rounds, load 0.8-1.0):
    collector.update 21.3 ms instead of 30.6 ms, and /metrics rendering 7.3 ms instead of 21.8 ms."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[Measurement, str, Sample]] = {}  # id -> (the measurement, metric, series)
        self._now: dict[int, tuple[Measurement, str, Sample]] = {}
        self._blocks: dict[int, Sequence[Measurement]] = {}  # id -> the last call's blocks (held: ids stay theirs)
        self._kept: tuple[tuple[int, int], ...] | None = None  # (position, id) of the blocks _tops ranks
        self._tops: dict[str, list[Ranked]] = {}  # attribute -> the largest MAX_PER_ATTRIBUTE of those blocks

    def ranked(self, blocks: Sequence[Sequence[Measurement]]) -> dict[str, list[Measurement]]:
        """_rank(blocks), where the blocks handed last time too (the same objects: a namespace's judgement kept,
        agent/steady.py) are ranked again only when they are not the same blocks at the same places as then.
        Measured (100 idle namespaces of 50 listeners, `--netns all`, ~15k measurements per sample): ranking every
        measurement at every sample was ~12 ms of CPU per sample."""
        same = [(pos, b) for pos, b in enumerate(blocks) if self._blocks.get(id(b)) is b]
        kept = tuple((pos, id(b)) for pos, b in same)
        if kept != self._kept:
            self._tops = {name: heapq.nsmallest(MAX_PER_ATTRIBUTE, items) for name, items in _grouped(same).items()}
            self._kept = kept
        new = _grouped([(pos, b) for pos, b in enumerate(blocks) if self._blocks.get(id(b)) is not b])
        self._blocks = {id(b): b for b in blocks}
        top = MAX_PER_ATTRIBUTE
        return {name: [m for _, m in heapq.nsmallest(top, [*self._tops.get(name, ()), *new.get(name, ())])]
                for name in self._tops.keys() | new.keys()}

    def sample(self, m: Measurement, metric: str, labels: Sequence[str]) -> Sample:
        """What GaugeMetricFamily(metric, labels=labels).add_metric(values of m, m.value) adds, its empty
        namespace label left out (prom_netns.without_empty)."""
        got = self._last.get(id(m))
        if got is None or got[0] is not m or got[1] != metric:
            values = [_value(m, k) for k in labels]
            got = (m, metric, Sample(metric, {k: v for k, v in zip(labels, values, strict=True)
                                              if v or k not in NS_LABELS}, m.value, None))
        self._now[id(m)] = got
        return got[2]

    def done(self) -> None:
        """The measurements of this sample are those kept for the next (the others' objects may be reused ids)."""
        self._last, self._now = self._now, {}


Ranked = tuple[tuple[float, str, int, int], Measurement]  # ((-value, resource key, block, place in it), it)


def _grouped(blocks: Sequence[tuple[int, Sequence[Measurement]]]) -> dict[str, list[Ranked]]:
    """Each attribute's measurements of these (position, block)s, keyed to rank as sorted((-value, resource key))
    over the blocks in order ranks them (ties in order: the keys are unique, measurements never compared)."""
    out: dict[str, list[Ranked]] = {}
    for pos, block in blocks:
        for i, m in enumerate(block):
            out.setdefault(m.attribute, []).append(((-m.value, m.resource_key, pos, i), m))
    return out


def _rank(blocks: Sequence[Sequence[Measurement]]) -> dict[str, list[Measurement]]:
    """Each attribute's MAX_PER_ATTRIBUTE largest measurements, = sorted(...)[:MAX_PER_ATTRIBUTE] of the blocks
    in one (ties in order too), without sorting 5,000 ports of 100 namespaces."""
    return {name: [m for _, m in heapq.nsmallest(MAX_PER_ATTRIBUTE, items)]
            for name, items in _grouped(list(enumerate(blocks))).items()}


def measurement_families(measurements: Sequence[Measurement], memo: MeasurementSamples | None = None,
                         blocks: Sequence[Sequence[Measurement]] | None = None) -> list[Metric]:
    """One family per attribute; `memo`: each measurement's series as made for the same object last time (their
    empty namespace label is then left out already). `blocks`: the same measurements, one block per namespace
    (its judgement's tuple), which the memo ranks again only where they changed."""
    parts = blocks if blocks is not None else [measurements]
    by_attribute = memo.ranked(parts) if memo is not None else _rank(parts)
    out: list[Metric] = []
    for name, s in specs().items():
        labels = labels_of(s)
        unit = "per sample interval" if s.counter else "at the sample"
        fam = GaugeMetricFamily(attribute_metric(s), f"{name} ({s.unit}, {unit}) as the agent measured it; "
                                "its rules compare this value", labels=list(labels))
        for m in by_attribute.get(name, ()):
            if memo is not None:
                fam.samples.append(memo.sample(m, fam.name, labels))
            else:
                fam.add_metric([_value(m, k) for k in labels], m.value)
        out.append(fam)
    if memo is not None:
        memo.done()
    return out
