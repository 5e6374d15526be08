"""JSON output. The keys here are the contract documented in the README: keep them stable."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

from connwatch import __version__
from connwatch.model import Listener, fill_percent
from connwatch.record import asdict
from connwatch.snapshot_json import listener_dict, netns_dict

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:  # (not imported to run: `snapshot` and `listeners` print JSON without loading the rules)
    from typing import Any

    from connwatch.engine import CheckResult
    from connwatch.findings import Alert, Finding
    from connwatch.model import Snapshot
    from connwatch.outputs.fastjson import Table

RESOURCE_KEYS = ("port", "source", "destination", "local_address")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import datetime  # (only outputs with times: `snapshot` and `listeners` JSON have none)

    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def alert_dict(a: Alert) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": a.id, "attribute": a.attribute, "resource": a.resource_key, "port": None,
    }
    for key in RESOURCE_KEYS:
        if key in a.resource:
            d[key] = a.resource[key]
    if "netns" in a.resource:  # an alert of another network namespace (container, pod)
        d["netns"] = a.detail.get("netns") or {"key": a.resource["netns"]}
    d.update({
        "value": a.value, "unit": a.unit, "limit": a.limit, "severity": a.severity,
        "severity_name": a.severity_name, "class": a.alert_class, "state": a.state,
        "description": a.description, "text": a.text, "explanation": a.explanation, "action": a.action,
        "owner": a.owner, "system_name": a.system_name, "created_at": iso(a.created_at),
        "last_updated": iso(a.last_updated), "occurrences": a.occurrences,
        "last_occurred": iso(a.last_occurred), "cleared_at": iso(a.cleared_at),
        "clean_samples": a.clean_samples, "clear_after": a.clear_after, "detail": dict(a.detail),
    })
    return d


def listener_row(lst: Listener, drops_delta: int | None = None) -> dict[str, Any]:
    d = listener_dict(lst)
    d["fill"] = fill_percent(lst)
    d["drops_delta"] = drops_delta
    return d


def finding_dict(f: Finding) -> dict[str, Any]:
    m = f.measurement
    d = {"attribute": m.attribute, "resource": m.resource_key, **dict(m.resource), "value": m.value,
         "unit": m.unit, "limit": f.limit, "severity": f.severity, "breached": f.breached}
    if f.folded_into is not None:
        d["folded_into"] = f.folded_into  # breached, reported inside that alert (one problem, one alert)
    return d


def check_dict(result: CheckResult, tables: bool = False) -> dict[str, Any]:
    """The `check` JSON document's data. `tables`: `listeners` as a fastjson Table (the same rows, as
    columns; check_text writes it) instead of a list of dicts."""
    from connwatch.attributes.backlog import drop_deltas
    from connwatch.outputs.fastjson import Table

    cur = result.current
    listeners = Table([])
    owners: dict[int, dict[str, Any]] = {}
    for part in result.parts or (result,):
        ns = part.current.netns
        listeners += listener_table(part.current.listeners, drop_deltas(part.previous, part.current),
                                    netns_dict(ns) if ns is not None and not ns.own else None, owners)
    active = result.step.raised + result.step.updated
    return {
        "connwatch": __version__, "status": result.status, "exit_code": result.exit_code,
        "host": cur.host.hostname, "taken_at": iso(cur.taken_at),
        "interval_s": round(cur.monotonic - result.previous.monotonic, 3),
        "alerts": [alert_dict(a) for a in sorted(active, key=lambda a: (a.severity, a.resource_key))],
        "cleared": [alert_dict(a) for a in result.step.cleared],
        "clearing": [alert_dict(a) for a in result.step.still_active_clean],
        "listeners": listeners if tables else listeners.rows(),
        "namespaces": [_namespace(part) for part in result.parts or (result,) if part.current.netns is not None],
        "measurements": [finding_dict(f) for f in result.findings],
        "reconciliation": result.reconciliation,
        "limitations": list(cur.limitations),
        "sources": [{"name": s.name, "ok": s.ok, "detail": s.detail, "duration_ms": s.duration_ms}
                    for s in cur.statuses],
        "store_error": result.store_error,
    }


def check_text(result: CheckResult) -> str:
    """dumps(check_dict(result), "check"): the same text, written by outputs/fastjson.py. json's indenting
    encoder is Python, value by value: at 100 namespaces (5,000 listeners, 15,700 measurements, 8 MB) it
    took 350 ms; fastjson writes the listeners column by column (one netns and one owner dict each, written
    once) and the measurements by runs of the same keys (issue 17)."""
    from connwatch.outputs.fastjson import dumps_indented

    return dumps_indented(document("check", check_dict(result, tables=True)))


def listener_table(listeners: Sequence[Listener], deltas: Mapping[tuple[int, int, int, str], int] | None = None,
                   netns: dict[str, Any] | None = None, owners: dict[int, dict[str, Any]] | None = None) -> Table:
    """listener_row(x, deltas.get(x.identity)) of each listener (plus `netns`) as a fastjson Table: columns,
    an owner's dict made once and shared by its listeners (`owners`: by id of the Process, across calls)."""
    from connwatch.outputs.fastjson import Table

    made = {} if owners is None else owners
    names = Listener.__match_args__
    columns: list[list[Any]] = [list(map(operator.attrgetter(name), listeners)) for name in names]
    at = names.index("owner")
    for o in columns[at]:
        if o is not None and id(o) not in made:
            made[id(o)] = asdict(o)
    columns[at] = [None if o is None else made[id(o)] for o in columns[at]]
    got = {} if deltas is None else deltas
    columns += [[x.endpoint for x in listeners], list(map(fill_percent, listeners)),
                [got.get(x.identity) for x in listeners]]
    keys: tuple[str, ...] = (*names, "endpoint", "fill", "drops_delta")
    if netns is not None:
        keys, columns = (*keys, "netns"), [*columns, [netns] * len(listeners)]
    return Table([(keys, columns)] if listeners else [])


def _namespace(part: CheckResult) -> dict[str, Any]:
    """One judged network namespace: who runs there, what was seen, what is alerted."""
    ns = part.current.netns
    assert ns is not None
    alerts = part.step.raised + part.step.updated
    return {**netns_dict(ns), "listeners": len(part.current.listeners),
            "alerts": len(alerts), "sources_ok": all(s.ok for s in part.current.statuses),
            "limitations": list(part.current.limitations)}


def dumps(data: Any, kind: str | None = None) -> str:
    """JSON text; with `kind`, the document starts with the header every JSON output shares:
    {"connwatch": VERSION, "kind": KIND, ...} (a schema per kind: connwatch/schemas/KIND.json)."""
    if kind is not None:
        data = document(kind, data)
    from connwatch.outputs.jsontext import dumps as text  # (json.dumps(data, indent=2, default=str)'s text)

    return text(data)


def document(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The data under the shared header; keys already in `data` keep their values (and "connwatch" its place)."""
    return {"connwatch": __version__, "kind": kind, **data}


def snapshot_listeners(snap: Snapshot) -> list[dict[str, Any]]:
    return [listener_row(x) for x in snap.listeners]
