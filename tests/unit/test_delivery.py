"""Outbox + delivery against a real HTTP server on loopback: batching, backoff, no loss, no repeats."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connwatch.agent.delivery import Delivery, enqueue, reconcile
from connwatch.agent.outbox import Outbox
from connwatch.alerts.store import SCHEMA_VERSION, AlertStore
from connwatch.clock import FakeClock
from connwatch.findings import Alert
from connwatch.outputs.alertmanager import (
    ALERTMANAGER,
    WEBHOOK,
    Receiver,
    Sender,
    am_alert,
    receiver,
    rfc3339,
)


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0  # seconds between receiving a request and answering it
        self.alerts: list[dict[str, Any]] = []  # what GET answers (Alertmanager's /api/v2/alerts)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Alertmanager
    server: Recorder

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body, "peer": self.client_address[1],
                                     "headers": dict(self.headers)})
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "method": "GET"})
        data = json.dumps(self.server.alerts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder()
    yield srv
    srv.shutdown()
    srv.server_close()


def _alert(store: AlertStore, port: int, now: float = 1000.0) -> Alert:
    alert = Alert(attribute="BacklogRejectsByPort", resource_key=f"TCP({port})", resource={"port": port},
                  value=12.0, unit="conns", limit=0.0, severity=3, alert_class="backlog", state="active",
                  created_at=now, last_updated=now, occurrences=1, last_occurred=now, clear_after=3,
                  system_name="h", explanation="It persists.", text="Counter attribute")
    [saved] = store.save([alert])
    return saved


def _clear(store: AlertStore, alert: Alert, now: float) -> Alert:
    [saved] = store.save([replace(alert, state="cleared", cleared_at=now, last_updated=now)])
    return saved


def _delivery(tmp_path: Path, receivers: list[Receiver], clock: FakeClock) -> Delivery:
    return Delivery(receivers, tmp_path, clock, resend_s=60, retry_max_s=30)


_SENDERS: dict[int, Sender] = {}


def _round(d: Delivery) -> None:
    """One delivery pass, as the thread does it (one Sender, so one pool, per Delivery)."""
    sender = _SENDERS.setdefault(id(d), Sender(d.receivers))
    store = d._round(sender, None)
    assert store is not None
    store.close()


def test_receiver_urls() -> None:
    r = receiver(ALERTMANAGER, "https://ops:s3cret@am.example:9093/")
    assert r.url == "https://am.example:9093/api/v2/alerts" and "s3cret" not in r.name
    assert r.auth == "Basic b3BzOnMzY3JldA=="
    assert receiver(WEBHOOK, "http://[::1]:8080/hook").url == "http://[::1]:8080/hook"
    with pytest.raises(ValueError, match="not an http"):
        receiver(WEBHOOK, "ftp://x")


def test_alertmanager_payload_labels_annotations_and_ends_at(tmp_path: Path) -> None:
    from connwatch.outputs.alertmanager import payload

    with AlertStore.open(tmp_path) as store:
        alert = _alert(store, 8080)
    stored = json.loads(payload(alert, "web-1"))
    firing = am_alert(stored, "firing", now=2000.0, resend_s=60)
    assert firing["labels"] == {"alertname": "BacklogRejectsByPort", "severity": "warning",
                                "connwatch_severity": "medium", "instance": "web-1", "host": "web-1",
                                "connwatch_origin": "agent", "resource": "TCP(8080)", "class": "backlog",
                                "port": "8080"}
    # The summary names the alert's own severity (the support layout's "High" means the limit).
    assert firing["annotations"]["summary"] == "TCP(8080) BacklogRejectsByPort Medium, 12 conns > 0 conns"
    assert firing["annotations"]["command"] == f"connwatch alerts show {alert.id}"
    assert firing["generatorURL"] == f"connwatch://web-1/alerts/{alert.id}"
    assert firing["annotations"]["explanation"] == "It persists."
    assert firing["startsAt"] == "1970-01-01T00:16:40.000Z" and firing["endsAt"] == "1970-01-01T00:37:20.000Z"
    resolved = am_alert({**stored, "cleared_at": 1500.0}, "resolved", now=2000.0, resend_s=60)
    assert resolved["endsAt"] == "1970-01-01T00:25:00.000Z"


def test_alertmanager_batches_resends_and_resolves(tmp_path: Path, server: Recorder) -> None:
    clock = FakeClock(1000.0)
    am = receiver(ALERTMANAGER, server.url)
    with AlertStore.open(tmp_path) as store:
        a, b = _alert(store, 8080), _alert(store, 8081)
        enqueue(Outbox(store.db), [am], [a, b], [], "h", clock.time())
    d = _delivery(tmp_path, [am], clock)
    _round(d)
    [first] = server.requests
    assert first["path"] == "/api/v2/alerts" and len(first["body"]) == 2
    _round(d)
    assert len(server.requests) == 1  # nothing due until the re-send interval
    clock.advance(61)
    _round(d)
    assert len(server.requests) == 2 and len(server.requests[1]["body"]) == 2  # re-sent while active
    with AlertStore.open(tmp_path) as store:
        enqueue(Outbox(store.db), [am], [], [_clear(store, a, clock.time())], "h", clock.time())
    _round(d)
    [gone] = server.requests[2]["body"]
    assert gone["labels"]["port"] == "8080" and gone["endsAt"] == rfc3339(clock.time())  # cleared_at
    clock.advance(61)
    _round(d)
    assert [x["labels"]["port"] for x in server.requests[3]["body"]] == ["8081"]  # the cleared one stopped
    assert len({r["peer"] for r in server.requests}) == 1  # one TCP connection for everything


def test_a_severity_change_ends_the_old_label_set_at_once(tmp_path: Path, server: Recorder) -> None:
    """Alertmanager knows an alert by its labels: Medium -> High must not leave two firing alerts (issue 10)."""
    clock = FakeClock(1000.0)
    am = receiver(ALERTMANAGER, server.url)
    with AlertStore.open(tmp_path) as store:
        a = _alert(store, 8080)
        enqueue(Outbox(store.db), [am], [a], [], "h", clock.time())
    d = _delivery(tmp_path, [am], clock)
    _round(d)
    [told] = server.requests[0]["body"]
    assert told["labels"]["connwatch_severity"] == "medium"
    clock.advance(5)
    with AlertStore.open(tmp_path) as store:
        [high] = store.save([replace(a, severity=2, occurrences=2, last_updated=clock.time())])
        enqueue(Outbox(store.db), [am], [high], [], "h", clock.time())
    _round(d)
    sent = server.requests[1]["body"]
    by_severity = {x["labels"]["connwatch_severity"]: x for x in sent}
    assert set(by_severity) == {"medium", "high"}
    assert by_severity["medium"]["endsAt"] == rfc3339(clock.time())  # the old label set is over now
    assert by_severity["high"]["endsAt"] > rfc3339(clock.time())  # the new one fires
    clock.advance(61)
    _round(d)
    assert [x["labels"]["connwatch_severity"] for x in server.requests[2]["body"]] == ["high"]  # only the new one again


def test_outage_keeps_everything_and_backs_off(tmp_path: Path, server: Recorder) -> None:
    clock = FakeClock(1000.0)
    dead = Recorder()
    port = dead.server_address[1]
    dead.shutdown()
    dead.server_close()  # nothing listens there now: connection refused
    am = receiver(ALERTMANAGER, f"http://127.0.0.1:{port}")
    with AlertStore.open(tmp_path) as store:
        enqueue(Outbox(store.db), [am], [_alert(store, 8080)], [], "h", clock.time())
    d = _delivery(tmp_path, [am], clock)
    waits = []
    for _ in range(6):  # a long outage: every attempt fails, the pause doubles up to retry_max
        _round(d)
        waits.append(d._next_try[am.name] - clock.time())
        clock.advance(waits[-1] + 0.01)
    assert waits[0] < 1.2 and waits[1] > 1.7 and waits[4] > 14 and waits[-1] <= 33
    assert d.pending[am.name] == 1 and d.failures[am.name] == 6
    back = Recorder(port)  # Alertmanager is back on the same port
    try:
        _round(d)
        assert len(back.requests) == 1 and back.requests[0]["body"][0]["labels"]["port"] == "8080"
        assert d.pending[am.name] == 1 and d.sent[am.name] == 1  # pending = awaiting re-send
    finally:
        back.shutdown()
        back.server_close()


def test_webhook_events_once_across_restarts(tmp_path: Path, server: Recorder) -> None:
    clock = FakeClock(1000.0)
    hook = receiver(WEBHOOK, server.url + "/hook")
    with AlertStore.open(tmp_path) as store:
        a = _alert(store, 8080)
        enqueue(Outbox(store.db), [hook], [a], [], "h", clock.time())
    _round(_delivery(tmp_path, [hook], clock))
    with AlertStore.open(tmp_path) as store:  # the alert goes on being updated, then a restart
        enqueue(Outbox(store.db), [hook], [replace(a, occurrences=2)], [], "h", clock.time())
        reconcile(store, Outbox(store.db), [hook], "h", clock.time())
    clock.advance(100)
    _round(_delivery(tmp_path, [hook], clock))
    assert [r["body"]["event"] for r in server.requests] == ["firing"]
    with AlertStore.open(tmp_path) as store:
        _clear(store, a, clock.time())  # saved, then the agent dies before queueing "resolved"
        reconcile(store, Outbox(store.db), [hook], "h", clock.time())  # what the restarted agent does first
        reconcile(store, Outbox(store.db), [hook], "h", clock.time())
    _round(_delivery(tmp_path, [hook], clock))
    events = [(r["body"]["event"], r["body"]["alert"]["id"]) for r in server.requests]
    assert events == [("firing", a.id), ("resolved", a.id)]
    ids = [r["headers"]["Idempotency-Key"] for r in server.requests]
    assert ids == [r["body"]["notification_id"] for r in server.requests] and len(set(ids)) == 2


def test_crash_after_save_before_enqueue_is_recovered(tmp_path: Path, server: Recorder) -> None:
    clock = FakeClock(1000.0)
    am = receiver(ALERTMANAGER, server.url)
    with AlertStore.open(tmp_path) as store:
        _alert(store, 9090)  # saved active, never queued
        reconcile(store, Outbox(store.db), [am], "h", clock.time())
    _round(_delivery(tmp_path, [am], clock))
    assert [a["labels"]["port"] for a in server.requests[0]["body"]] == ["9090"]


def test_refused_payload_is_dropped_with_an_error_not_retried(tmp_path: Path, server: Recorder,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(1000.0)
    server.status = 400
    am = receiver(ALERTMANAGER, server.url)
    with AlertStore.open(tmp_path) as store:
        enqueue(Outbox(store.db), [am], [_alert(store, 8080)], [], "h", clock.time())
    d = _delivery(tmp_path, [am], clock)
    _round(d)
    clock.advance(100)
    _round(d)
    assert len(server.requests) == 1 and d.pending[am.name] == 0
    assert "refused 1 notification(s) (HTTP 400" in caplog.text


def test_outbox_added_to_a_version_1_database(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        alert = _alert(store, 8080)
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    conn.execute("DROP TABLE IF EXISTS outbox")  # a database written before the outbox existed
    conn.commit()
    conn.close()
    with AlertStore.open(tmp_path) as store:
        assert store.get(alert.id or 0) == alert
        Outbox(store.db).put("r", [(alert.id or 0, "firing", "{}")], 5.0)
        Outbox(store.db).put("r", [(alert.id or 0, "firing", '{"newer": 1}')], 6.0)
        [item] = Outbox(store.db).due("r", 10.0)
        assert item.payload == '{"newer": 1}' and item.created_at == 5.0
        Outbox(store.db).put("r", [(alert.id or 0, "resolved", "{}")], 7.0)
        assert [i.kind for i in Outbox(store.db).due("r", 10.0)] == ["resolved"]  # firing is moot now
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]  # the outbox: its own
    conn.close()


def test_prune_forgets_old_finished_rows_and_keeps_active_resends(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        Outbox(store.db).put("r", [(1, "resolved", "{}"), (2, "firing", "{}"), (3, "firing", "{}")], 100.0)
        [done, resend, _never] = Outbox(store.db).due("r", 100.0)
        Outbox(store.db).sent([done.id], 100.0)  # finished
        Outbox(store.db).sent([resend.id], 100.0, resend_at=160.0)  # an active alert awaiting re-send
        assert Outbox(store.db).prune(finished_before=50.0, pending_before=50.0) == 0
        assert Outbox(store.db).prune(finished_before=200.0, pending_before=200.0) == 1  # the never-sent one
        assert [(i.alert_id, i.sends) for i in Outbox(store.db).history("r")] == [(2, 1)]


def test_receiver_slower_than_the_read_timeout_gets_a_notification_twice_not_forever(
        tmp_path: Path, server: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    # Regression (issue 14.6): every attempt timed out at the same read timeout while the receiver
    # took each one; it got the same batch again at every retry.
    clock = FakeClock(1000.0)
    server.delay = 0.6
    hook = receiver(WEBHOOK, server.url + "/hook")
    with AlertStore.open(tmp_path) as store:
        enqueue(Outbox(store.db), [hook], [_alert(store, 8080)], [], "h", clock.time())
    d = Delivery([hook], tmp_path, clock, resend_s=60, retry_max_s=30, read_timeout_s=0.4)
    with caplog.at_level(logging.INFO, "connwatch.agent"):
        for _ in range(5):
            _round(d)
            clock.advance(40)  # past any backoff
    assert len(server.requests) == 2  # the timed-out one (it arrived), then the one answered in time
    keys = {r["headers"]["Idempotency-Key"] for r in server.requests}
    assert len(keys) == 1 and keys == {server.requests[0]["body"]["notification_id"]}
    assert d.timeouts[hook.name] == 1 and d.sent[hook.name] == 1 and d.pending[hook.name] == 0
    assert d.read_timeout[hook.name] == 0.8
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "no answer within 0.4 s (it may have arrived)" in warning and "same idempotency key" in warning


def _am(labels: dict[str, str], generator: str = "") -> dict[str, Any]:
    return {"labels": labels, "startsAt": "2026-12-01T10:00:00.000Z", "endsAt": "2026-12-01T11:00:00.000Z",
            "generatorURL": generator, "status": {"state": "active"}}


def test_startup_sync_resolves_in_alertmanager_what_the_database_does_not_have(tmp_path: Path,
                                                                               server: Recorder) -> None:
    clock = FakeClock(5000.0)
    am = receiver(ALERTMANAGER, server.url)
    with AlertStore.open(tmp_path) as store:
        kept = _alert(store, 8080)
        enqueue(Outbox(store.db), [am], [kept], [], "h", clock.time())
    mine = {"alertname": "BacklogRejectsByPort", "instance": "h", "host": "h", "connwatch_origin": "agent",
            "resource": "TCP(8080)", "class": "backlog", "port": "8080"}
    medium = {"severity": "warning", "connwatch_severity": "medium"}
    server.alerts = [
        _am({**mine, **medium}),  # the database's active alert: kept
        _am({**mine, "severity": "critical", "connwatch_severity": "high"}),  # under its old severity: stale
        _am({**mine, **medium, "port": "9090", "resource": "TCP(9090)"}),  # cleared or lost: stale
        _am({**mine, **medium, "instance": "other"}),  # another agent's
        _am({**mine, **medium, "job": "connwatch", "connwatch_origin": "prometheus"},
            "http://prom:9090/graph"),  # Prometheus' rule
    ]
    d = Delivery([am], tmp_path, clock, resend_s=60, retry_max_s=30, instance="h")
    _round(d)
    assert [r.get("method", "POST") for r in server.requests] == ["POST"]  # no sample judged yet: no comparison
    server.requests.clear()
    d.judged.set()
    clock.advance(61)
    _round(d)
    get, resolve, firing = server.requests  # compare (resolving two), then the due re-send
    assert [a["labels"]["port"] for a in firing["body"]] == ["8080"]
    assert get["method"] == "GET" and get["path"] == '/api/v2/alerts?filter=instance%3D%22h%22'
    assert sorted((a["labels"]["connwatch_severity"], a["labels"]["port"]) for a in resolve["body"]) == [
        ("high", "8080"), ("medium", "9090")]
    assert all(a["endsAt"] == rfc3339(clock.time()) and a["startsAt"] == "2026-12-01T10:00:00.000Z"
               for a in resolve["body"])
    server.requests.clear()
    _round(d)
    assert not server.requests  # nothing due; the next comparison comes after the re-send interval
    clock.advance(61)
    server.alerts = server.alerts[:1]
    _round(d)
    assert [r.get("method", "POST") for r in server.requests] == ["GET", "POST"]  # compare, then the re-send
    assert [a["labels"]["connwatch_severity"] for a in server.requests[1]["body"]] == ["medium"]


def test_idempotency_key_is_stable_per_notification_and_unique_per_alert() -> None:
    from connwatch.outputs.alertmanager import notification_id

    hook = receiver(WEBHOOK, "http://127.0.0.1:1/hook")
    key = notification_id(hook.name, 1, "firing", 1000.25)
    assert key == notification_id(hook.name, 1, "firing", 1000.25)  # every retry, every restart
    assert key != notification_id(hook.name, 1, "resolved", 1000.25)
    # A fresh database numbers alerts from 1 again: the creation time keeps the keys apart.
    assert key != notification_id(hook.name, 1, "firing", 2000.0)
    assert key != notification_id(receiver(WEBHOOK, "http://127.0.0.1:2/hook").name, 1, "firing", 1000.25)
