"""Alert history and first-seen times, in the state database (alerts/db.py does the SQLite).

Tables `alerts` (one row per alert; at most one active per scope and key) and `seen` (when connwatch
first saw a listening port: "is this a new application?"). Schema version in `schema_version`.
One judging step is one transaction (`AlertStore.step`): 100 concurrent `check`s each see the
others' updates, so no occurrence is lost.

A store is opened in a scope (sources/netns.run_scope): "" for runs in the host's network namespace, the
run's namespace otherwise (`ip netns exec NAME connwatch check`). A run's own namespace's alerts are keyed
without a namespace (`TCP(8080)`), so runs in two namespaces sharing a state dir would otherwise take each
other's alerts for their own (one's alert "clearing" in the other). Each scope sees and steps only its own
alerts and first-seen times; alert ids stay unique over all of them, and `connwatch alerts` lists every scope's
(`listing`: each with its scope).
Schema 2 added the column (a version 1 database is upgraded in place, its rows in the host's scope).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType

from connwatch.alerts.db import Database, Row, Tx, default_state_dir, describe_error
from connwatch.errors import StateError
from connwatch.findings import Alert
from connwatch.record import replace

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["AlertStore", "default_state_dir", "describe_error"]

SCHEMA_VERSION = 2
Key = tuple[str, str]

# Column order of the alerts table after `id`; also the Alert field each maps to.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("attribute", "attribute"),
    ("resource_key", "resource_key"),
    ("resource", "resource"),
    ("value", "value"),
    ("unit", "unit"),
    ("limit_", "limit"),
    ("severity", "severity"),
    ("alert_class", "alert_class"),
    ("state", "state"),
    ("created_at", "created_at"),
    ("last_updated", "last_updated"),
    ("occurrences", "occurrences"),
    ("last_occurred", "last_occurred"),
    ("clear_after", "clear_after"),
    ("clean_samples", "clean_samples"),
    ("cleared_at", "cleared_at"),
    ("system_name", "system_name"),
    ("text", "text"),
    ("explanation", "explanation"),
    ("action", "action"),
    ("owner", "owner"),
    ("detail", "detail"),
)
_JSON_FIELDS = frozenset({"resource", "detail"})
_FLOAT_FIELDS = frozenset({"value", "limit"})  # SQLite stores NaN as NULL

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    attribute TEXT NOT NULL,
    resource_key TEXT NOT NULL,
    resource TEXT NOT NULL,
    value REAL,
    unit TEXT NOT NULL,
    limit_ REAL,
    severity INTEGER NOT NULL,
    alert_class TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_updated REAL NOT NULL,
    occurrences INTEGER NOT NULL,
    last_occurred REAL NOT NULL,
    clear_after INTEGER NOT NULL,
    clean_samples INTEGER NOT NULL,
    cleared_at REAL,
    system_name TEXT NOT NULL,
    text TEXT NOT NULL,
    explanation TEXT NOT NULL,
    action TEXT NOT NULL,
    owner TEXT NOT NULL,
    detail TEXT NOT NULL,
    scope TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active_in_scope
    ON alerts (scope, attribute, resource_key) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS alerts_last_updated ON alerts (last_updated);
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
"""

# Schema 1 -> 2: the scope column (rows written before it are the host's scope), the unique index over it.
_UPGRADES = {1: ("ALTER TABLE alerts ADD COLUMN scope TEXT NOT NULL DEFAULT ''",
                 "DROP INDEX IF EXISTS alerts_one_active")}

_COLS = ", ".join(c for c, _ in _COLUMNS)
# An update keeps the row's scope: only inserts set it (a store steps only its own scope's alerts).
_UPSERT = (
    f"INSERT INTO alerts (id, {_COLS}, scope) VALUES (?, {', '.join('?' for _ in _COLUMNS)}, ?) "
    f"ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c, _ in _COLUMNS)}"
)
_ACTIVE = " WHERE state = 'active' AND scope = ? ORDER BY id"
_COLS_WITH_ID = f"id, {_COLS}"
_SELECT = f"SELECT {_COLS_WITH_ID} FROM alerts"
_SEEN_UPSERT = (
    "INSERT INTO seen (key, first_seen, last_seen) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
)


