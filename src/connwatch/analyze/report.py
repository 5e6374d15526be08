"""Snapshots of one host -> findings, alerts (never stored), unsupported checks, and the JSON report.

One capture: counters are cumulative since boot (said as such, with the uptime when known) and
instantaneous values (queue fill, socket counts) are as captured. Two captures of the host taken
apart (snapshot timestamps or --interval) give deltas and rates like `check`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from connwatch.alerts.lifecycle import StepResult
from connwatch.analyze import detect as fmt
from connwatch.analyze.build import Capture
from connwatch.attributes.registry import AT_CAPTURE, INTERVAL, SINCE_BOOT, SINCE_OPEN, Need, unsupported
from connwatch.engine import Basis, CheckResult, judge, merge
from connwatch.errors import EXIT_CRITICAL, EXIT_UNKNOWN
from connwatch.model import Snapshot
from connwatch.rules.config import Config


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


def analyse(captures: Sequence[Capture], snaps: Sequence[Snapshot], config: Config,
            interval: float | None, errors: Sequence[str]) -> Analysis:
    """The same pipeline as `check` (engine.judge), never writing the alert store."""
    cur_cap, cur = captures[-1], snaps[-1]
    uptime = uptime_of(cur_cap, cur)
    span = _span(snaps, interval)
    if span is not None:
        prev, basis = replace(snaps[0], monotonic=cur.monotonic - span), Basis(INTERVAL)
    else:
        prev, basis = baseline(cur, uptime), Basis(SINCE_BOOT, uptime)
    result = merge([judge(prev, cur, config, None, basis),
                    *_namespaces(captures[0], cur_cap, config, basis, span)])
    raised = tuple(sorted(result.step.raised, key=lambda a: (a.severity, a.resource_key)))
    result = replace(result, step=StepResult(raised=raised))
    return Analysis(result, tuple(captures), basis.mode, span, uptime, tuple(unsupported_checks(cur_cap, cur)),
                    tuple(errors), cur.host.platform)


def _namespaces(first: Capture, last: Capture, config: Config, basis: Basis, span: float | None) -> list[CheckResult]:
    """The other network namespaces of a `snapshot --netns all` capture, each judged on its own samples."""
    earlier = {(s.netns.inode, s.netns.key): s for s in first.namespaces if s.netns is not None}
    out = []
    for cur in last.namespaces:
        key = (cur.netns.inode, cur.netns.key) if cur.netns is not None else None
        before = earlier.get(key) if key is not None else None
        if span is not None and before is not None and first is not last:
            prev = replace(before, monotonic=cur.monotonic - span)
        else:
            prev = baseline(cur, basis.uptime_s)
        out.append(judge(prev, cur, config, None, basis if span is None else Basis(INTERVAL)))
    return out


def _span(snaps: Sequence[Snapshot], interval: float | None) -> float | None:
    if len(snaps) < 2:
        return None
    if interval is not None:
        return interval * (len(snaps) - 1)
    first, last = snaps[0], snaps[-1]
    if first.taken_at and last.taken_at > first.taken_at and first.taken_at > 1e9:
        return last.taken_at - first.taken_at
    return None


def unsupported_checks(cap: Capture, snap: Snapshot) -> list[dict[str, str]]:
    """The checks this capture could not support (from each attribute's declared needs), each with
    the reason and what to capture instead."""

    def reason(need: Need) -> str | None:
        if need.what == "listener backlog":
            return _no_backlog(cap, bool(snap.listeners))
        if need.what.startswith("TcpExt."):
            return _no_counter(cap, need.what)
        return None

    return unsupported(snap, reason)


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


__all__ = ["AT_CAPTURE", "INTERVAL", "SINCE_BOOT", "SINCE_OPEN", "Analysis", "analyse", "unsupported_checks"]
