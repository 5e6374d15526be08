"""Notifications: Alertmanager API v2 and a generic JSON webhook, over reused HTTP connections.

The outbox (agent/outbox.py) stores `payload(alert, instance)`; the body is built at send time, so
an Alertmanager alert re-sent after an outage carries a fresh endsAt.

Alertmanager (POST <url>/api/v2/alerts, a list):
    labels:      alertname = attribute, severity (critical/warning/info, what default routes match:
                 Critical and High -> critical, Medium -> warning, Low -> info), connwatch_severity
                 (critical/high/medium/low), instance, host (= instance), connwatch_origin="agent",
                 resource, class, and port / source / destination / local_address when present
    annotations: summary (the description line with the alert's own severity, e.g. "TCP(1414)
                 BacklogRejectsByPort Medium, 12 requests > 0 requests"), explanation, action, text,
                 owner, command (`connwatch alerts show ID`, run on the host)
    generatorURL: connwatch://<instance>/alerts/<id>: the alert in the agent's history (no web page:
                 `connwatch alerts show ID` on that host shows it)
    startsAt:    when connwatch raised the alert; endsAt: cleared_at once resolved, else now + 4 x
                 the re-send interval (Alertmanager resolves it itself if the agent dies)
Webhook (POST <url>, one notification per request): {"version": "1", "event": "firing"|"resolved",
    "notification_id": ..., "instance": ..., "alert": <the `connwatch alerts --format json` object>}
    with the same id in an Idempotency-Key header. Delivery is at-least-once: a crash between a
    delivery and its bookkeeping, or a receiver that answers after the read timeout, repeats that
    notification with the same id (stable across retries and restarts), so a receiver can drop repeats.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import urllib3

from connwatch.findings import Alert, format_number, routing_severity
from connwatch.outputs.jsonout import RESOURCE_KEYS, alert_dict
from connwatch.outputs.prom_netns import ns_values_of

ALERTMANAGER = "alertmanager"
WEBHOOK = "webhook"
AM_PATH = "/api/v2/alerts"
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
PERMANENT = frozenset({400, 422})  # the payload itself was refused: retrying cannot help


@dataclass(frozen=True, slots=True)
class Receiver:
    kind: str  # ALERTMANAGER or WEBHOOK
    url: str  # without credentials
    name: str  # "<kind> <url>": outbox key, metric label and log name
    auth: str | None = None  # Authorization header value (from user:password@ in the URL)


def receiver(kind: str, raw_url: str) -> Receiver:
    """Parse a --alertmanager / --webhook URL; credentials in it become basic auth, never logged."""
    parts = urlsplit(raw_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{raw_url!r} is not an http:// or https:// URL")
    auth = None
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        auth = "Basic " + base64.b64encode(token).decode()
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path.rstrip("/")
    if kind == ALERTMANAGER and not path.endswith(AM_PATH):
        path += AM_PATH
    url = urlunsplit((parts.scheme, netloc, path or "/", parts.query, ""))
    return Receiver(kind, url, f"{kind} {url}", auth)


def payload(alert: Alert, instance: str) -> str:
    """What the outbox stores for one alert: its JSON object plus raw times and the instance."""
    return json.dumps({"alert": alert_dict(alert), "instance": instance, "created_at": alert.created_at,
                       "cleared_at": alert.cleared_at, "alert_class": alert.alert_class}, default=str)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def am_alert(stored: dict[str, Any], kind: str, now: float, resend_s: float) -> dict[str, Any]:
    """One Alertmanager v2 postable alert."""
    a = stored["alert"]
    labels = {"alertname": a["attribute"], "severity": routing_severity(int(a["severity"])),
              "connwatch_severity": str(a["severity_name"]).lower(), "instance": stored["instance"],
              "host": stored["instance"], "connwatch_origin": "agent", "resource": a["resource"],
              "class": stored["alert_class"]}
    for key in RESOURCE_KEYS:
        if a.get(key) is not None:
            labels[key] = str(a[key])
    netns = ns_values_of(a.get("netns"))[0]  # as the namespace label of /metrics and the generated rules
    if netns:
        labels["netns"] = netns
    annotations = {"summary": summary(a), "explanation": a["explanation"], "action": a["action"],
                   "text": a["text"], "owner": a["owner"],
                   "command": f"connwatch alerts show {a['id']}" if a.get("id") is not None else ""}
    ends = stored["cleared_at"] if kind == "resolved" and stored["cleared_at"] else now + 4 * resend_s
    if kind == "superseded":  # a label set replaced by the alert's new severity: over now
        ends = now
    out = {"labels": labels, "annotations": {k: v for k, v in annotations.items() if v},
           "startsAt": rfc3339(stored["created_at"]), "endsAt": rfc3339(max(ends, stored["created_at"]))}
    if a.get("id") is not None:
        out["generatorURL"] = f"connwatch://{quote(str(stored['instance']), safe='')}/alerts/{a['id']}"
    return out


def summary(a: dict[str, Any]) -> str:
    """The description line with the alert's severity where the support layout says "High" (the limit)."""
    value, limit = a.get("value"), a.get("limit")
    if value is None or limit is None:
        return str(a["description"])
    return (f"{a['resource']} {a['attribute']} {a['severity_name']}, {format_number(float(value))} {a['unit']} > "
            f"{format_number(float(limit))} {a['unit']}")


