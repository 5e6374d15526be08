"""The attribute registry: what every attribute is, in one place.

Each subject module (attributes/backlog.py, ephemeral.py, sources.py) declares a `SUBJECT`: its
attribute specs and the one `measure(prev, cur, config)` that measures them together (they share
deltas and context). A spec names the attribute's unit, whether it is a counter (an increase that
may be judged per second, cumulative since boot in a single capture) or a gauge, its built-in
rules, its explanation (typed by the facts dataclass it reads: mypy checks the contract), the
inputs it needs (so `analyze` derives "unsupported because the capture lacks X"), and its PromQL
where a native one exists. Everything else — the rules' attribute list, `connwatch rules`,
Prometheus rules, analyze's unsupported checks and basis — is derived from here.

Adding an attribute: a spec in its subject's SUBJECT (or a new subject module listed in SUBJECTS),
its facts dataclass and its explainer. Nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import cache

from connwatch.findings import Explanation, Finding, Measurement
from connwatch.model import Snapshot
from connwatch.record import Record, field, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any, Generic, TypeVar

    from connwatch.rules.config import Config
    from connwatch.rules.rule import Rule

    F = TypeVar("F")
    T = TypeVar("T")
else:  # typing's import was ~2 ms of every `check` (the rules load it first): AttributeSpec's Generic base,
    class Generic:  # subscripted, is this plain base at run time (no field, no slot; a Protocol's way in record)
        __slots__ = ()

        def __class_getitem__(cls, _params: object) -> type:
            return cls

    F = None
SUBJECTS = ("backlog", "ephemeral", "sources", "accept", "hostlimits")

# What a capture basis means for one attribute (analyze): counters of one capture are cumulative.
SINCE_BOOT, SINCE_OPEN, AT_CAPTURE, INTERVAL = "since boot", "since the listener opened", "at capture", "interval"


@record
class Need(Record):
    """One input an attribute cannot be measured without, and what to capture to get it."""

    what: str  # e.g. "listener backlog", "TcpExt.ListenOverflows"
    present: Callable[[Snapshot], bool]
    missing: str  # the sentence for `unsupported` when no capture-specific reason applies


@record
class AttributeSpec(Record, Generic[F]):
    name: str
    unit: str
    counter: bool  # an increase between two samples (may be judged as a rate); else a gauge
    help: str  # what the attribute measures (the alert's `text`)
    facts: type[F]
    explain: Callable[[Finding, F], Explanation]
    default_rules: tuple[Rule, ...] = ()
    needs: tuple[Need, ...] = ()
    promql: str | None = None  # template with {sel} {window} {per}; None: follow the agent's verdict
    capture_basis: str = SINCE_BOOT  # of a counter in a single capture (BacklogRejectsByPort: since open)
    scope: str = "port"  # what a resource is: "port", "host", "destination" or "source"
    # One problem, one alert: a breach of this attribute becomes a fact of the first breached attribute
    # named here for the same resource, or (host counters) of the per-port alerts when `explained(facts)`.
    folds_into: tuple[str, ...] = ()
    explained: Callable[[Any], bool] | None = None
    # Kernel counters ("TcpExt.ListenOverflows") and sockstat keys ("TCP.tw") the attribute reads:
    # /metrics exports these by default (`run --kernel-counters needed`), node_exporter has the rest.
    inputs: tuple[str, ...] = ()
    # Prometheus `for:` of its generated rules, in agent samples: 0 = fire on the first breached sample,
    # as the agent raises (the rules then equal the agent's verdicts); n = the breach must last n more.
    for_samples: int = 0

    def explain_finding(self, finding: Finding) -> Explanation:
        facts: F = finding.measurement.facts
        return self.explain(finding, facts)

    def basis(self, mode: str) -> str:
        """The basis of this attribute's value for a capture judged as `mode` (INTERVAL or SINCE_BOOT)."""
        if not self.counter:
            return AT_CAPTURE
        return INTERVAL if mode == INTERVAL else self.capture_basis


