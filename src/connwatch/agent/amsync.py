"""Alertmanager's active alerts of this instance equal the database's active alerts.

The outbox makes every notification at-least-once, but some changes leave an alert behind in
Alertmanager that no notification will ever resolve: the state database replaced after a crash, an
alert whose labels changed (a new severity is a new Alertmanager alert; the old label set stays
active until its endsAt), a resolve that was dropped. So at start-up, and then every re-send
interval, the delivery thread reads Alertmanager's alerts of this instance and resolves those whose
label set no active alert of the database has. Alerts are told apart from Prometheus' (which may
carry the same alertname) by what only Prometheus sets: a generatorURL and a `job` label.

Ordering makes this safe: Alertmanager is read before the database, and only the delivery thread
posts to Alertmanager, so an alert raised meanwhile cannot be resolved by mistake; at worst an
alert cleared meanwhile is resolved twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from connwatch.alerts.store import AlertStore
from connwatch.outputs.alertmanager import Receiver, Sender, am_alert, payload, rfc3339

LabelSet = frozenset[tuple[str, str]]


def labels_of(alerts_payloads: Iterable[str], now: float, resend_s: float) -> set[LabelSet]:
    """The Alertmanager label sets of stored payloads (as `payload()` writes them)."""
    return {frozenset(am_alert(json.loads(p), "firing", now, resend_s)["labels"].items()) for p in alerts_payloads}


def ours(alert: dict[str, Any], instance: str) -> bool:
    labels = alert.get("labels") or {}
    # The agent's alerts say connwatch_origin="agent" (and a connwatch:// generatorURL); those of 0.1 had
    # neither label nor generatorURL. Prometheus' rules set a job label and an http(s) generatorURL.
    mine = labels.get("connwatch_origin") == "agent" or not alert.get("generatorURL")
    return (labels.get("instance") == instance and "job" not in labels and mine
            and "resource" in labels and "alertname" in labels)


def stale(am_alerts: Iterable[dict[str, Any]], wanted: set[LabelSet], instance: str) -> list[dict[str, Any]]:
    """Alertmanager alerts of this instance that no active database alert accounts for."""
    return [a for a in am_alerts
            if ours(a, instance) and frozenset((a.get("labels") or {}).items()) not in wanted]


def resolutions(alerts: Iterable[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """Postable alerts that end the given ones now (same labels and startsAt; endsAt = now)."""
    return [{"labels": a["labels"], "startsAt": a["startsAt"], "endsAt": rfc3339(now)} for a in alerts
            if a.get("startsAt")]


def sync(sender: Sender, rcv: Receiver, store: AlertStore, instance: str, now: float, resend_s: float,
         read_timeout: float) -> int:
    """Resolve what Alertmanager holds active for this instance and the database does not; returns
    how many were resolved. Raises DeliveryError (Alertmanager unreachable) or StateError."""
    found = sender.get_json(rcv, {"filter": f'instance="{instance}"'}, read_timeout)
    if not isinstance(found, list):
        return 0
    active = store.load_active().values()
    wanted = labels_of((payload(a, instance) for a in active), now, resend_s)
    gone = resolutions(stale((a for a in found if isinstance(a, dict)), wanted, instance), now)
    if gone:
        sender.post(rcv, gone, read_timeout=read_timeout)
    return len(gone)
