"""The one judging pipeline, used by `check`, the agent (`run`) and `analyze`:

    two snapshots -> measurements (attribute registry) -> findings (rules) -> first-seen facts and
    words (explain) -> alert lifecycle (raise, update, clear) -> saved in the store, when there is one.

The store part is one transaction (AlertStore.step). When the store fails, the verdict is still
made, without history, and `store_error` says why: written here once for every caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from itertools import chain

from connwatch.alerts.lifecycle import CLEARED, StepResult, count_clean, step
from connwatch.attributes.backlog import reconcile
from connwatch.attributes.registry import INTERVAL, SINCE_BOOT, Pair, measure_all, spec
from connwatch.errors import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING, StateError
from connwatch.explain import explain
from connwatch.findings import Alert, Finding, Measurement, format_number, severity_name
from connwatch.model import Snapshot
from connwatch.record import Record, record, replace
from connwatch.rules.evaluate import evaluate

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from connwatch.alerts.store import AlertStore
    from connwatch.rules.config import Config

    T = TypeVar("T")

STATUS_NAMES = {EXIT_OK: "OK", EXIT_WARNING: "WARNING", EXIT_CRITICAL: "CRITICAL", 3: "UNKNOWN"}


@record
class Basis(Record):
    """What the interval between the two snapshots is: a real INTERVAL (check, run, two captures) or
    SINCE_BOOT (one capture judged against a host at boot: counters are cumulative)."""

    mode: str = INTERVAL
    uptime_s: float | None = None


@record
class CheckResult(Record):
    previous: Snapshot
    current: Snapshot
    findings: tuple[Finding, ...]
    step: StepResult
    reconciliation: dict[str, int | None]
    store_error: str | None = None
    parts: tuple[CheckResult, ...] = ()  # one per network namespace when several were judged (merge())
    measurements: tuple[Measurement, ...] = ()  # every attribute's value, before rules (/metrics exports them)

    @property
    def breached(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.breached)

    @property
    def exit_code(self) -> int:
        """Nagios: severity 1-2 breached -> CRITICAL, 3-4 -> WARNING, none -> OK."""
        severities = [f.severity for f in self.breached]
        if not severities:
            return EXIT_OK
        return EXIT_CRITICAL if min(severities) <= 2 else EXIT_WARNING

    @property
    def status(self) -> str:
        return STATUS_NAMES[self.exit_code]


INTERVAL_BASIS = Basis()  # (check, run: a real interval)


def judge(prev: Snapshot, cur: Snapshot, config: Config, store: AlertStore | None, basis: Basis = INTERVAL_BASIS,
          system_name: str | None = None, store_error: str | None = None) -> CheckResult:
    """Measure, evaluate, explain the breaches, and advance (and persist) the alert lifecycle."""
    scope = scope_of(cur)
    pair = Pair(prev, cur)  # (the accounting the backlog and accept subjects and the reconciliation share)
    measured = _scoped(measure_all(prev, cur, config, pair), scope, cur)
    findings = evaluate(config.rules, measured)
    if basis.mode == SINCE_BOOT:
        findings = [_since_boot(f, basis.uptime_s) for f in findings]
    now, name = cur.taken_at, system_name or cur.host.hostname
    ports = sorted({p for f in findings if isinstance(p := f.measurement.resource.get("port"), int)})
    suffix = "" if scope is None else f"@{scope}"

    def decide(active: Mapping[tuple[str, str], Alert], first_seen: Mapping[str, float]) -> _Step:
        mine = {k: a for k, a in active.items() if a.resource.get("netns") == scope}  # never another namespace's
        seen = {k.removesuffix(suffix): v for k, v in first_seen.items()}
        folded, held = fold(findings, set(mine))
        judged = [_words(f, basis) if f.breached and f.folded_into is None else f
                  for f in _with_first_seen(folded, seen, now)]
        return _Step(tuple(judged), step(mine, judged, now, name, held))

    done: _Step | None = None
    if store is not None:
        try:
            keys = (f"listen:{p}{suffix}" for p in ports)
            stepped, saved = store.step(keys, now, decide, lambda s: s.result.alerts)
            done = _Step(stepped.findings, _with_ids(stepped.result, saved))
        except StateError as exc:
            store_error = str(exc)
    if done is None:
        done = decide({}, {})
    return CheckResult(prev, cur, done.findings, done.result, reconcile(prev, cur, pair), store_error,
                       measurements=measured)


VANISHED = "its network namespace no longer exists"  # an alert's detail["cleared_because"] (retire_vanished)


def retire_vanished(store: AlertStore, present: Set[str], now: float) -> StepResult:
    """The active alerts of namespaces no longer on the host, stepped as a resource that vanished: each sample
    counts clean for them (lifecycle.count_clean), so they clear after their clear_after samples, as an alert of
    a port no longer listening does. Only judge() steps a namespace's alerts, and no judgement of a namespace
    that is gone ever comes: without this its alerts stayed active, and firing at Alertmanager, for ever.
    `present`: the key (NetnsInfo.key) of every namespace on the host, from a complete listing, not only those
    selected (another run's selection shares the store). A container restarted under its name keeps its key:
    back before its alerts cleared, a breach takes them up again (clean_samples 0)."""

    def decide(active: Mapping[tuple[str, str], Alert], _first: Mapping[str, float]) -> StepResult:
        stepped = [count_clean(a, now) for a in active.values()
                   if isinstance(ns := a.resource.get("netns"), str) and ns not in present]
        cleared = tuple(replace(a, detail={**a.detail, "cleared_because": VANISHED})
                        for a in stepped if a.state == CLEARED)
        return StepResult(cleared=cleared, still_active_clean=tuple(a for a in stepped if a.state != CLEARED))

    result, saved = store.step((), now, decide, lambda r: r.alerts)
    return _with_ids(result, saved)


def scope_of(snap: Snapshot) -> str | None:
    """The namespace key a snapshot's alerts carry: None for connwatch's own namespace (and captures)."""
    n = snap.netns
    return None if n is None or n.own else n.key


def _scoped(measured: Iterable[Measurement], scope: str | None, snap: Snapshot) -> tuple[Measurement, ...]:
    """Measurements of another namespace: their identity and description name that namespace (its
    description is built once per judgement, not per measurement)."""
    if scope is None or snap.netns is None:
        return tuple(measured)
    from connwatch.snapshot_json import netns_dict

    described = netns_dict(snap.netns)
    return tuple(replace(m, resource={**m.resource, "netns": scope}, resource_key=f"{m.resource_key} in {scope}",
                         notes={**m.notes, "netns": described}) for m in measured)


def merge(results: Sequence[CheckResult]) -> CheckResult:
    """Several namespaces' results as one verdict (the own namespace's snapshots stand for the host)."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    groups = [_joined(getattr(r.step, g) for r in results) for g in
              ("raised", "updated", "cleared", "still_active_clean")]
    return CheckResult(first.previous, first.current, _joined(r.findings for r in results), StepResult(*groups),
                       first.reconciliation, next((r.store_error for r in results if r.store_error), None),
                       tuple(results), _joined(r.measurements for r in results))


