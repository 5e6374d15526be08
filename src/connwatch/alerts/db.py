"""The one small SQLite helper: the only module in connwatch that imports sqlite3.

One file, `<state_dir>/connwatch.db`, in WAL mode so readers (`connwatch alerts`) never block the
sampler. Each store on it (alerts/store.py: alert history and first-seen times; agent/outbox.py:
the notification outbox) keeps its own tables and its own schema version, and writes through
`Database.write()`: one `BEGIN IMMEDIATE` transaction per step. Every sqlite3 or OS failure becomes
a one-line `StateError` naming the path and the cause.

The state directory is opened defensively (root may run `check` on a directory another user can
write): the directory must belong to the user or root and not be writable by others, and the
database files must not be symbolic links or belong to someone else; the database file is created
with O_NOFOLLOW and mode 0600.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

from connwatch.errors import StateError
from connwatch.record import Record, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

DB_NAME = "connwatch.db"
BUSY_TIMEOUT_MS = 5000
HINT_STATE_DIR = "use --state-dir DIR"
Row = tuple["Any", ...]  # (a string: typing is not imported to run)


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


@record
class Written(Record):
    """What one statement of a write did."""

    lastrowid: int | None
    rowcount: int


class Tx:
    """The statements of one write transaction (see Database.write)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Written:
        cursor = self._conn.execute(sql, args)
        return Written(cursor.lastrowid, cursor.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, args).fetchall()


class Database:
    """An open state database. Use `Database.open(state_dir)`; close it (or use `with`)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn

    @classmethod
    def open(cls, state_dir: Path) -> Database:
        """Create the state directory (0700) and database if needed, and open it."""
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(describe_error(state_dir, "create state directory", exc)) from exc
        path = state_dir / DB_NAME
        check_safe(state_dir, path)
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=True)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(describe_error(path, "open state", exc)) from exc
        db = cls(path, conn)
        try:
            with db.guard("open state"):
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                conn.execute("PRAGMA synchronous = NORMAL")
        except StateError:
            db.close()
            raise
        return db

    def __enter__(self) -> Database:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the database. Safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """Rows of one read (outside any write transaction)."""
        with self.guard("read state"):
            return self._db().execute(sql, args).fetchall()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """One transaction (BEGIN IMMEDIATE: it holds the write lock from its first statement, so two
        processes stepping the same alerts never interleave a read and a write)."""
        with self.guard("write state"):
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def ensure_schema(self, version_table: str, version: int, statements: Sequence[str],
                      upgrades: Mapping[int, Sequence[str]] | None = None) -> int:
        """Create a store's tables (statements use IF NOT EXISTS) and record its schema version in
        `version_table`; refuse a database written by a newer connwatch. A database of an older version v
        gets `upgrades[v]`, `upgrades[v + 1]`, ... first, in the same transaction. Returns the version found
        (0 when the store is new here)."""
        with self.write() as tx:
            exists = tx.rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (version_table,))
            found = 0
            if exists:
                row = tx.rows(f"SELECT max(version) FROM {version_table}")
                found = int(row[0][0]) if row and row[0][0] is not None else 0
            if found > version:
                raise StateError(f"{self.path}: state database schema version {found} is newer than this "
                                 f"connwatch supports ({version}) in {version_table}; {HINT_STATE_DIR}")
            if found < version:
                for step in range(found, version) if found else ():
                    for statement in (upgrades or {}).get(step, ()):
                        tx.execute(statement)
                for statement in statements:
                    tx.execute(statement)
                tx.execute(f"CREATE TABLE IF NOT EXISTS {version_table} (version INTEGER NOT NULL)")
                tx.execute(f"INSERT INTO {version_table} (version) VALUES (?)", (version,))
        return found

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError(f"{self.path}: state database is closed")
        return self._conn

    @contextmanager
    def guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StateError(describe_error(self.path, action, exc)) from exc


# -- a state directory that cannot be turned against root --------------------------------------------


def check_safe(state_dir: Path, path: Path) -> None:
    """Refuse a state dir another user controls, and database files that are links or someone else's."""
    euid = os.geteuid()
    try:
        info = os.stat(state_dir)
    except OSError as exc:
        raise StateError(describe_error(state_dir, "use state directory", exc)) from exc
    if info.st_uid not in (euid, 0):
        raise StateError(f"{state_dir}: refusing to use a state directory owned by uid {info.st_uid} "
                         f"(running as uid {euid}); {HINT_STATE_DIR} owned by this user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateError(f"{state_dir}: refusing to use a state directory writable by other users "
                         f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod go-w it or {HINT_STATE_DIR}")
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        _check_file(state_dir / name, euid)
    if os.path.lexists(path):
        return
    try:  # create the database file ourselves: never through a link, never readable by others
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except FileExistsError:  # made in between: check it like one found
        _check_file(path, euid)
    except OSError as exc:
        raise StateError(describe_error(path, "open state", exc)) from exc


def _check_file(path: Path, euid: int) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(describe_error(path, "open state", exc)) from exc
    if stat.S_ISLNK(info.st_mode):
        raise StateError(f"{path}: refusing to open a state database file that is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise StateError(f"{path}: refusing to open a state database file that is not a regular file")
    if info.st_uid not in (euid, 0):
        raise StateError(f"{path}: refusing to open a state database file owned by uid {info.st_uid} "
                         f"(running as uid {euid}); {HINT_STATE_DIR}")


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
