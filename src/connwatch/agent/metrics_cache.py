"""The /metrics body rendered at most once per sample and format, not once per scrape.

The agent calls invalidate() after each full sample and each listener poll (the only times the
series change); the first scrape after that renders the text (lazily: no scrape, no rendering) and
every later scrape until the next sample is served the same bytes. Concurrent scrapes wait for one
rendering instead of each doing its own. The process_* series (client_python's ProcessCollector)
are then those of the sample's moment, at most one --listener-interval old.

A rendering reuses the text of every family whose samples are those of the last rendering (kept per
format): with `--netns all` over 100 idle namespaces most families stand still between samples, and the
text encoding (~8 us per series with prometheus_client) was ~78 ms of CPU per sample for 9,500 series.
Each family's text is what the encoder gives for that family alone, and prometheus_client's encoders
write the families one after the other (OpenMetrics then ends with `# EOF`), so the body is byte for
byte the encoder's over the whole registry (tests/unit/test_metrics_cache.py compares them).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Hashable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric

from connwatch.perf import gc_paused

Headers = list[tuple[str, str]]
Encoder = Callable[[CollectorRegistry], bytes]
EOF = b"# EOF\n"  # OpenMetrics' last line, once per body


class _One:
    """A collector of one family (what the encoder is given to render that family alone)."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


def family_key(metric: Metric) -> Hashable | None:
    """Everything the encoders write of a family; None when it holds what is not compared here
    (exemplars, native histograms). A zero value is keyed by its repr (0.0 and -0.0 print apart)."""
    samples = []
    for s in metric.samples:
        if any(x is not None for x in s[4:]):
            return None
        samples.append((s.name, tuple(s.labels.items()), s.value if s.value else repr(s.value), s.timestamp))
    return metric.name, metric.type, metric.documentation, metric.unit, tuple(samples)


class MetricsCache:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._render = threading.Lock()
        self._generation = 0
        self._bodies: dict[tuple[str, bool], tuple[int, bytes]] = {}  # (content type, gzip) -> (generation, body)
        self._texts: dict[str, dict[Hashable, bytes]] = {}  # content type -> family_key -> its text
        self.renders = 0
        self.families_reused = 0

    def invalidate(self) -> None:
        """The series changed: the next scrape renders them again (cheap: no lock, no rendering here)."""
        self._generation += 1

    def response(self, accept: str | None, accept_encoding: str | None) -> tuple[Headers, bytes]:
        """(headers, body) as prometheus_client's WSGI app would answer, from the cache when current."""
        encoder, content_type = choose_encoder(accept or "")
        zipped = gzip_accepted(accept_encoding or "")
        key = (content_type, zipped)
        headers = [("Content-Type", content_type), *([("Content-Encoding", "gzip")] if zipped else [])]
        with self._render:
            generation = self._generation  # read first: an invalidate() during rendering is not lost
            cached = self._bodies.get(key)
            if cached is not None and cached[0] == generation:
                return headers, cached[1]
            body = self._encode(encoder, content_type)
            if zipped:
                body = gzip.compress(body)
            self._bodies[key] = (generation, body)
            self.renders += 1
        return headers, body

    @gc_paused  # (20k small tuples of keys: GC passes over the agent's live objects tripled the time)
    def _encode(self, encoder: Encoder, content_type: str) -> bytes:
        """encoder(registry), each unchanged family's text taken from the last rendering in this format."""
        last = self._texts.get(content_type, {})
        openmetrics = content_type.startswith("application/openmetrics-text")  # (each rendering ends with EOF)
        kept: dict[Hashable, bytes] = {}
        parts: list[bytes] = []
        for metric in self._registry.collect():
            key = family_key(metric)
            text = last.get(key) if key is not None else None
            if text is None:
                text = encoder(_One(metric))  # type: ignore[arg-type]
                if openmetrics and text.endswith(EOF):
                    text = text[:-len(EOF)]
            else:
                self.families_reused += 1
            if key is not None:
                kept[key] = text
            parts.append(text)
        self._texts[content_type] = kept
        return b"".join(parts) + (EOF if openmetrics else b"")