def _joined(parts: Iterable[tuple[T, ...]]) -> tuple[T, ...]:
    """The tuples one after the other (sum(parts, ()) copies what it has so far at each part: quadratic in
    the namespaces)."""
    return tuple(chain.from_iterable(parts))


def fold(findings: Sequence[Finding], active: Set[tuple[str, str]] = frozenset()
         ) -> tuple[list[Finding], set[tuple[str, str]]]:
    """One problem, one alert: a breach its spec folds into another attribute of the same resource that is
    breached now or already alerted (or, for host counters, into the per-port alerts that explain them)
    becomes a fact of that alert. The alert takes the most severe severity of its group and lists the folded
    breaches in `detail.folded`. Returns the findings and the keys of active alerts held open by a folded
    breach alone (a stuck queue between two bursts of rejects is the same problem: no second alert)."""
    into: dict[int, str] = {}
    held: set[tuple[str, str]] = set()
    for rk, family in _families(findings).items():
        primary = _primary(family, rk, active, findings)
        for i in family:
            if findings[i].measurement.attribute != primary:
                into[i] = f"{primary} {rk}"
        if not any(findings[i].measurement.attribute == primary for i in family):
            held.add((primary, rk))  # only its members are breached: the alert stays open, not counted clean
    for i, f in enumerate(findings):
        s = spec(f.measurement.attribute)
        if f.breached and i not in into and s is not None and s.explained is not None and s.explained(
                f.measurement.facts):
            into[i] = "the per-port alerts"
    groups: dict[str, list[Finding]] = {}
    for i, where in into.items():
        groups.setdefault(where, []).append(findings[i])
    out = []
    for i, f in enumerate(findings):
        if i in into:
            out.append(replace(f, folded_into=into[i]))
            continue
        members = groups.get(f"{f.measurement.attribute} {f.measurement.resource_key}") if f.breached else None
        out.append(_with_members(f, members) if members else f)
    return out, held


def _families(findings: Sequence[Finding]) -> dict[str, list[int]]:
    """Per resource, the breached findings of attributes that fold together (a spec's folds_into)."""
    out: dict[str, list[int]] = {}
    for i, f in enumerate(findings):
        s = spec(f.measurement.attribute)
        if f.breached and s is not None and (s.folds_into or _is_target(f.measurement.attribute)):
            out.setdefault(f.measurement.resource_key, []).append(i)
    return out


