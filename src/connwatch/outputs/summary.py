"""One problem in one line, and a short paragraph: the words `check` prints first, the agent logs and
`top` lists (issue 13: the person paged at 3 a.m. reads these before anything else).

Built from an alert's resource and JSON `detail` only (never the facts objects), so an alert from this
check, from the store or from the agent is worded alike. The full article stays `alert_block`
(outputs/text.py; `check --verbose`, `connwatch alerts show ID`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from connwatch.alerts.lifecycle import StepResult
from connwatch.findings import Alert, format_number

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

TAGS = {1: "CRITICAL", 2: "HIGH", 3: "MEDIUM", 4: "LOW"}
BACKLOG = ("BacklogRejectsByPort", "AcceptQueueFill", "SynCookiesSent")
DESTINATION = ("EphemeralPortUsage", "EphemeralPortUsageWithoutReuse", "EphemeralPortExhaustion")
PER_SOURCE = ("ConnectionsPerSource", "HalfOpenPerSource", "PortsPerSource")


def tag(a: Alert) -> str:
    return TAGS.get(a.severity, str(a.severity))


def place(a: Alert) -> str:
    """Where: 'port 8080', '10.0.0.9:5432 from 10.0.0.1', 'source 10.1.2.3 → port 25', 'host'; with the
    namespace, container or pod ('… in pod shop/web') when the alert is not of connwatch's own namespace."""
    r = a.resource
    _, sep, ns = a.resource_key.partition(" in ")
    if r.get("source") is not None:
        where = f"source {r['source']}" + (f" → port {r['port']}" if r.get("port") is not None else "")
    elif r.get("destination") is not None:
        where = f"{r['destination']} from {r.get('local_address') or '?'}"
    elif r.get("port") is not None:
        where = f"port {r['port']}"
    else:
        where = "host"
    return f"{where} in {ns}" if sep else where


def _n(value: Any) -> str:
    return "?" if value is None else format_number(float(value))


def _per_s(a: Alert, what: str) -> str:
    """'27.2 requests/s dropped' with a rate, '136 requests dropped since boot' / 'over 5 s' without."""
    d = a.detail
    rate = d.get("rate_per_s")
    verb = "" if a.unit == "drops" else f" {what}"  # '136 drops since boot', not 'drops dropped'
    if rate is not None:
        return f"{_n(rate)} {a.unit}/s{verb}"
    span = "since boot" if d.get("interval_s") is None else f"over {_n(d['interval_s'])} s"
    return f"{_n(a.value)} {a.unit}{verb} {span}"


def _clients(a: Alert) -> str:
    """What happens to clients, with the rate per second when there is one."""
    d, attr = a.detail, a.attribute
    pct, lim = f"{_n(a.value)} %", f"limit {_n(a.limit)}"
    if attr == "BacklogRejectsByPort":
        hit = "clients are reset" if d.get("tcp_abort_on_overflow") == 1 else "clients wait and retry"
        return f"{_per_s(a, 'dropped')}, {hit}"
    if attr == "AcceptQueueFill":
        return f"accept queue {pct} of its backlog, new connections wait"
    if attr in ("ListenOverflows", "SynQueueDrops"):
        return f"{_per_s(a, 'dropped')} (all listeners), clients wait and retry"
    if attr == "SynCookiesSent":
        return f"{_per_s(a, 'answered with SYN cookies')}, connections still succeed"
    if attr in DESTINATION:
        fc = d.get("forecast") or {}
        rate = f", {_n(fc['rate_per_s'])} TIME_WAIT/s" if fc.get("rate_per_s") is not None else ""
        if (d.get("percent") or 0) >= 100:
            return f"every port held, connect() fails now (EADDRNOTAVAIL){rate}"
        if attr == "EphemeralPortExhaustion":
            eta = fc.get("seconds_to_full")
            when = f"full in ~{_n(eta)} s" if eta is not None else f"settles at {pct}"
            return f"ports run out at this rate ({when}), then connect() fails{rate}"
        held = "counting reusable TIME_WAIT" if attr.endswith("WithoutReuse") else "of its ports held"
        return f"{pct} {held}, at 100 % connect() fails{rate}"
    if attr == "TimeWaitSockets":
        entering = (d.get("rates") or {}).get("time_wait_entered_per_s")
        return f"TIME_WAIT at {pct} of tcp_max_tw_buckets" + (f", {_n(entering)}/s entering" if entering is not None
                                                             else "")
    if attr == "OrphanSockets":
        return f"orphans at {pct} of tcp_max_orphans, beyond it connections are reset"
    if attr == "ConnectionsPerSource":
        closing = (d.get("states") or {}).get("CLOSE_WAIT", 0)
        if closing * 2 > a.value:
            return f"{_n(a.value)} conns, {closing} in CLOSE_WAIT ({lim}): the application leaks them"
        return f"holds {_n(a.value)} conns ({lim}): one client can take every worker"
    if attr == "HalfOpenPerSource":
        return f"{_n(a.value)} half-open ({lim}): a SYN flood or lost ACKs"
    if attr == "PortsPerSource":
        return f"tried {_n(a.value)} listening ports ({lim}): a scan?"
    return f"{a.attribute} {_n(a.value)} {a.unit} > {_n(a.limit)} {a.unit}"