def notification_id(receiver_name: str, alert_id: int, kind: str, created_at: float) -> str:
    """Stable for one notification (retries, restarts) and unique across alerts: the alert's
    creation time (ms) is part of it, so a state database started afresh, whose ids begin at 1
    again, never reuses the id of an earlier alert."""
    digest = hashlib.sha256(receiver_name.encode()).hexdigest()[:12]
    return f"{digest}-{alert_id}-{round(created_at * 1000)}-{kind}"


def webhook_body(stored: dict[str, Any], rcv: Receiver, alert_id: int, kind: str) -> dict[str, Any]:
    nid = notification_id(rcv.name, alert_id, kind, float(stored["created_at"]))
    return {"version": "1", "event": kind, "notification_id": nid, "instance": stored["instance"],
            "alert": stored["alert"]}


class DeliveryError(Exception):
    """One delivery failed. `permanent`: the receiver refused the content (do not retry).
    `maybe_delivered`: the request was sent but no answer came in time (it may have arrived)."""

    def __init__(self, message: str, permanent: bool = False, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.maybe_delivered = maybe_delivered


class Sender:
    """POSTs JSON over one keep-alive connection per receiver (urllib3 pool of size 1)."""

    def __init__(self, receivers: Sequence[Receiver]) -> None:
        self._http = urllib3.PoolManager(num_pools=max(len(receivers), 1), maxsize=1, block=True,
                                         retries=False)

    def post(self, rcv: Receiver, body: Any, idempotency_key: str | None = None,
             read_timeout: float = READ_TIMEOUT_S) -> None:
        headers = {"Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        self._request("POST", rcv, rcv.url, headers, json.dumps(body).encode(), read_timeout)

    def get_json(self, rcv: Receiver, query: dict[str, str], read_timeout: float = READ_TIMEOUT_S) -> Any:
        """GET rcv.url?query and decode its JSON (Alertmanager's alert list)."""
        data = self._request("GET", rcv, f"{rcv.url}?{urlencode(query)}", {}, None, read_timeout)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise DeliveryError(f"GET answered with invalid JSON ({exc})") from exc

    def _request(self, method: str, rcv: Receiver, url: str, headers: dict[str, str], body: bytes | None,
                 read_timeout: float) -> bytes:
        headers = {**headers, "User-Agent": "connwatch-agent"}
        if rcv.auth:
            headers["Authorization"] = rcv.auth
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=read_timeout)
        try:
            resp = self._http.request(method, url, body=body, headers=headers, timeout=timeout)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise DeliveryError(f"no answer within {read_timeout:g} s", maybe_delivered=True) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryError(_reason(exc)) from exc
        if resp.status >= 300:
            text = resp.data[:200].decode("utf-8", "replace").strip().replace("\n", " ")
            raise DeliveryError(f"HTTP {resp.status} {text}".strip(), permanent=resp.status in PERMANENT)
        return bytes(resp.data)

    def close(self) -> None:
        self._http.clear()


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    """The innermost cause in words: 'connection refused', 'timed out', 'name resolution failed'."""
    inner: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    text = str(inner)
    for needle, words in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "name resolution failed"),
                          ("No route to host", "no route to host"), ("CERTIFICATE_VERIFY", "TLS verify failed")):
        if needle in text:
            return words
    return text.split(": ", 1)[-1][:200] or type(inner).__name__
