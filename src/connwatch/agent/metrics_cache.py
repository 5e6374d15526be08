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

A family whose series are those of the last rendering but whose values moved (the kernel counters, the
durations: ~240 of ~480 series at every sample of one namespace at 100k sockets) is not encoded again
either: each series' line is the encoder's text up to its value (a template per family and format, made
once by encoding the family with distinct stand-in values, each of which must end its own line, in order,
after the family's `#` lines), then floatToGoString of the value, the function both encoders write values
with. A family the template cannot describe that way (a timestamp, a value of None, lines the encoder
reorders or adds, e.g. the text format's `_created` series) is encoded as before. Measured (the agent at
100k sockets, one rendering per sample after four listener polls, CPU, medians of 12 in 3 interleaved
runs, load 1.7): 2.5-3.0 ms instead of 4.1-4.7 ms.

Keying every family series by series (family_key) was itself most of a rendering with `--netns all` (~9,500
series). So a family rendered through its template is kept line by line (Rendered, per name and format), and
the next rendering takes it from there (again()) when it has the same name, type, help and unit and as many
series, each either the very Sample object of then (its line stands: Samples are tuples, and the agent's
collector hands out the families it built without touching them again) or one of the same name, labels in
the same order and no timestamp or extras (its prefix, then its new value): its shape is then the one the
template was made for. Anything else is keyed as above. Measured (100 idle namespaces of 50 listeners, one
rendering per sample, CPU, medians of 3 interleaved rounds, load 0.8-1.0, with the collector keeping its
series' objects, outputs/prom_kernel.py KernelRows, outputs/prom_measure.py MeasurementSamples): 7.3 ms
instead of 21.8 ms.
"""

from __future__ import annotations

import copy
import gzip
import operator
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from connwatch.perf import gc_paused

Headers = list[tuple[str, str]]
_go: Callable[[float], str] = floatToGoString  # how both encoders write a value (untyped in prometheus_client)
Encoder = Callable[[CollectorRegistry], bytes]
EOF = b"# EOF\n"  # OpenMetrics' last line, once per body
_NO_EXTRAS = (None,) * (len(Sample._fields) - 4)  # a Sample's fields after name, labels, value, timestamp
_NO_EXTRAS_TS = (None, *_NO_EXTRAS)  # (the same with no timestamp)


class _One:
    """A collector of one family (what the encoder is given to render that family alone)."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


def family_key(metric: Metric) -> tuple[Hashable, Hashable] | None:
    """Everything the encoders write of a family: (its shape, everything but the values; its values); None
    when it holds what is not compared here (exemplars, native histograms). A zero value is keyed by its
    repr (0.0 and -0.0 print apart)."""
    shape, values = [], []
    for s in metric.samples:
        if s[4:] != _NO_EXTRAS:  # (an exemplar, a native histogram)
            return None
        shape.append((s[0], tuple(s[1].items()), s[3]))  # name, labels, timestamp
        values.append(s[2] if s[2] else repr(s[2]))
    return (metric.name, metric.type, metric.documentation, metric.unit, tuple(shape)), tuple(values)


Template = tuple[bytes, tuple[bytes, ...]]  # a family's `#` lines; each series' line up to its value
_UNSEEN: Template = (b"", ())  # (a shape without a template yet)


def template(metric: Metric, encoder: Encoder, openmetrics: bool) -> Template | None:
    """The encoder's text of the family cut before each value (see the module's docstring), or None when
    it is not one line per series in order, each ending with its value."""
    if any(s.timestamp is not None or s.value is None for s in metric.samples):
        return None
    probe = copy.copy(metric)
    probe.samples = [s._replace(value=i + 0.5) for i, s in enumerate(metric.samples)]
    text = encoder(_One(probe))  # type: ignore[arg-type]
    if openmetrics and text.endswith(EOF):
        text = text[:-len(EOF)]
    lines = text.split(b"\n")
    if lines.pop() != b"":
        return None
    first = len(lines) - len(metric.samples)  # (the `#` lines, then one line per series)
    if first < 0 or not all(x.startswith(b"#") for x in lines[:first]) or \
            any(x.startswith(b"#") for x in lines[first:]):
        return None
    prefixes = []
    for i, line in enumerate(lines[first:]):
        value = b" " + _go(i + 0.5).encode()
        if not line.endswith(value):
            return None
        prefixes.append(line[:len(line) - len(value) + 1])
    return b"".join(x + b"\n" for x in lines[:first]), tuple(prefixes)


def splice(made: Template, samples: Sequence[Sample]) -> bytes:
    """The family's text from its template and the samples' values."""
    header, prefixes = made
    return header + b"".join([p + _go(s.value).encode() + b"\n"
                              for p, s in zip(prefixes, samples, strict=True)])


@dataclass(frozen=True, slots=True)
class Rendered:
    """A family as last rendered through its template: what it was made of, and its text line by line."""

    meta: tuple[str, str, str, str]  # name, type, documentation, unit
    samples: tuple[Sample, ...]
    header: bytes
    prefixes: tuple[bytes, ...]
    lines: tuple[bytes, ...]
    text: bytes


def _meta(metric: Metric) -> tuple[str, str, str, str]:
    return metric.name, metric.type, metric.documentation, metric.unit


def rendered(metric: Metric, made: Template) -> Rendered:
    """The family spliced into its template, kept line by line for the next rendering (again())."""
    header, prefixes = made
    samples = tuple(metric.samples)
    lines = tuple([p + _go(s.value).encode() + b"\n" for p, s in zip(prefixes, samples, strict=True)])
    return Rendered(_meta(metric), samples, header, prefixes, lines, header + b"".join(lines))


def again(metric: Metric, last: Rendered) -> Rendered | None:
    """The family's text from its last rendering, when its series are those of then (see the module's docstring):
    each series the very Sample object of then keeps its line, another of the same name, labels (in order) and
    no timestamp or extras is its prefix and its value; None when any series differs otherwise."""
    samples = tuple(metric.samples)
    old = last.samples
    if len(samples) != len(old) or _meta(metric) != last.meta:
        return None
    if all(map(operator.is_, samples, old)):
        return last
    lines = list(last.lines)
    for i, (s, o) in enumerate(zip(samples, old, strict=True)):
        if s is o:
            continue
        if s[0] != o[0] or s[2] is None or s[3:] != _NO_EXTRAS_TS or tuple(s[1].items()) != tuple(o[1].items()):
            return None
        lines[i] = last.prefixes[i] + _go(s[2]).encode() + b"\n"
    return Rendered(last.meta, samples, last.header, last.prefixes, tuple(lines), last.header + b"".join(lines))


class MetricsCache:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._render = threading.Lock()
        self._generation = 0
        self._bodies: dict[tuple[str, bool], tuple[int, bytes]] = {}  # (content type, gzip) -> (generation, body)
        self._texts: dict[str, dict[Hashable, bytes]] = {}  # content type -> family_key -> its text
        self._templates: dict[str, dict[Hashable, Template | None]] = {}  # content type -> shape -> template
        self.renders = 0
        self.families_reused = 0
        self.families_spliced = 0
        self.families_again = 0
        self._rendered: dict[str, dict[str, Rendered]] = {}  # content type -> family name -> as last rendered

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
        """encoder(registry), each family whose series are those of the last rendering in this format taken from
        it (again()), each other unchanged family's text reused, each family whose values alone changed spliced
        into its template (see the module's docstring)."""
        last, templates = self._texts.get(content_type, {}), self._templates.get(content_type, {})
        before = self._rendered.get(content_type, {})
        openmetrics = content_type.startswith("application/openmetrics-text")  # (each rendering ends with EOF)
        kept: dict[Hashable, bytes] = {}
        kept_templates: dict[Hashable, Template | None] = {}
        now: dict[str, Rendered] = {}
        parts: list[bytes] = []
        for metric in self._registry.collect():
            prior = before.get(metric.name)
            if prior is not None and metric.name not in now and (made_again := again(metric, prior)) is not None:
                self.families_again += 1
                now[metric.name] = made_again
                parts.append(made_again.text)
                continue
            parts.append(self._family(metric, encoder, openmetrics, (last, templates, kept, kept_templates), now))
        self._texts[content_type], self._templates[content_type] = kept, kept_templates
        self._rendered[content_type] = now
        return b"".join(parts) + (EOF if openmetrics else b"")

    def _family(self, metric: Metric, encoder: Encoder, openmetrics: bool,
                state: tuple[dict[Hashable, bytes], dict[Hashable, Template | None], dict[Hashable, bytes],
                             dict[Hashable, Template | None]], now: dict[str, Rendered]) -> bytes:
        """One family's text by its key: the last rendering's, spliced, or encoded; kept for again() next time
        when its shape has a template."""
        last, templates, kept, kept_templates = state
        key = family_key(metric)
        text = None
        if key is not None:
            if (made := templates.get(key[0], _UNSEEN)) is not _UNSEEN:
                kept_templates[key[0]] = made
            text = last.get(key)
            if text is not None:
                self.families_reused += 1
            else:
                text = self._spliced(metric, key[0], kept_templates, encoder, openmetrics)
            if key[0] not in kept_templates:  # (reused text of a shape not templated yet)
                kept_templates[key[0]] = template(metric, encoder, openmetrics)
            if (made := kept_templates[key[0]]) is not None and metric.name not in now:
                now[metric.name] = rendered(metric, made)
        if text is None:
            text = encoder(_One(metric))  # type: ignore[arg-type]
            if openmetrics and text.endswith(EOF):
                text = text[:-len(EOF)]
        if key is not None:
            kept[key] = text
        return text

    def _spliced(self, metric: Metric, shape: Hashable, templates: dict[Hashable, Template | None], encoder: Encoder,
                 openmetrics: bool) -> bytes | None:
        """The family's text from its shape's template (made now when the shape is new); None without one."""
        if shape not in templates:
            templates[shape] = template(metric, encoder, openmetrics)
        made = templates[shape]
        if made is None:
            return None
        self.families_spliced += 1
        return splice(made, metric.samples)