def clock_words(ts: float, now: float) -> str:
    stamp = datetime.fromtimestamp(ts).astimezone()
    return stamp.strftime("%H:%M:%S") if abs(now - ts) < 86400 else stamp.strftime("%Y-%m-%d %H:%M")


def summary_line(a: Alert, now: float) -> str:
    """The one line: severity, where, what happens to clients (rate per second), since when.
    'HIGH port 8080: 27.2 requests/s dropped, clients wait and retry; since 22:27:59'."""
    return f"{problem_line(a)}; since {clock_words(a.created_at, now)}"


def problem_line(a: Alert) -> str:
    """summary_line without 'since' (`analyze`: a capture does not say when the problem began)."""
    return f"{tag(a)} {place(a)}: {_clients(a)}"


def clearing_line(a: Alert, interval_s: float | None) -> str:
    """An active alert whose problem was not seen in this interval (a one-shot check run after it ended)."""
    span = f"the last {_n(interval_s)} s were" if interval_s else "this sample was"
    left = max(a.clear_after - a.clean_samples, 0)
    return (f"OK {place(a)}: no longer happening ({span} clean); alert {a.id if a.id is not None else '-'} "
            f"clears after {left} more clean sample(s)")


def cleared_line(a: Alert, now: float) -> str:
    why = a.detail.get("cleared_because")  # (engine.retire_vanished: its namespace is gone)
    return (f"OK {place(a)}: cleared (alert {a.id if a.id is not None else '-'}, raised "
            f"{clock_words(a.created_at, now)}, {why if why else f'{a.clean_samples} clean samples'})")


def log_lines(before: Mapping[tuple[str, str], int], step: StepResult, now: float) -> list[str]:
    """The agent's INFO lines for one full sample: raised, severity changed, cleared — in the words of the
    summary line. `before`: each active alert's severity before this sample."""
    lines = [f"raised: {summary_line(a, now)}" for a in step.raised]
    lines += [f"severity {TAGS.get(before[a.key], before[a.key])} -> {tag(a)}: {summary_line(a, now)}"
              for a in step.updated if a.key in before and before[a.key] != a.severity]
    return lines + [cleared_line(a, now) for a in step.cleared]


def first_step(action: str) -> str:
    """The first thing to change: the action's first sentence (outside brackets and backquotes)."""
    text = action.strip().split("\n", 1)[0]
    depth, code = 0, False
    for i, ch in enumerate(text):
        if ch == "`":
            code = not code
        elif ch in "([{" and not code:
            depth += 1
        elif ch in ")]}" and not code:
            depth = max(depth - 1, 0)
        elif ch in ".:" and not code and depth == 0 and text[i + 1:i + 2] in (" ", ""):
            return text[:i + 1] if ch == "." else text[:i] + "."
    return text


def paragraph(a: Alert) -> list[str]:
    """The measured facts that answer: still happening? other ports? a new application? what first?"""
    words: Callable[[Alert], list[str]] = (_backlog if a.attribute in BACKLOG else _destination
                                           if a.attribute in DESTINATION else _source if a.attribute in PER_SOURCE
                                           else _generic)
    out = [x for x in words(a) if x]
    if a.action:
        step = first_step(a.action).removeprefix("First ")
        out.append(f"First: {step[:1].upper()}{step[1:]}")
    if a.attribute in ("ConnectionsPerSource", "HalfOpenPerSource") and a.resource.get("port") is not None:
        out.append(f"To limit it in the kernel: connwatch sources --port {a.resource['port']} --nft "
                   f"--limit {max(1, min(int(a.limit), 10000))}")
    return out


def _age(seconds: float) -> str:
    from connwatch.timewords import age_words

    return age_words(max(seconds, 0))


