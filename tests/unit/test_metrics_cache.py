"""/metrics rendered once per sample, not per scrape (agent/metrics_cache.py): a real Agent on a
captured /proc, its real HTTP server on loopback."""

from __future__ import annotations

import dataclasses
import gzip
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.samples import Exemplar

from connwatch.agent.loop import Agent
from connwatch.agent.metrics_cache import MetricsCache, family_key
from connwatch.agent.options import AgentOptions
from connwatch.agent.server import serve
from connwatch.clock import SystemClock
from connwatch.model import NetnsInfo, Snapshot
from connwatch.outputs.prometheus import AgentStats, MetricsOptions, SnapshotCollector, View
from connwatch.rules.config import load_config

from .builders import listener, snapshot

PROC = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")


def _agent(tmp_path: Path) -> Agent:
    opts = AgentOptions(state_dir=tmp_path / "state", listen_port=0, proc_root=PROC, use_netlink=False)
    return Agent(opts, load_config(None), SystemClock())


def _get(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return dict(r.headers), r.read()


def _without_process(body: bytes) -> list[bytes]:
    """The body less the process_* series (the scrape-time CPU/RSS of the uncached render)."""
    return [line for line in body.splitlines() if b"process_" not in line]


def test_scrapes_between_samples_render_once_and_a_sample_renders_again(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.full_sample()
    httpd = serve("127.0.0.1", 0, agent.registry, cache=agent.metrics_cache)
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/metrics"
        first = _get(url)[1]
        assert b"connwatch_samples_total" in first
        assert all(_get(url)[1] == first for _ in range(20))
        assert agent.metrics_cache.renders == 1
        assert _without_process(first) == _without_process(generate_latest(agent.registry))
        agent.listener_poll()  # the series change: the next scrape renders them anew
        second = _get(url)[1]
        assert agent.metrics_cache.renders == 2 and second != first
        assert b'connwatch_samples_total{kind="listeners"} 1.0' in second
        # each format and encoding is its own cached body, as prometheus_client would answer it
        headers, zipped = _get(url, **{"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip"
        assert _without_process(gzip.decompress(zipped)) == _without_process(second)
        headers, om = _get(url, Accept=OPENMETRICS)
        assert headers["Content-Type"].startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")
        assert agent.metrics_cache.renders == 4
        _get(url, Accept=OPENMETRICS)
        assert agent.metrics_cache.renders == 4
        # a name[] filter is answered per request by prometheus_client's own app, uncached
        _get(url + "?name[]=connwatch_build_info")
        assert agent.metrics_cache.renders == 4
    finally:
        httpd.shutdown()
        httpd.server_close()
        agent.keeper.close()


# -- family texts reused between renderings ---------------------------------------------------------------

BLUE = NetnsInfo(4026532101, "blue", pid=4242, command="python3")
RED = NetnsInfo(4026532102, "red", pid=4343, command="nginx")


def _ns(info: NetnsInfo | None, overflows: int, backlog: int = 128) -> Snapshot:
    inode = (info.inode if info else 1) % 1000
    snap = snapshot(10.0, (listener(8080, backlog=backlog, inode=inode),),
                    {"TcpExt.ListenOverflows": overflows, "TcpExt.ListenDrops": overflows})
    return dataclasses.replace(snap, netns=info)


def _bodies(cache: MetricsCache, registry: CollectorRegistry) -> list[tuple[bytes, bytes]]:
    """(cached, prometheus_client's own) in text and OpenMetrics, gzip too."""
    out = []
    for accept in ("", OPENMETRICS):
        encoder = choose_encoder(accept)[0]
        out.append((cache.response(accept, None)[1], encoder(registry)))
        out.append((gzip.decompress(cache.response(accept, "gzip")[1]), encoder(registry)))
    return out


def test_reused_family_texts_give_the_encoders_bytes_and_show_every_change() -> None:
    collector = SnapshotCollector(MetricsOptions())
    registry = CollectorRegistry()
    registry.register(collector)
    cache = MetricsCache(registry)
    own = _ns(None, 1)
    views = [View(own, own.listeners, namespaces=(_ns(BLUE, 5), _ns(RED, 7))),
             View(own, own.listeners, namespaces=(_ns(BLUE, 5), _ns(RED, 7))),  # unchanged: reused
             View(own, own.listeners, namespaces=(_ns(BLUE, 6), _ns(RED, 7))),  # blue's counter moved
             View(own, own.listeners, namespaces=(_ns(BLUE, 6, backlog=4096),)),  # red gone, blue's backlog
             View(own, own.listeners, namespaces=(_ns(BLUE, 6, backlog=4096),), stats=AgentStats(samples={"full": 3}))]
    texts = []
    for view in views:
        collector.update(view)
        cache.invalidate()
        for cached, direct in _bodies(cache, registry):
            assert cached == direct
        texts.append(cache.response("", None)[1].decode())
    assert cache.families_reused + cache.families_again > 0
    blue_overflows = 'connwatch_netstat_tcpext_listen_overflows_total{netns="blue"} '
    assert blue_overflows + "5.0" in texts[1] and blue_overflows + "6.0" in texts[2]
    assert 'netns="red"' in texts[2] and 'netns="red"' not in texts[3]  # a vanished namespace's series go
    assert 'connwatch_listener_backlog{address="0.0.0.0",family="4",netns="blue",port="8080"} 4096.0' in texts[3]
    assert 'connwatch_samples_total{kind="full"} 3.0' in texts[4]


def test_family_key_tells_apart_what_prints_apart() -> None:
    def fam(value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily("x", "doc", labels=["a"])
        g.add_metric(["1"], value)
        return g

    assert family_key(fam(0.0)) != family_key(fam(-0.0))
    assert family_key(fam(1.0)) == family_key(fam(1))
    assert family_key(fam(2.0)) != family_key(fam(1.0))
    with_exemplar = CounterMetricFamily("y", "doc", labels=["a"])
    with_exemplar.add_metric(["1"], 1, exemplar=Exemplar({"trace": "t"}, 1))
    assert family_key(with_exemplar) is None


# -- families whose values alone changed: spliced into a template --------------------------------------------

VALUES = [0.0, -0.0, 1, 2.5, -3.25, float("nan"), float("inf"), float("-inf"), 1e20, 123456789.0, 1e-7, 7]


def _families(step: int) -> list[GaugeMetricFamily | CounterMetricFamily]:
    """Families whose series stay and whose values move with `step`: labels that need escaping, a family
    without series, and a counter with a _created series (the text format writes it after the others, under
    its own `#` lines: no template, encoded as before)."""
    odd = GaugeMetricFamily("connwatch_test_odd", 'doc with "quotes", \\ and\nnewline', labels=["a", "b"])
    for i, label in enumerate(['x"y', "back\\slash", "new\nline", "ünï", ""]):
        odd.add_metric([label, str(i)], VALUES[(i + step) % len(VALUES)])
    plain = CounterMetricFamily("connwatch_test_plain", "doc", labels=["k"])
    for i in range(3):
        plain.add_metric([str(i)], VALUES[(i * 5 + step) % len(VALUES)])
    created = CounterMetricFamily("connwatch_test_created", "doc", labels=["k"])
    created.add_metric(["1"], step, created=1000.0 + step)
    empty = GaugeMetricFamily("connwatch_test_empty", "doc", labels=["k"])
    single = GaugeMetricFamily("connwatch_test_single", "doc", value=VALUES[step % len(VALUES)])
    return [odd, plain, created, empty, single]


class _Moving:
    def __init__(self) -> None:
        self.step = 0

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        return _families(self.step)


def test_values_spliced_into_a_template_give_the_encoders_bytes() -> None:
    moving = _Moving()
    registry = CollectorRegistry()
    registry.register(moving)
    cache = MetricsCache(registry)
    for step in range(2 * len(VALUES)):
        moving.step = step
        cache.invalidate()
        for cached, direct in _bodies(cache, registry):
            assert cached == direct
    spliced = cache.families_spliced + cache.families_again  # (again(): line by line, from the last rendering)
    assert spliced >= 4 * (2 * len(VALUES) - 1)  # odd, plain, single, in both formats at least
    text = cache.response("", None)[1]
    assert b'connwatch_test_odd{a="x\\"y",b="0"} ' in text and b"connwatch_test_created_created " in text


def test_a_template_is_refused_where_lines_are_not_one_per_series_in_order() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

    from connwatch.agent.metrics_cache import template

    created = _families(0)[2]
    assert template(created, generate_latest, False) is None  # (_created after the others, own `#` lines)
    assert template(created, openmetrics_latest, True) is not None  # (OpenMetrics: in order)
    stamped = GaugeMetricFamily("connwatch_test_stamped", "doc", labels=["k"])
    stamped.add_metric(["1"], 1.0, timestamp=5.0)
    assert template(stamped, generate_latest, False) is None
    made = template(_families(0)[0], generate_latest, False)
    assert made is not None and made[0].startswith(b"# HELP connwatch_test_odd ") and len(made[1]) == 5


# -- families whose series are the last rendering's Sample objects, some replaced: again() ----------------------


class _Kept:
    """Families kept from one collect to the next (as the agent's collector keeps them), their samples the same
    objects but those a step replaces: a new value, labels in another order, a series more or fewer, a timestamp."""

    def __init__(self) -> None:
        self.kept = GaugeMetricFamily("connwatch_test_kept", "doc", labels=["a", "b"])
        self.counted = CounterMetricFamily("connwatch_test_counted", "doc", labels=["k"])
        for i in range(6):
            self.kept.add_metric([str(i), f'v"{i}'], VALUES[i])
            self.counted.add_metric([str(i)], i)

    def step(self, n: int) -> None:
        kept, counted = self.kept, self.counted
        i = n % 6
        s = kept.samples[i]
        if n % 4 == 0:  # a new value (maybe -0.0 after 0.0, nan, inf)
            kept.samples[i] = s._replace(value=VALUES[(n + 3) % len(VALUES)])
        elif n % 4 == 1:  # the same labels in another order (both encoders sort them; again() compares in order)
            kept.samples[i] = s._replace(labels=dict(reversed(list(s.labels.items()))))
        elif n % 4 == 2:  # a series more, then fewer
            kept.samples.append(s._replace(labels={"a": "new", "b": str(n)}))
        else:
            kept.samples.pop()
            counted.samples[i] = counted.samples[i]._replace(timestamp=float(n) if n % 8 == 3 else None)
        counted.samples[(i + 1) % 6] = counted.samples[(i + 1) % 6]._replace(value=float(n))

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        return [self.kept, self.counted]


def test_families_of_the_last_renderings_samples_give_the_encoders_bytes() -> None:
    kept = _Kept()
    registry = CollectorRegistry()
    registry.register(kept)
    cache = MetricsCache(registry)
    for n in range(40):
        kept.step(n)
        cache.invalidate()
        for cached, direct in _bodies(cache, registry):
            assert cached == direct, n
        cache.invalidate()  # (the same samples again: each family taken whole from the last rendering)
        for cached, direct in _bodies(cache, registry):
            assert cached == direct, n
    assert cache.families_again > 40