class Pair:
    """One pair of samples being judged, with what several subjects compute from it made once: the
    backlog accounting (per-port rejections, the reconciliation) and the accept activity per port are
    read by the backlog and accept subjects and by the reconciliation. Made once per pair they were
    computed three and two times over (issue 17: 2.0 of a namespace's 8 ms judged at 100 namespaces).
    A memo for one judgement, not a record (measure_all makes one; engine.judge shares it)."""

    __slots__ = ("_made", "cur", "prev")

    def __init__(self, prev: Snapshot, cur: Snapshot) -> None:
        self.prev, self.cur = prev, cur
        self._made: dict[tuple[Hashable, ...], Any] = {}

    def once(self, make: Callable[..., T], *args: Hashable) -> T:
        """make(self, *args), computed on the first call for these arguments only (make is pure)."""
        key = (make, *args)
        try:
            made: T = self._made[key]
        except KeyError:
            made = self._made[key] = make(self, *args)
        return made


@record
class Subject(Record):
    """Attributes measured together from the same inputs."""

    name: str
    specs: tuple[AttributeSpec[Any], ...]
    measure: Callable[[Snapshot, Snapshot, Config], list[Measurement]]
    notes: Mapping[str, str] = field(default_factory=dict)
    # The same measure of a Pair whose shared parts other subjects reuse (measure_all); None: `measure`.
    measure_pair: Callable[[Pair, Config], list[Measurement]] | None = None


@cache
def subjects() -> tuple[Subject, ...]:
    return tuple(importlib.import_module(f"connwatch.attributes.{name}").SUBJECT for name in SUBJECTS)


@cache
def specs() -> dict[str, AttributeSpec[Any]]:
    return {spec.name: spec for subject in subjects() for spec in subject.specs}


def spec(name: str) -> AttributeSpec[Any] | None:
    return specs().get(name)


@cache
def fold_targets() -> frozenset[str]:
    """Attributes some other attribute folds into (computed once, not per finding)."""
    return frozenset(target for s in specs().values() for target in s.folds_into)


@cache
def family(name: str) -> tuple[str, ...]:
    """The attributes that fold together with `name` (engine.fold, the generated Prometheus rules): its
    component of the folds_into links, lowest rank (fewest folds_into: the one the others fold into) first."""
    every = specs()
    seen, todo = {name}, [name]
    while todo:
        here = every.get(todo.pop())
        for other, s in every.items():
            if other not in seen and here is not None and (other in here.folds_into or here.name in s.folds_into):
                seen.add(other)
                todo.append(other)
    return tuple(sorted(seen, key=lambda n: (len(every[n].folds_into) if n in every else 99, n)))


def known_attributes() -> dict[str, tuple[str, bool]]:
    """attribute -> (unit, is_counter); counters may be judged as a rate."""
    return {name: (s.unit, s.counter) for name, s in specs().items()}


def kernel_inputs() -> frozenset[str]:
    """Every kernel counter and sockstat key some attribute reads (what /metrics exports by default)."""
    return frozenset(name for s in specs().values() for name in s.inputs)


def default_rules() -> tuple[Rule, ...]:
    return tuple(rule for s in specs().values() for rule in s.default_rules)


def measure_all(prev: Snapshot, cur: Snapshot, config: Config, pair: Pair | None = None) -> list[Measurement]:
    """Every subject's measurements of the pair (`pair`: Pair(prev, cur), when the caller reads it too)."""
    shared = pair if pair is not None else Pair(prev, cur)
    out: list[Measurement] = []
    for subject in subjects():
        if subject.measure_pair is not None:
            out.extend(subject.measure_pair(shared, config))
        else:
            out.extend(subject.measure(prev, cur, config))
    return out


def unsupported(snap: Snapshot, reason: Callable[[Need], str | None] = lambda need: None) -> list[dict[str, str]]:
    """The attributes this snapshot cannot support, each with the reason (`reason(need)` may give a
    capture-specific one) and what to capture instead. One entry per attribute, first missing need."""
    out: list[dict[str, str]] = []
    for s in specs().values():
        for need in s.needs:
            if not need.present(snap):
                out.append({"check": s.name, "reason": reason(need) or need.missing})
                break
    return out


def explain(finding: Finding) -> Explanation:
    """The words for a breached finding, from its attribute's spec."""
    s = spec(finding.measurement.attribute)
    if s is not None:
        return s.explain_finding(finding)
    from connwatch.explain import generic

    return generic(finding)


def ordered(names: Sequence[str]) -> list[str]:
    """Attribute names in registry order (for stable listings)."""
    order = {name: i for i, name in enumerate(specs())}
    return sorted(names, key=lambda n: order.get(n, len(order)))