def _backlog(a: Alert) -> list[str]:
    d = a.detail
    listeners: Sequence[Mapping[str, Any]] = d.get("listeners") or []
    worst = max(listeners, key=lambda x: x.get("fill") or 0, default=None)
    out = []
    if worst is not None:
        q, b, ep = worst.get("queue"), worst.get("backlog"), worst.get("endpoint")
        out.append(f"Still happening: the queue of {ep} holds {q} of a backlog of {b} (full)."
                   if d.get("queue_full_now") else
                   f"The queue of {ep} had room at the last sample ({q} of {b}): the burst has passed for now.")
    out.append(_other_ports(d))
    out.append(_owner(worst, d.get("first_seen_s")))
    som = d.get("somaxconn")
    if worst is not None and isinstance(b := worst.get("backlog"), int) and isinstance(som, int):
        out.append(f"listen() asked for a backlog of {b}; somaxconn ({som}) would allow up to {som}." if b < som
                   else f"The backlog is capped by net.core.somaxconn ({som}).")
    return out


def _other_ports(d: Mapping[str, Any]) -> str:
    """Other ports rejecting or full too (a common cause?), or only this one; a single capture has no
    interval to see rejects in, so it speaks of full queues only."""
    port = d.get("port")
    others = [p for p in d.get("rejecting_ports") or [] if p != port]
    if others:
        return f"Other ports rejecting too: {', '.join(map(str, others))} (a common cause?)."
    full = [p for p in d.get("stuck_ports") or [] if p != port]
    if full:
        return f"Other ports' accept queues are full too: {', '.join(map(str, full))} (a common cause?)."
    if d.get("interval_s") is None:
        return "No other port's accept queue is full (one capture: rejects over time are not in it)."
    return "No other port rejected connections: it is this service."


def _owner(lst: Mapping[str, Any] | None, first_seen: float | None) -> str:
    owner = None if lst is None else lst.get("owner")
    seen = f"; connwatch has seen the port for {_age(first_seen)}" if first_seen else ""
    if not owner:
        return f"Owner not visible to this user (run as root to name it){seen}."
    age = owner.get("age_s")
    running = "" if age is None else f", running for {_age(age)}" + (
        " (recently started: a new or restarted application)" if age < 3600 else "")
    fds = ""
    if owner.get("open_fds") is not None and owner.get("fd_limit") and owner["open_fds"] >= owner["fd_limit"]:
        fds = f"; at its file-descriptor limit ({owner['open_fds']}/{owner['fd_limit']}): it cannot accept"
    return f"Served by {owner.get('command')} pid {owner.get('pid')}{running}{fds}{seen}."


def _destination(a: Alert) -> list[str]:
    d = a.detail
    fc = d.get("forecast") or {}
    out = [f"{d.get('blocking')} of {d.get('usable_ports')} usable ports are held toward {d.get('destination')} "
           f"({_n(d.get('percent'))} %); TIME_WAIT {d.get('time_wait')}, reusable {d.get('time_wait_reusable')}."]
    if (d.get("percent") or 0) >= 100:
        out.append(f"Still happening: connect() to {d.get('destination')} fails now with EADDRNOTAVAIL; other "
                   "destinations are not affected.")
    elif fc.get("seconds_to_full") is not None:
        out.append(f"At {_n(fc.get('rate_per_s'))} TIME_WAIT/s it is full in about {_n(fc['seconds_to_full'])} s.")
    elif fc:
        out.append(f"At {_n(fc.get('rate_per_s'))} TIME_WAIT/s it settles at {_n(fc.get('steady_percent'))} %.")
    owners = d.get("owners") or []
    out.append("Probably from " + ", ".join(f"{o['command']} pid {o['pid']}" for o in owners)
               + " (inferred: TIME_WAIT has no owner)." if owners else
               "No process holds an open connection to it: look for short-lived clients (cron, health checks).")
    return out


def _source(a: Alert) -> list[str]:
    d = a.detail
    states = ", ".join(f"{k} {v}" for k, v in sorted((d.get("states") or {}).items(), key=lambda kv: -kv[1]))
    out = [f"{d.get('source')} {'is this host itself' if d.get('local') else 'is remote'}"
           + (f"; states: {states}." if states else ".")]
    over = sum(n for value, n in d.get("histogram") or [] if value > a.limit)
    if over > 1:
        out.append(f"{over} sources are over the limit here (connwatch sources --port {d.get('port')}).")
    return out


def _generic(a: Alert) -> list[str]:
    sentences = a.explanation.replace("\n", " ").split(". ")
    return [". ".join(sentences[:2]).rstrip(".") + "."] if a.explanation else [a.description]
