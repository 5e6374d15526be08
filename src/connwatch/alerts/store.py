"""Alert persistence in SQLite. The only module in connwatch that imports sqlite3.

One file, `<state_dir>/connwatch.db`, in WAL mode so readers (`connwatch alerts`)
never block the sampler. Every write is one transaction. Every sqlite3 or OS
failure becomes a one-line `StateError` naming the path and the cause.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from connwatch.errors import StateError
from connwatch.findings import Alert

DB_NAME = "connwatch.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
HINT_STATE_DIR = "use --state-dir DIR"

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
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
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
    detail TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active
    ON alerts (attribute, resource_key) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS alerts_last_updated ON alerts (last_updated);
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
"""

# The notification outbox (agent delivery). Created with IF NOT EXISTS on every open, so a
# version-1 database written before the outbox existed gains the table in place (additive: older
# connwatch versions ignore it). One row per (receiver, alert, kind); `next_attempt_at` NULL = done.
_OUTBOX_SCHEMA = (
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

_COLS = ", ".join(c for c, _ in _COLUMNS)
_UPSERT = (
    f"INSERT INTO alerts (id, {_COLS}) VALUES (?, {', '.join('?' for _ in _COLUMNS)}) "
    f"ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c, _ in _COLUMNS)}"
)
_SELECT = f"SELECT id, {_COLS} FROM alerts"


def default_state_dir() -> Path:
    """$CONNWATCH_STATE_DIR; else /var/lib/connwatch as root; else the XDG state dir."""
    override = os.environ.get("CONNWATCH_STATE_DIR")
    if override:
        return Path(override).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/connwatch")
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
        return Path(xdg) / "connwatch"
    return Path.home() / ".local" / "state" / "connwatch"


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


class AlertStore:
    """Alerts and first-seen times in `<state_dir>/connwatch.db`. Use `AlertStore.open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn

    @classmethod
    def open(cls, state_dir: Path) -> AlertStore:
        """Create the state directory (0700) and database if needed, and open it."""
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(describe_error(state_dir, "create state directory", exc)) from exc
        path = state_dir / DB_NAME
        try:
            conn = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True
            )
        except (sqlite3.Error, OSError) as exc:
            raise StateError(describe_error(path, "open state", exc)) from exc
        store = cls(path, conn)
        try:
            store._setup()
        except StateError:
            store.close()
            raise
        return store

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database. Safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    # -- reading -------------------------------------------------------------

    def load_active(self) -> dict[tuple[str, str], Alert]:
        """Active alerts by (attribute, resource_key), oldest first."""
        with self._guard("read state"):
            rows = self._db().execute(f"{_SELECT} WHERE state = 'active' ORDER BY id").fetchall()
        alerts = [row_to_alert(row) for row in rows]
        return {a.key: a for a in alerts}

    def history(self, include_cleared: bool = False, limit: int | None = None) -> list[Alert]:
        """Alerts, newest last_updated first; only active ones unless include_cleared."""
        where = "" if include_cleared else " WHERE state = 'active'"
        sql = f"{_SELECT}{where} ORDER BY last_updated DESC, id DESC LIMIT ?"
        with self._guard("read state"):
            rows = self._db().execute(sql, (-1 if limit is None else max(limit, 0),)).fetchall()
        return [row_to_alert(row) for row in rows]

    def get(self, alert_id: int) -> Alert | None:
        """One alert by id, or None."""
        with self._guard("read state"):
            row = self._db().execute(f"{_SELECT} WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else row_to_alert(row)

    # -- writing -------------------------------------------------------------

    def save(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Insert alerts with no id, update the others, in one transaction.

        Returns the alerts in the order given, each with its id. Existing rows
        are written first so that an alert cleared and a new one raised for the
        same key in one batch never collide on the one-active-per-key index.
        """
        given = list(alerts)
        rows = [(alert, alert_to_row(alert, self.path)) for alert in given]
        saved: dict[int, Alert] = {}
        order = sorted(range(len(rows)), key=lambda i: rows[i][0].id is None)
        with self._guard("write state"), self._transaction() as conn:
            for i in order:
                alert, row = rows[i]
                cursor = conn.execute(_UPSERT, (alert.id, *row))
                new_id = alert.id if alert.id is not None else cursor.lastrowid
                saved[i] = alert if alert.id is not None else replace(alert, id=new_id)
        return [saved[i] for i in range(len(given))]

    def mark_seen(self, keys: Iterable[str], now: float) -> dict[str, float]:
        """Record that each key (a listener, a resource) was seen at `now`; return its first_seen."""
        unique = list(dict.fromkeys(keys))
        upsert = (
            "INSERT INTO seen (key, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
        )
        first: dict[str, float] = {}
        with self._guard("write state"), self._transaction() as conn:
            conn.executemany(upsert, ((k, now, now) for k in unique))
            for key in unique:
                row = conn.execute("SELECT first_seen FROM seen WHERE key = ?", (key,)).fetchone()
                first[key] = float(row[0])
        return first

    # -- notification outbox (the agent's delivery) ----------------------------

    def outbox_put(self, receiver: str, items: Iterable[tuple[int, str, str]], now: float) -> None:
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
        rows = list(items)
        with self._guard("write state"), self._transaction() as conn:
            for alert_id, kind, payload in rows:
                conn.execute(upsert, (receiver, alert_id, kind, payload, now, now))
                if kind == "resolved":
                    conn.execute("UPDATE outbox SET next_attempt_at = NULL WHERE receiver = ? AND "
                                 "alert_id = ? AND kind = 'firing'", (receiver, alert_id))

    def outbox_due(self, receiver: str, now: float, limit: int = 500) -> list[OutboxItem]:
        """Rows of `receiver` due for (re)delivery, oldest first."""
        sql = ("SELECT id, receiver, alert_id, kind, payload, created_at, attempts, sends FROM outbox "
               "WHERE receiver = ? AND next_attempt_at IS NOT NULL AND next_attempt_at <= ? "
               "ORDER BY id LIMIT ?")
        with self._guard("read state"):
            rows = self._db().execute(sql, (receiver, now, limit)).fetchall()
        return [OutboxItem(int(r[0]), r[1], int(r[2]), r[3], r[4], float(r[5]), int(r[6]), int(r[7]))
                for r in rows]

    def outbox_sent(self, ids: Iterable[int], now: float, resend_at: float | None = None) -> None:
        """Delivered: finish the rows, or (resend_at) schedule them again (active Alertmanager alerts)."""
        sql = ("UPDATE outbox SET next_attempt_at = ?, attempts = 0, sends = sends + 1, last_sent_at = ?, "
               "last_error = '' WHERE id = ? AND next_attempt_at IS NOT NULL")
        with self._guard("write state"), self._transaction() as conn:
            conn.executemany(sql, ((resend_at, now, i) for i in ids))

    def outbox_failed(self, ids: Iterable[int], error: str, retry_at: float) -> None:
        """Not delivered: count the attempt and retry at `retry_at`."""
        sql = ("UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ? "
               "WHERE id = ? AND next_attempt_at IS NOT NULL")
        with self._guard("write state"), self._transaction() as conn:
            conn.executemany(sql, ((retry_at, error, i) for i in ids))

    def outbox_pending(self) -> dict[str, int]:
        """Undelivered (or awaiting re-send) rows per receiver."""
        sql = "SELECT receiver, count(*) FROM outbox WHERE next_attempt_at IS NOT NULL GROUP BY receiver"
        with self._guard("read state"):
            return {r[0]: int(r[1]) for r in self._db().execute(sql).fetchall()}

    def outbox_history(self, receiver: str | None = None) -> list[OutboxItem]:
        """Every row (finished ones too), oldest first: for tests and `alerts` diagnostics."""
        sql = "SELECT id, receiver, alert_id, kind, payload, created_at, attempts, sends FROM outbox"
        args: tuple[str, ...] = ()
        if receiver is not None:
            sql, args = sql + " WHERE receiver = ?", (receiver,)
        with self._guard("read state"):
            rows = self._db().execute(sql + " ORDER BY id", args).fetchall()
        return [OutboxItem(int(r[0]), r[1], int(r[2]), r[3], r[4], float(r[5]), int(r[6]), int(r[7]))
                for r in rows]

    def outbox_prune(self, finished_before: float, pending_before: float) -> int:
        """Forget finished rows older than `finished_before`, and never-delivered ones created before
        `pending_before` (a receiver gone for days). Returns how many undelivered rows were dropped."""
        with self._guard("write state"), self._transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE next_attempt_at IS NULL AND coalesce(last_sent_at, "
                         "created_at) < ?", (finished_before,))
            dropped = conn.execute("DELETE FROM outbox WHERE next_attempt_at IS NOT NULL AND "
                                   "sends = 0 AND created_at < ?", (pending_before,)).rowcount
        return int(dropped)

    # -- internals -----------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError(f"{self.path}: state database is closed")
        return self._conn

    def _setup(self) -> None:
        with self._guard("open state"):
            conn = self._db()
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = NORMAL")
            version = self._schema_version()
            if version is None:
                with self._transaction() as tx:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            tx.execute(statement)
                    tx.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        if version is not None and version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: state database schema version {version} is newer than this "
                f"connwatch supports ({SCHEMA_VERSION}); {HINT_STATE_DIR}"
            )
        with self._guard("open state"):
            for statement in _OUTBOX_SCHEMA:
                self._db().execute(statement)

    def _schema_version(self) -> int | None:
        conn = self._db()
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if exists is None:
            return None
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StateError(describe_error(self.path, action, exc)) from exc


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


