"""Delivery: a thread that drains the SQLite outbox to Alertmanager and webhooks, with backoff.

The sampling loop only writes to the outbox (`enqueue`), so a slow or absent receiver never delays
a sample. This thread has its own database connection (WAL: readers and the writer do not block
each other for long). A receiver that fails is retried after 1, 2, 4 ... seconds up to
--retry-max; nothing is dropped while it is down (undelivered rows are kept for 7 days), and one
log line says so when the outage starts and one when it ends.

The contract is at-least-once with a stable idempotency key (README): a row is finished only after
the receiver answered, so a crash in between, or an answer later than the read timeout, repeats it
with the same notification id. A receiver slower than the read timeout is not hammered: each such
timeout doubles that receiver's read timeout (up to READ_TIMEOUT_MAX_S) on top of the backoff, and
is counted (connwatch_notification_timeouts_total). Alertmanager is also kept equal to the
database (agent/amsync.py): after the first judged sample and then every re-send interval, what it
holds active for this instance and the database does not is resolved.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from connwatch.agent import amsync
from connwatch.agent.outbox import Outbox, OutboxItem
from connwatch.alerts.db import Database
from connwatch.alerts.store import AlertStore
from connwatch.clock import Clock
from connwatch.errors import StateError
from connwatch.findings import Alert
from connwatch.outputs.alertmanager import (
    ALERTMANAGER,
    READ_TIMEOUT_S,
    DeliveryError,
    Receiver,
    Sender,
    am_alert,
    payload,
    webhook_body,
)

log = logging.getLogger("connwatch.agent")
RETRY_MIN_S = 1.0
KEEP_FINISHED_S = 7 * 86400
KEEP_UNDELIVERED_S = 7 * 86400
BATCH = 500
PRUNE_EVERY_S = 3600.0
READ_TIMEOUT_MAX_S = 60.0


def enqueue(outbox: Outbox, receivers: Sequence[Receiver], firing: Iterable[Alert],
            resolved: Iterable[Alert], instance: str, now: float) -> None:
    """Queue the notifications of one lifecycle step (raises StateError when the disk refuses)."""
    items = [(a.id, "firing", payload(a, instance)) for a in firing if a.id is not None]
    items += [(a.id, "resolved", payload(a, instance)) for a in resolved if a.id is not None]
    if not items or not receivers:
        return
    for rcv in receivers:
        if rcv.kind == ALERTMANAGER:
            _supersede_changed_labels(outbox, rcv, [a for a in firing if a.id is not None], now)
        outbox.put(rcv.name, items, now)


def _supersede_changed_labels(outbox: Outbox, rcv: Receiver, firing: Sequence[Alert], now: float) -> None:
    """Alertmanager knows an alert by its labels, severity among them: when connwatch changes an alert's
    severity, the label set Alertmanager was told ends at once (endsAt now), so it shows exactly one firing
    alert per connwatch alert, not the old one lingering until its endsAt."""
    for a in firing:
        assert a.id is not None
        old = outbox.delivered_payload(rcv.name, a.id)
        if old is not None and json.loads(old)["alert"]["severity"] != a.severity:
            outbox.supersede(rcv.name, a.id, old, now)


def reconcile(store: AlertStore, outbox: Outbox, receivers: Sequence[Receiver], instance: str, now: float) -> None:
    """At start: queue what a crash between saving an alert and queuing it may have left out.

    Active alerts get their "firing" row (a no-op when it exists); cleared alerts this receiver was
    told about get their "resolved" row. Existing rows are never queued twice, so nothing repeats.
    """
    active = list(store.load_active().values())
    recent = [a for a in store.history(include_cleared=True, limit=1000)
              if a.state == "cleared" and (a.cleared_at or 0) > now - KEEP_FINISHED_S]
    for rcv in receivers:
        rows = outbox.history(rcv.name)
        told = {r.alert_id for r in rows if r.kind == "firing"}
        closed = {r.alert_id for r in rows if r.kind == "resolved"}
        items = [(a.id, "firing", payload(a, instance)) for a in active if a.id is not None]
        items += [(a.id, "resolved", payload(a, instance)) for a in recent
                  if a.id in told and a.id not in closed]
        if items:
            outbox.put(rcv.name, items, now)


def _open_outbox(state_dir: Path) -> Outbox:
    """The delivery thread's own connection to the state database (WAL: it does not block the sampler)."""
    db = Database.open(state_dir)
    try:
        return Outbox(db)
    except StateError:
        db.close()
        raise


