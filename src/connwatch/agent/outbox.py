"""The agent's notification outbox, in the state database beside the alert history.

One row per (receiver, alert, kind); `next_attempt_at` NULL = done. Its schema is versioned on its
own (`outbox_schema_version`), so the outbox can change without touching the alert history; a
0.1 database, whose outbox table was created without a version, is adopted as version 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from connwatch.alerts.db import Database, Row

SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    receiver TEXT NOT NULL,
    alert_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    sends INTEGER NOT NULL DEFAULT 0,
    last_sent_at REAL,
    last_error TEXT NOT NULL DEFAULT '',
    UNIQUE (receiver, alert_id, kind)
)""",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (receiver, next_attempt_at) "
    "WHERE next_attempt_at IS NOT NULL",
)
_ITEM = "SELECT id, receiver, alert_id, kind, payload, created_at, attempts, sends FROM outbox"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued notification: `kind` is "firing" or "resolved"; `payload` is JSON text."""

    id: int
    receiver: str
    alert_id: int
    kind: str
    payload: str
    created_at: float
    attempts: int  # failed attempts since the last delivery
    sends: int  # successful deliveries so far


def _item(r: Row) -> OutboxItem:
    return OutboxItem(int(r[0]), r[1], int(r[2]), r[3], r[4], float(r[5]), int(r[6]), int(r[7]))


class Outbox:
    """The outbox tables of an open state database (created on first use)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("outbox_schema_version", SCHEMA_VERSION, _SCHEMA)

    def close(self) -> None:
        self.db.close()

    def put(self, receiver: str, items: Iterable[tuple[int, str, str]], now: float) -> None:
        """Queue (alert_id, kind, payload JSON) for `receiver`, due now, in one transaction.

        A row that exists for (receiver, alert_id, kind) is never queued twice: a pending one gets
        the newer payload, a finished one is left alone. Queuing "resolved" finishes the alert's
        pending "firing" row for this receiver (no point announcing what is already over).
        """
        upsert = (
            "INSERT INTO outbox (receiver, alert_id, kind, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (receiver, alert_id, kind) DO UPDATE SET "
            "payload = excluded.payload WHERE next_attempt_at IS NOT NULL"
        )
        with self.db.write() as tx:
            for alert_id, kind, payload in list(items):
                tx.execute(upsert, (receiver, alert_id, kind, payload, now, now))
                if kind == "resolved":
                    tx.execute("UPDATE outbox SET next_attempt_at = NULL WHERE receiver = ? AND "
                               "alert_id = ? AND kind = 'firing'", (receiver, alert_id))

    def delivered_payload(self, receiver: str, alert_id: int, kind: str = "firing") -> str | None:
        """The payload of a row `receiver` has been sent at least once (what it knows of the alert)."""
        rows = self.db.rows("SELECT payload FROM outbox WHERE receiver = ? AND alert_id = ? AND kind = ? AND "
                            "sends > 0", (receiver, alert_id, kind))
        return str(rows[0][0]) if rows else None

    def supersede(self, receiver: str, alert_id: int, old_payload: str, now: float) -> None:
        """Queue, due now, the end of a label set the receiver was told (an alert whose severity label
        changed): kind "superseded", one row per alert, queued again at every change; the alert's firing
        row is due now too, so the new label set replaces the old one in the same delivery."""
        sql = ("INSERT INTO outbox (receiver, alert_id, kind, payload, created_at, next_attempt_at) "
               "VALUES (?, ?, 'superseded', ?, ?, ?) ON CONFLICT (receiver, alert_id, kind) DO UPDATE SET "
               "payload = excluded.payload, next_attempt_at = excluded.next_attempt_at, attempts = 0")
        with self.db.write() as tx:
            tx.execute(sql, (receiver, alert_id, old_payload, now, now))
            tx.execute("UPDATE outbox SET next_attempt_at = ? WHERE receiver = ? AND alert_id = ? AND "
                       "kind = 'firing' AND next_attempt_at IS NOT NULL", (now, receiver, alert_id))

    def due(self, receiver: str, now: float, limit: int = 500) -> list[OutboxItem]:
        """Rows of `receiver` due for (re)delivery, oldest first."""
        sql = (f"{_ITEM} WHERE receiver = ? AND next_attempt_at IS NOT NULL AND next_attempt_at <= ? "
               "ORDER BY id LIMIT ?")
        return [_item(r) for r in self.db.rows(sql, (receiver, now, limit))]

    def sent(self, ids: Iterable[int], now: float, resend_at: float | None = None) -> None:
        """Delivered: finish the rows, or (resend_at) schedule them again (active Alertmanager alerts)."""
        sql = ("UPDATE outbox SET next_attempt_at = ?, attempts = 0, sends = sends + 1, last_sent_at = ?, "
               "last_error = '' WHERE id = ? AND next_attempt_at IS NOT NULL")
        with self.db.write() as tx:
            tx.executemany(sql, ((resend_at, now, i) for i in ids))

    def failed(self, ids: Iterable[int], error: str, retry_at: float) -> None:
        """Not delivered: count the attempt and retry at `retry_at`."""
        sql = ("UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ? "
               "WHERE id = ? AND next_attempt_at IS NOT NULL")
        with self.db.write() as tx:
            tx.executemany(sql, ((retry_at, error, i) for i in ids))

    def pending(self) -> dict[str, int]:
        """Undelivered (or awaiting re-send) rows per receiver."""
        sql = "SELECT receiver, count(*) FROM outbox WHERE next_attempt_at IS NOT NULL GROUP BY receiver"
        return {r[0]: int(r[1]) for r in self.db.rows(sql)}

    def history(self, receiver: str | None = None) -> list[OutboxItem]:
        """Every row (finished ones too), oldest first: for tests and diagnostics."""
        if receiver is None:
            return [_item(r) for r in self.db.rows(f"{_ITEM} ORDER BY id")]
        return [_item(r) for r in self.db.rows(f"{_ITEM} WHERE receiver = ? ORDER BY id", (receiver,))]

    def prune(self, finished_before: float, pending_before: float) -> int:
        """Forget finished rows older than `finished_before`, and never-delivered ones created before
        `pending_before` (a receiver gone for days). Returns how many undelivered rows were dropped."""
        with self.db.write() as tx:
            tx.execute("DELETE FROM outbox WHERE next_attempt_at IS NULL AND coalesce(last_sent_at, "
                       "created_at) < ?", (finished_before,))
            dropped = tx.execute("DELETE FROM outbox WHERE next_attempt_at IS NOT NULL AND "
                                 "sends = 0 AND created_at < ?", (pending_before,)).rowcount
        return int(dropped)