def row_to_alert(row: tuple[Any, ...]) -> Alert:
    """An Alert from `id, <_COLUMNS>`."""
    fields: dict[str, Any] = {"id": int(row[0])}
    for (_, name), value in zip(_COLUMNS, row[1:], strict=True):
        if name in _JSON_FIELDS:
            value = json.loads(value)
        elif name in _FLOAT_FIELDS and value is None:
            value = math.nan
        fields[name] = value
    return Alert(**fields)


# -- errors --------------------------------------------------------------------

_SQLITE_CONSTRAINT = 19
_PROBE_CODES = frozenset({8, 10, 14})  # READONLY, IOERR, CANTOPEN: ask the OS what is wrong

# Primary SQLite result codes -> (cause, hint).
_SQLITE_CAUSES: dict[int, tuple[str, str]] = {
    3: ("permission denied", HINT_STATE_DIR),  # SQLITE_PERM
    5: ("database is locked by another process", "try again, or stop the other connwatch"),  # BUSY
    6: ("database table is locked", "try again"),  # SQLITE_LOCKED
    8: ("read-only database", HINT_STATE_DIR),  # SQLITE_READONLY
    10: ("disk I/O error", HINT_STATE_DIR),  # SQLITE_IOERR
    11: ("database is corrupt", f"move it aside or {HINT_STATE_DIR}"),  # SQLITE_CORRUPT
    13: ("disk is full", f"free some space or {HINT_STATE_DIR}"),  # SQLITE_FULL
    14: ("cannot open database file", HINT_STATE_DIR),  # SQLITE_CANTOPEN
    _SQLITE_CONSTRAINT: ("constraint failed", "this is a connwatch bug"),  # SQLITE_CONSTRAINT
    23: ("permission denied", HINT_STATE_DIR),  # SQLITE_AUTH
    26: ("file is not a database", f"move it aside or {HINT_STATE_DIR}"),  # SQLITE_NOTADB
}
_FULL_HINT = f"free some space or {HINT_STATE_DIR}"
_ERRNO_HINTS: dict[int, str] = {errno.ENOSPC: _FULL_HINT, errno.EDQUOT: _FULL_HINT}


def describe_error(path: Path, action: str, exc: BaseException) -> str:
    """One line: `<path>: cannot <action> (<cause>); <hint>`."""
    cause, hint = _cause_and_hint(path, exc)
    return f"{path}: cannot {action} ({cause}); {hint}"


def _cause_and_hint(path: Path, exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).lower(), _ERRNO_HINTS.get(exc.errno, HINT_STATE_DIR)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _PROBE_CODES:
        probed = _probe_directory(path.parent)
        if probed is not None:
            return probed
    if primary == _SQLITE_CONSTRAINT:
        return str(exc), _SQLITE_CAUSES[_SQLITE_CONSTRAINT][1]
    if primary in _SQLITE_CAUSES:
        return _SQLITE_CAUSES[primary]
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "full" in message:
        return _SQLITE_CAUSES[13]
    return message, HINT_STATE_DIR


def _probe_directory(directory: Path) -> tuple[str, str] | None:
    """Why the OS refuses to write in `directory` (read-only file system, full...), or None."""
    probe = directory / f".connwatch-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        if exc.errno is None:
            return None
        return os.strerror(exc.errno).lower(), _ERRNO_HINTS.get(exc.errno, HINT_STATE_DIR)
    return None
