"""Snapshots of one host -> findings, alerts (never stored), unsupported checks, and the JSON report.

One capture: counters are cumulative since boot (said as such, with the uptime when known) and
instantaneous values (queue fill, socket counts) are as captured. Two captures of the host taken
apart (snapshot timestamps or --interval) give deltas and rates like `check`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from connwatch.alerts.lifecycle import StepResult, most_severe_breaches, raise_alert
from connwatch.analyze import detect as fmt
from connwatch.analyze.build import Capture
from connwatch.attributes import known_attributes, measure_all
from connwatch.attributes.backlog import reconcile
from connwatch.engine import CheckResult
from connwatch.errors import EXIT_CRITICAL, EXIT_UNKNOWN
from connwatch.explain import explain
from connwatch.findings import Finding
from connwatch.model import Snapshot
from connwatch.rules.evaluate import evaluate
from connwatch.rules.spec import Rule

SINCE_BOOT, SINCE_OPEN, AT_CAPTURE, INTERVAL = "since boot", "since the listener opened", "at capture", "interval"
CONNECTION_CHECKS = ("EphemeralPortUsage", "TimeWaitSockets", "ConnectionsPerSource")


@dataclass(frozen=True)
class Analysis:
    result: CheckResult
    captures: tuple[Capture, ...]
    basis: str  # "since boot" or "interval"
    interval_s: float | None
    uptime_s: float | None
    unsupported: tuple[dict[str, str], ...]
    errors: tuple[str, ...]
    platform: str

    @property
    def exit_code(self) -> int:
        code = self.result.exit_code
        if self.errors and code != EXIT_CRITICAL:
            return EXIT_UNKNOWN
        return code


def baseline(cur: Snapshot, uptime: float | None) -> Snapshot:
    """The host at boot: every counter 0, no listeners; `uptime` seconds before the capture."""
    return replace(cur, counters={k: 0 for k in cur.counters}, listeners=(), sockets=None,
                   monotonic=cur.monotonic - (uptime or 0.0), taken_at=cur.taken_at - (uptime or 0.0))


def uptime_of(cap: Capture, snap: Snapshot) -> float | None:
    if cap.uptime_s is not None:
        return cap.uptime_s
    if snap.host.boot_time and snap.taken_at > snap.host.boot_time and cap.snapshot is not None:
        return round(snap.taken_at - snap.host.boot_time, 1)
    return None


def _basis(attribute: str, mode: str) -> str:
    if mode == INTERVAL:
        return INTERVAL if known_attributes().get(attribute, ("", False))[1] else AT_CAPTURE
    if not known_attributes().get(attribute, ("", False))[1]:
        return AT_CAPTURE
    return SINCE_OPEN if attribute == "BacklogRejectsByPort" else SINCE_BOOT


def _since_boot_detail(f: Finding, uptime: float | None) -> Finding:
    m = f.measurement
    detail: dict[str, Any] = {**m.detail, "basis": _basis(m.attribute, SINCE_BOOT), "uptime_s": uptime}
    if uptime is None and "interval_s" in detail:
        detail["interval_s"] = None
        detail["rate_per_s"] = None
    return replace(f, measurement=replace(m, detail=detail))


def _words(f: Finding, basis: str, uptime: float | None) -> Finding:
    e = explain(f)
    text, action = e.explanation, e.action
    if basis == SINCE_BOOT and known_attributes().get(f.measurement.attribute, ("", False))[1]:
        since = f"Cumulative since boot ({_age(uptime)} of uptime)" if uptime else "Cumulative since boot " \
            "(uptime unknown: add `uptime` or /proc/uptime to the capture, or a second capture for a rate)"
        text = f"{since}: this counts every drop since the host started, not only recent ones. " + text
    return replace(f, explanation=replace(e, explanation=text, action=action))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds / 86400:.1f} days" if seconds >= 172800 else f"{seconds / 3600:.1f} h"


def analyse(captures: Sequence[Capture], snaps: Sequence[Snapshot], rules: Sequence[Rule],
            interval: float | None, errors: Sequence[str]) -> Analysis:
    cur_cap, cur = captures[-1], snaps[-1]
    platform = cur.host.platform
    uptime = uptime_of(cur_cap, cur)
    span = _span(snaps, interval)
    if span is not None:
        prev = replace(snaps[0], monotonic=cur.monotonic - span)
        basis = INTERVAL
    else:
        prev = baseline(cur, uptime)
        basis = SINCE_BOOT
    findings = evaluate(rules, measure_all(prev, cur))
    if basis == SINCE_BOOT:
        findings = [_since_boot_detail(f, uptime) for f in findings]
    findings = [_words(f, basis, uptime) if f.breached else f for f in findings]
    name = cur.host.hostname
    alerts = tuple(raise_alert(f, cur.taken_at, name) for f in _most_severe(findings))
    result = CheckResult(prev, cur, tuple(findings), StepResult(raised=alerts), reconcile(prev, cur))
    return Analysis(result, tuple(captures), basis, span, uptime, tuple(unsupported_checks(captures[-1], cur)),
                    tuple(errors), platform)


def _span(snaps: Sequence[Snapshot], interval: float | None) -> float | None:
    if len(snaps) < 2:
        return None
    if interval is not None:
        return interval * (len(snaps) - 1)
    first, last = snaps[0], snaps[-1]
    if first.taken_at and last.taken_at > first.taken_at and first.taken_at > 1e9:
        return last.taken_at - first.taken_at
    return None


def _most_severe(findings: Sequence[Finding]) -> list[Finding]:
    chosen = most_severe_breaches(findings)
    return sorted(chosen.values(), key=lambda f: (f.severity, f.measurement.resource_key))


def unsupported_checks(cap: Capture, snap: Snapshot) -> list[dict[str, str]]:
    """The checks this capture could not support, each with the reason and what to capture instead."""
    out: list[dict[str, str]] = []
    listeners = snap.listeners
    if not any(x.backlog is not None for x in listeners):
        out.append({"check": "AcceptQueueFill", "reason": _no_backlog(cap, bool(listeners))})
    if not any(x.drops is not None for x in listeners):
        out.append({"check": "BacklogRejectsByPort", "reason": "per-listener drop counters are only in "
                    "`ss -ltnm` (skmem d) or a `connwatch snapshot`"})
    for check, counter in (("ListenOverflows", "TcpExt.ListenOverflows"), ("SynQueueDrops", "TcpExt.TCPReqQFullDrop")):
        if counter not in snap.counters:
            out.append({"check": check, "reason": _no_counter(cap, counter)})
    for check in CONNECTION_CHECKS:
        if snap.sockets is None and not (check == "TimeWaitSockets" and "TCP.tw" in snap.sockstat):
            out.append({"check": check, "reason": "the capture lists no connections, only listeners or "
                        "counters (add `ss -tan` or `netstat -an` output)"})
    return out


def _no_backlog(cap: Capture, any_listener: bool) -> str:
    if not any_listener:
        return "the capture lists no listening sockets"
    if fmt.NETSTAT_LINUX in cap.formats:
        return "Linux netstat shows the accept-queue length (Recv-Q) but not the backlog: capture `ss -ltn`"
    if fmt.NETSTAT_WINDOWS in cap.formats:
        return "Windows netstat shows no accept queues"
    if fmt.NETSTAT_BSD in cap.formats:
        return "`netstat -an` shows no listen queues: capture `netstat -Lan`"
    return "/proc/net/tcp shows the accept-queue length but not the backlog: capture `ss -ltn`"


def _no_counter(cap: Capture, counter: str) -> str:
    if fmt.NETSTAT_WINDOWS in cap.formats or fmt.NETSTAT_S_WINDOWS in cap.formats:
        return "Windows keeps no listen-queue overflow counter"
    if fmt.NETSTAT_BSD in cap.formats or fmt.NETSTAT_BSD_LISTEN in cap.formats:
        return "use `netstat -s -p tcp` ('listen queue overflows') on macOS/FreeBSD; not parsed by connwatch"
    if any(k.startswith("TcpExt.") for k in cap.counters):
        return f"the capture's TcpExt counters have no {counter.split('.')[1]} (older kernel or net-tools " \
            "without that line)"
    return "no TcpExt counters: add `nstat -az`, `netstat -s` or /proc/net/netstat"


__all__ = ["AT_CAPTURE", "SINCE_BOOT", "Analysis", "analyse", "unsupported_checks"]