class Delivery(threading.Thread):
    def __init__(self, receivers: Sequence[Receiver], state_dir: Path, clock: Clock, resend_s: float,
                 retry_max_s: float, instance: str | None = None, read_timeout_s: float = READ_TIMEOUT_S,
                 scope: str = "") -> None:
        super().__init__(name="connwatch-delivery", daemon=True)
        self.receivers = tuple(receivers)
        self.state_dir = state_dir
        self.scope = scope  # the agent's store's (alerts/store.py): Alertmanager is compared with its alerts
        self.clock = clock
        self.resend_s = resend_s
        self.retry_max_s = retry_max_s
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.pending: dict[str, int] = {r.name: 0 for r in receivers}
        self.sent: dict[str, int] = {r.name: 0 for r in receivers}
        self.failures: dict[str, int] = {r.name: 0 for r in receivers}
        self.timeouts: dict[str, int] = {r.name: 0 for r in receivers}
        self.instance = instance  # None: no Alertmanager sync (tests of the outbox alone)
        # Set by the agent once a sample has been judged and saved: comparing Alertmanager with a
        # database that has not judged yet (e.g. one lost in a crash) would resolve alerts that are
        # about to be raised again, a resolved-then-firing flap for whoever is paged.
        self.judged = threading.Event()
        self.read_timeout = {r.name: read_timeout_s for r in receivers}
        self._failing: dict[str, int] = {}  # receiver -> consecutive failures
        self._next_try: dict[str, float] = {}
        self._sync_at: dict[str, float] = {}  # Alertmanager receiver -> next sync (0 = at start-up)
        self._pruned_at = 0.0

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        sender = Sender(self.receivers)
        store: Outbox | None = None
        try:
            while not self.stopping.is_set():
                try:
                    store = self._round(sender, store)
                except Exception as exc:  # delivery must outlive one bad row or response
                    log.error("delivery round failed (%s: %s); retrying", type(exc).__name__, exc)
                self.wake.wait(timeout=1.0)
                self.wake.clear()
        finally:
            sender.close()
            if store is not None:
                store.db.close()

    def _round(self, sender: Sender, store: Outbox | None) -> Outbox | None:
        """One pass over every receiver; state errors close the store (the loop logs them)."""
        try:
            if store is None:
                store = _open_outbox(self.state_dir)
            for rcv in self.receivers:
                if self.stopping.is_set():
                    break
                if rcv.kind == ALERTMANAGER and self.instance is not None and self.judged.is_set():
                    self._sync(sender, store, rcv)
                self._deliver(sender, store, rcv)
            counts = store.pending()
            with self.lock:
                self.pending = {r.name: counts.get(r.name, 0) for r in self.receivers}
            now = self.clock.time()
            if now - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = now
                dropped = store.prune(now - KEEP_FINISHED_S, now - KEEP_UNDELIVERED_S)
                if dropped:
                    log.error("outbox: dropped %d notification(s) undelivered for 7 days", dropped)
        except StateError as exc:
            log.debug("delivery: %s", exc)
            if store is not None:
                store.db.close()
            return None
        return store

    def _sync(self, sender: Sender, store: Outbox, rcv: Receiver) -> None:
        """Resolve in Alertmanager what the database no longer has active (see agent/amsync.py)."""
        now = self.clock.time()
        if now < max(self._sync_at.get(rcv.name, 0.0), self._next_try.get(rcv.name, 0.0)):
            return
        assert self.instance is not None
        try:
            done = amsync.sync(sender, rcv, AlertStore(store.db, self.scope), self.instance, now, self.resend_s,
                               self.read_timeout[rcv.name])
        except DeliveryError as exc:
            if exc.permanent:  # e.g. an Alertmanager without the v2 API: delivery goes on, sync cannot
                self._sync_at[rcv.name] = now + self.resend_s
                log.warning("%s: cannot compare its alerts with the database (%s)", rcv.name, exc)
            else:
                self._failed(store, rcv, [], exc, now)
            return
        self._sync_at[rcv.name] = now + self.resend_s
        if done:
            log.info("%s: resolved %d alert(s) it held active that the database does not", rcv.name, done)

    def _deliver(self, sender: Sender, store: Outbox, rcv: Receiver) -> None:
        now = self.clock.time()
        if now < self._next_try.get(rcv.name, 0.0):
            return
        due = store.due(rcv.name, now, BATCH)
        if not due:
            return
        # Alertmanager: one POST for all of them; webhook: one event per request.
        batches = [due] if rcv.kind == ALERTMANAGER else [[item] for item in due]
        for batch in batches:
            if not self._send(sender, store, rcv, batch):
                return

    def _send(self, sender: Sender, store: Outbox, rcv: Receiver, batch: list[OutboxItem]) -> bool:
        now = self.clock.time()
        timeout = self.read_timeout[rcv.name]
        try:
            if rcv.kind == ALERTMANAGER:
                sender.post(rcv, [am_alert(json.loads(i.payload), i.kind, now, self.resend_s) for i in batch],
                            read_timeout=timeout)
            else:
                item = batch[0]
                body = webhook_body(json.loads(item.payload), rcv, item.alert_id, item.kind)
                sender.post(rcv, body, body["notification_id"], read_timeout=timeout)
        except DeliveryError as exc:
            return self._failed(store, rcv, batch, exc, now)
        self._succeeded(store, rcv, batch, now)
        return True

    def _succeeded(self, store: Outbox, rcv: Receiver, batch: list[OutboxItem], now: float) -> None:
        again = [i.id for i in batch if rcv.kind == ALERTMANAGER and i.kind == "firing"]
        store.sent(again, now, resend_at=now + self.resend_s)
        resent = set(again)
        store.sent([i.id for i in batch if i.id not in resent], now)
        failed_before = self._failing.pop(rcv.name, 0)
        self._next_try.pop(rcv.name, None)
        with self.lock:
            self.sent[rcv.name] += len(batch)
        if failed_before:
            log.info("%s: delivering again after %d failed attempt(s); nothing was lost", rcv.name,
                     failed_before)

    def _failed(self, store: Outbox, rcv: Receiver, batch: list[OutboxItem], exc: DeliveryError,
                now: float) -> bool:
        with self.lock:
            self.failures[rcv.name] += 1
        if exc.permanent:
            log.error("%s: refused %d notification(s) (%s); dropping them, retrying cannot help",
                      rcv.name, len(batch), exc)
            store.sent([i.id for i in batch], now)
            return True
        count = self._failing.get(rcv.name, 0) + 1
        self._failing[rcv.name] = count
        delay = min(RETRY_MIN_S * 2 ** (count - 1), self.retry_max_s) * random.uniform(0.9, 1.1)
        self._next_try[rcv.name] = now + delay
        store.failed([i.id for i in batch], str(exc), now + delay)
        if exc.maybe_delivered:
            self._slow(rcv, exc)
        elif count == 1:
            log.error("%s: cannot deliver (%s); notifications are kept in the outbox and retried with "
                      "backoff up to %g s", rcv.name, exc, self.retry_max_s)
        return False

    def _slow(self, rcv: Receiver, exc: DeliveryError) -> None:
        """No answer in time: the receiver may have it. Wait longer for the next answer (the repeat
        carries the same idempotency key), count it, and say it once per read-timeout step."""
        before = self.read_timeout[rcv.name]
        self.read_timeout[rcv.name] = min(before * 2, max(READ_TIMEOUT_MAX_S, before))
        with self.lock:
            self.timeouts[rcv.name] += 1
        if self.read_timeout[rcv.name] != before:
            log.warning("%s: %s (it may have arrived); repeating it after backoff with the same idempotency "
                        "key, now waiting up to %g s for an answer", rcv.name, exc, self.read_timeout[rcv.name])

    def counts(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        with self.lock:
            return dict(self.pending), dict(self.sent), dict(self.failures)

    def timeout_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.timeouts)