def _is_target(attribute: str) -> bool:
    from connwatch.attributes.registry import fold_targets

    return attribute in fold_targets()


def _primary(members: list[int], rk: str, active: Set[tuple[str, str]], findings: Sequence[Finding]) -> str:
    """The alert a problem is kept under: the one already active (a problem keeps its alert while it goes
    on), else the highest in rank (the attribute the others fold into)."""
    names = {findings[i].measurement.attribute for i in members}
    for i in members:
        s = spec(findings[i].measurement.attribute)
        names |= set(s.folds_into) if s is not None else set()

    def rank(name: str) -> int:
        s = spec(name)
        return len(s.folds_into) if s is not None else 99

    open_ = sorted((n for n in names if (n, rk) in active), key=rank)
    if open_:
        return open_[0]
    return min((findings[i].measurement.attribute for i in members), key=rank)


def _with_members(f: Finding, members: list[Finding]) -> Finding:
    folded = [{"attribute": m.measurement.attribute, "value": m.measurement.value, "unit": m.measurement.unit,
               "limit": m.limit, "severity": m.severity} for m in members]
    f = _noted(f, {"folded": folded})
    return replace(f, severity=min([f.severity, *(m.severity for m in members)]))


@record
class _Step(Record):
    findings: tuple[Finding, ...]
    result: StepResult


def _with_first_seen(findings: Sequence[Finding], first_seen: Mapping[str, float], now: float) -> list[Finding]:
    """Add how long connwatch has known each port (answers "is this a new application?")."""
    if not first_seen:
        return list(findings)
    out = []
    for f in findings:
        first = first_seen.get(f"listen:{f.measurement.resource.get('port')}")
        if first is not None and now - first > 0:
            f = _noted(f, {"first_seen_s": round(now - first, 1)})
        out.append(f)
    return out


def _noted(f: Finding, notes: Mapping[str, Any]) -> Finding:
    m = f.measurement
    return replace(f, measurement=replace(m, notes={**m.notes, **notes}))


def _since_boot(f: Finding, uptime: float | None) -> Finding:
    """One capture: counters are cumulative; without the uptime there is no interval and no rate."""
    s = spec(f.measurement.attribute)
    f = _noted(f, {"basis": s.basis(SINCE_BOOT) if s else SINCE_BOOT, "uptime_s": uptime})
    if uptime is None and f.measurement.get("interval_s", _MISSING) is not _MISSING:
        f = _with_facts(f, interval_s=None, rate_per_s=None)
    return f


_MISSING = object()


def _with_facts(f: Finding, **changes: Any) -> Finding:
    """Facts with some values replaced; keys the facts do not have become notes."""
    m = f.measurement
    facts = m.facts
    if isinstance(facts, Record):  # (every facts class is a record: tests/unit/test_record.py)
        names = set(facts.__match_args__)
        facts = replace(facts, **{k: v for k, v in changes.items() if k in names})
        extra = {k: v for k, v in changes.items() if k not in names}
    else:
        facts, extra = {**(facts or {}), **changes}, {}
    return replace(f, measurement=replace(m, facts=facts, notes={**m.notes, **extra}))


def _words(f: Finding, basis: Basis) -> Finding:
    e = explain(f)
    folded = f.measurement.get("folded")
    if folded:
        parts = [f"{x['attribute']} {format_number(x['value'])} {x['unit']} (limit {format_number(x['limit'])}, "
                 f"{severity_name(x['severity'])})" for x in folded]
        e = replace(e, explanation=f"{e.explanation} Part of this alert (one problem, one alert): {'; '.join(parts)}.")
    s = spec(f.measurement.attribute)
    if basis.mode == SINCE_BOOT and s is not None and s.counter:
        uptime = basis.uptime_s
        since = f"Cumulative since boot ({_age(uptime)} of uptime)" if uptime else "Cumulative since boot " \
            "(uptime unknown: add `uptime` or /proc/uptime to the capture, or a second capture for a rate)"
        e = replace(e, explanation=f"{since}: this counts every drop since the host started, not only recent "
                    "ones. " + e.explanation)
    return replace(f, explanation=e)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds / 86400:.1f} days" if seconds >= 172800 else f"{seconds / 3600:.1f} h"


def _with_ids(result: StepResult, saved: list[Alert]) -> StepResult:
    """Replace the step's alerts by their saved copies (which carry ids), keeping the grouping."""
    it = iter(saved)
    groups = [tuple(next(it) for _ in group) for group in
              (result.raised, result.updated, result.cleared, result.still_active_clean)]
    return StepResult(*groups)