class AlertStore:
    """Alerts and first-seen times in `<state_dir>/connwatch.db`. Use `AlertStore.open`."""

    def __init__(self, db: Database, scope: str = "") -> None:
        self.db = db
        self.path = db.path
        self.scope = scope

    @classmethod
    def open(cls, state_dir: Path, scope: str = "") -> AlertStore:
        """Create the state directory (0700) and database if needed, and open it in `scope` (see above)."""
        db = Database.open(state_dir)
        try:
            db.ensure_schema("schema_version", SCHEMA_VERSION,
                             [s for s in _SCHEMA.split(";") if s.strip()], _UPGRADES)
        except StateError:
            db.close()
            raise
        return cls(db, scope)

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the database. Safe to call twice."""
        self.db.close()

    # -- reading -------------------------------------------------------------

    def load_active(self) -> dict[Key, Alert]:
        """Active alerts by (attribute, resource_key), oldest first."""
        return _active(self.db.rows(f"{_SELECT}{_ACTIVE}", (self.scope,)))

    def history(self, include_cleared: bool = False, limit: int | None = None) -> list[Alert]:
        """This scope's alerts, newest last_updated first; only active ones unless include_cleared."""
        where = " WHERE scope = ?" if include_cleared else " WHERE state = 'active' AND scope = ?"
        sql = f"{_SELECT}{where} ORDER BY last_updated DESC, id DESC LIMIT ?"
        return [row_to_alert(r) for r in self.db.rows(sql, (self.scope, -1 if limit is None else max(limit, 0)))]

    def listing(self, include_cleared: bool = False, alert_id: int | None = None) -> list[tuple[str, Alert]]:
        """Every scope's alerts with their scope (`connwatch alerts` lists the whole state dir, as before
        scopes), newest last_updated first; only active ones unless include_cleared; `alert_id`: that one."""
        args: tuple[int, ...] = ()
        if alert_id is not None:
            where, args = " WHERE id = ?", (alert_id,)
        else:
            where = "" if include_cleared else " WHERE state = 'active'"
        rows = self.db.rows(f"SELECT scope, {_COLS_WITH_ID} FROM alerts{where} ORDER BY last_updated DESC, id DESC",
                            args)
        return [(str(r[0]), row_to_alert(r[1:])) for r in rows]

    def get(self, alert_id: int) -> Alert | None:
        """One alert by id (of any scope: ids are unique over all), or None."""
        listed = self.listing(alert_id=alert_id)
        return listed[0][1] if listed else None

    # -- writing -------------------------------------------------------------

    def save(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Insert alerts with no id, update the others, in one transaction; returns them with ids."""
        with self.db.write() as tx:
            return _save(tx, list(alerts), self.path, self.scope)

    def mark_seen(self, keys: Iterable[str], now: float) -> dict[str, float]:
        """Record that each key (a listener, a resource) was seen at `now`; return its first_seen."""
        with self.db.write() as tx:
            return _mark_seen(tx, keys, now, self.scope)

    def step(self, seen: Iterable[str], now: float,
             decide: Callable[[Mapping[Key, Alert], Mapping[str, float]], T],
             alerts_of: Callable[[T], Iterable[Alert]]) -> tuple[T, list[Alert]]:
        """One judging step in ONE transaction: mark `seen` keys, read the active alerts, let
        `decide(active, first_seen)` build the step, save its alerts. Returns the step and the
        saved alerts (with ids), in the order `alerts_of(step)` gave them."""
        with self.db.write() as tx:
            first = _mark_seen(tx, seen, now, self.scope)
            active = _active(tx.rows(f"{_SELECT}{_ACTIVE}", (self.scope,)))
            result = decide(active, first)
            return result, _save(tx, list(alerts_of(result)), self.path, self.scope)


def _active(rows: list[Row]) -> dict[Key, Alert]:
    alerts = [row_to_alert(row) for row in rows]
    return {a.key: a for a in alerts}


def _save(tx: Tx, given: list[Alert], path: Path, scope: str) -> list[Alert]:
    """Existing rows are written first so that an alert cleared and a new one raised for the same
    key in one batch never collide on the one-active-per-key index."""
    rows = [(alert, alert_to_row(alert, path)) for alert in given]
    saved: dict[int, Alert] = {}
    for i in sorted(range(len(rows)), key=lambda i: rows[i][0].id is None):
        alert, row = rows[i]
        done = tx.execute(_UPSERT, (alert.id, *row, scope))
        saved[i] = alert if alert.id is not None else replace(alert, id=done.lastrowid)
    return [saved[i] for i in range(len(given))]


def _mark_seen(tx: Tx, keys: Iterable[str], now: float, scope: str = "") -> dict[str, float]:
    """First-seen times of `keys`; another scope's keys are stored as "[scope] key" (the host's unchanged)."""
    given = list(dict.fromkeys(keys))
    unique = [f"[{scope}] {k}" for k in given] if scope else given
    tx.executemany(_SEEN_UPSERT, ((k, now, now) for k in unique))
    found: dict[str, float] = {}
    for start in range(0, len(unique), _KEYS_PER_READ):  # (one read per chunk, not per key: 5,000 keys at
        chunk = unique[start:start + _KEYS_PER_READ]     # 100 namespaces of 50 listeners, issue 17)
        marks = ", ".join("?" * len(chunk))
        found.update((k, float(v)) for k, v in tx.rows(f"SELECT key, first_seen FROM seen WHERE key IN ({marks})",
                                                       chunk))
    return {key: found[stored] for key, stored in zip(given, unique, strict=True)}


_KEYS_PER_READ = 500  # (SQLite before 3.32 takes at most 999 parameters)


# -- rows ----------------------------------------------------------------------


def alert_to_row(alert: Alert, path: Path) -> tuple[Any, ...]:
    """The alerts-table values for `alert`, in `_COLUMNS` order (without id)."""
    values: list[Any] = []
    for _, name in _COLUMNS:
        value = getattr(alert, name)
        if name in _JSON_FIELDS:
            try:
                value = json.dumps(dict(value), sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise StateError(
                    f"{path}: cannot write state (alert {alert.resource_key} {alert.attribute}: "
                    f"{name} is not JSON-serializable: {exc})"
                ) from exc
        values.append(value)
    return tuple(values)


def row_to_alert(row: Row) -> Alert:
    """An Alert from `id, <_COLUMNS>`. A damaged JSON column (edited by hand, a disk fault) reads as
    `{"unreadable": "<why>"}` rather than stopping every verdict: one bad row must not stop alerting."""
    fields: dict[str, Any] = {"id": int(row[0])}
    for (_, name), value in zip(_COLUMNS, row[1:], strict=True):
        if name in _JSON_FIELDS:
            value = _json_column(value)
        elif name in _FLOAT_FIELDS and value is None:
            value = math.nan
        fields[name] = value
    return Alert(**fields)


def _json_column(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        return {"unreadable": f"stored value is not JSON ({type(exc).__name__})"}
    return value if isinstance(value, dict) else {"unreadable": "stored value is not a JSON object"}
