"""One evaluation: two snapshots -> measurements -> findings (with words) -> alert lifecycle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from connwatch.alerts.lifecycle import StepResult, step
from connwatch.alerts.store import AlertStore
from connwatch.attributes import measure_all
from connwatch.attributes.backlog import reconcile
from connwatch.errors import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING
from connwatch.explain import explain
from connwatch.findings import Finding
from connwatch.model import Snapshot
from connwatch.rules.evaluate import evaluate
from connwatch.rules.spec import Rule

STATUS_NAMES = {EXIT_OK: "OK", EXIT_WARNING: "WARNING", EXIT_CRITICAL: "CRITICAL", 3: "UNKNOWN"}


@dataclass(frozen=True, slots=True)
class CheckResult:
    previous: Snapshot
    current: Snapshot
    findings: tuple[Finding, ...]
    step: StepResult
    reconciliation: dict[str, int | None]
    store_error: str | None = None

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


def _first_seen(findings: list[Finding], store: AlertStore | None, now: float) -> list[Finding]:
    """Add how long connwatch has known each port (answers "is this a new application?")."""
    ports = sorted({int(p) for f in findings if isinstance(p := f.measurement.resource.get("port"), int)})
    if store is None or not ports:
        return findings
    seen = store.mark_seen((f"listen:{p}" for p in ports), now)
    out = []
    for f in findings:
        port = f.measurement.resource.get("port")
        first = seen.get(f"listen:{port}")
        if first is not None and now - first > 0:
            detail: dict[str, Any] = {**f.measurement.detail, "first_seen_s": round(now - first, 1)}
            f = replace(f, measurement=replace(f.measurement, detail=detail))
        out.append(f)
    return out


def judge(prev: Snapshot, cur: Snapshot, rules: Sequence[Rule], store: AlertStore | None,
          system_name: str | None = None) -> CheckResult:
    """Measure, evaluate, explain the breaches, and advance (and persist) the alert lifecycle."""
    findings = evaluate(rules, measure_all(prev, cur))
    findings = _first_seen(findings, store, cur.taken_at)
    findings = [replace(f, explanation=explain(f)) if f.breached else f for f in findings]
    name = system_name or cur.host.hostname
    active = store.load_active() if store is not None else {}
    result = step(active, findings, cur.taken_at, name)
    if store is not None:
        saved = store.save(result.alerts)
        result = _with_ids(result, saved)
    return CheckResult(prev, cur, tuple(findings), result, reconcile(prev, cur))


def _with_ids(result: StepResult, saved: list[Any]) -> StepResult:
    """Replace the step's alerts by their saved copies (which carry ids), keeping the grouping."""
    it = iter(saved)
    groups = [tuple(next(it) for _ in group) for group in
              (result.raised, result.updated, result.cleared, result.still_active_clean)]
    return StepResult(*groups)
