"""SQLite persistence of alerts: restarts, WAL, constraints, one-line errors."""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from connwatch.alerts import store as store_module
from connwatch.alerts.store import AlertStore, alert_to_row, default_state_dir, describe_error
from connwatch.errors import StateError
from connwatch.findings import Alert


def alert(port: int = 1414, **changes: object) -> Alert:
    base = Alert(
        attribute="BacklogRejectsByPort",
        resource_key=f"TCP({port})",
        resource={"port": port, "address": None, "proto": "tcp"},
        value=124.5,
        unit="conns",
        limit=0.1,
        severity=2,
        alert_class="backlog",
        state="active",
        created_at=1_700_000_000.123456,
        last_updated=1_700_000_060.987654,
        occurrences=3,
        last_occurred=1_700_000_060.5,
        clear_after=5,
        system_name="host-a",
        clean_samples=0,
        cleared_at=None,
        text="Connections refused because the accept queue was full",
        explanation="Backlog 128 was full 124 times; ports 80 and 443 were fine",
        action="Raise the listen backlog and net.core.somaxconn",
        owner="mqm (pid 4242)",
        detail={"backlog": 128, "ports": [80, 443], "nested": {"a": [1.5, None, "x"], "b": {}}, "ok": True},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip_across_reopen(tmp_path: Path) -> None:
    cleared = alert(80, state="cleared", cleared_at=1_700_000_100.25, clean_samples=5, value=1e-300)
    with AlertStore.open(tmp_path) as first:
        saved = first.save([alert(), cleared])
    assert all(a.id is not None for a in saved)
    assert [replace(a, id=None) for a in saved] == [alert(), cleared]
    with AlertStore.open(tmp_path) as second:
        assert second.load_active() == {saved[0].key: saved[0]}
        assert second.get(saved[1].id or -1) == saved[1]
        assert second.history(include_cleared=True) == [saved[1], saved[0]]
        loaded = second.get(saved[0].id or -1)
    assert loaded is not None
    assert loaded.detail == alert().detail and loaded.resource == alert().resource
    assert isinstance(loaded.value, float) and isinstance(loaded.occurrences, int)


def test_json_columns_are_sorted(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        store.save([alert(detail={"z": 1, "a": {"y": 2, "b": 3}})])
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    (detail, resource) = conn.execute("SELECT detail, resource FROM alerts").fetchone()
    conn.close()
    assert detail == '{"a": {"b": 3, "y": 2}, "z": 1}'
    assert resource == '{"address": null, "port": 1414, "proto": "tcp"}'


def test_saved_by_another_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from connwatch.alerts.store import AlertStore
        from connwatch.findings import Alert
        a = Alert(attribute="SynDrops", resource_key="TCP(25)", resource={{"port": 25}}, value=7.0,
                  unit="drops", limit=1.0, severity=1, alert_class="syn", state="active",
                  created_at=5.5, last_updated=6.5, occurrences=2, last_occurred=6.5,
                  clear_after=2, system_name="child", detail={{"why": ["x", 1]}})
        with AlertStore.open(Path({str(tmp_path)!r})) as store:
            print(store.save([a])[0].id)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    with AlertStore.open(tmp_path) as store:
        got = store.get(int(done.stdout.strip()))
    assert got is not None
    assert (got.key, got.system_name) == (("SynDrops", "TCP(25)"), "child")
    assert (got.value, got.created_at) == (7.0, 5.5)
    assert got.detail == {"why": ["x", 1]}


def test_wal_and_schema(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path):
        pass
    assert (tmp_path / "connwatch.db").is_file()
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    finally:
        conn.close()


def test_pragmas_on_connection(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        conn = store.db._db()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_reopen_does_not_duplicate_schema_version(tmp_path: Path) -> None:
    for _ in range(3):
        AlertStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
    conn.close()


def test_creates_state_dir_0700(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b"
    with AlertStore.open(state) as store:
        assert store.path == state / "connwatch.db"
    assert state.stat().st_mode & 0o777 == 0o700


def test_update_keeps_id(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        (first,) = store.save([alert()])
        (second,) = store.save([replace(first, occurrences=4, value=99.0)])
        assert second.id == first.id
        assert store.history() == [second]


def test_one_active_alert_per_key(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        (first,) = store.save([alert()])
        with pytest.raises(StateError, match=r"connwatch\.db: cannot write state \(UNIQUE constraint"):
            store.save([alert(port=9), alert()])
        assert store.history(include_cleared=True) == [first]  # nothing from the failed batch
        cleared = replace(first, state="cleared", cleared_at=2.0)
        saved = store.save([alert(), cleared])  # new one listed first: still no collision
        assert saved[1] == cleared and saved[0].id not in (None, first.id)
        store.save([replace(alert(), state="cleared")])  # any number of cleared rows per key
        assert len(store.history(include_cleared=True)) == 3


def test_history_order_limit_and_cleared(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        old = alert(1, last_updated=10.0)
        new = alert(2, last_updated=30.0)
        gone = alert(3, last_updated=20.0, state="cleared", cleared_at=20.0)
        s_old, s_new, s_gone = store.save([old, new, gone])
        assert store.history() == [s_new, s_old]
        assert store.history(include_cleared=True) == [s_new, s_gone, s_old]
        assert store.history(include_cleared=True, limit=2) == [s_new, s_gone]
        assert store.history(limit=0) == []
        assert store.get(12345) is None


def test_save_nothing(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        assert store.save([]) == []
        assert store.load_active() == {}


def test_mark_seen_keeps_first_seen(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        assert store.mark_seen(["TCP(80)", "TCP(80)"], 10.0) == {"TCP(80)": 10.0}
        assert store.mark_seen(["TCP(80)", "TCP(443)"], 20.0) == {"TCP(80)": 10.0, "TCP(443)": 20.0}
        assert store.mark_seen([], 30.0) == {}
    with AlertStore.open(tmp_path) as store:
        assert store.mark_seen(iter(["TCP(443)"]), 40.0) == {"TCP(443)": 20.0}
        rows = store.db._db().execute("SELECT key, first_seen, last_seen FROM seen ORDER BY key").fetchall()
    assert rows == [("TCP(443)", 20.0, 40.0), ("TCP(80)", 10.0, 20.0)]


def test_state_dir_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    state = blocker / "state"
    with pytest.raises(StateError) as info:
        AlertStore.open(state)
    message = str(info.value)
    assert message.startswith(f"{state}: cannot create state directory (not a directory)")
    assert "--state-dir" in message and "\n" not in message


def test_state_dir_is_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match=r"file: cannot create state directory \(file exists\)"):
        AlertStore.open(blocker)


def test_garbage_database(tmp_path: Path) -> None:
    db = tmp_path / "connwatch.db"
    db.write_bytes(b"\x00garbage, not sqlite\xff" * 400)
    with pytest.raises(StateError) as info:
        AlertStore.open(tmp_path)
    message = str(info.value)
    assert message == (
        f"{db}: cannot open state (file is not a database); move it aside or use --state-dir DIR"
    )


def test_newer_schema_refused(tmp_path: Path) -> None:
    AlertStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    with conn:
        conn.execute("UPDATE schema_version SET version = 9")
    conn.close()
    with pytest.raises(StateError, match=r"schema version 9 is newer than this connwatch supports \(2\)"):
        AlertStore.open(tmp_path)


def test_disk_full_rolls_back_whole_save(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        store.save([alert(1)])
        pages = store.db._db().execute("PRAGMA page_count").fetchone()[0]
        store.db._db().execute(f"PRAGMA max_page_count = {pages + 2}")
        many = [alert(p, detail={"pad": "x" * 2000}) for p in range(2, 60)]
        with pytest.raises(StateError) as info:
            store.save(many)
        assert str(info.value).startswith(f"{store.path}: cannot write state (disk is full)")
        assert [a.resource_key for a in store.history()] == ["TCP(1)"]


def test_closed_store(tmp_path: Path) -> None:
    store = AlertStore.open(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StateError, match="closed"):
        store.load_active()


def test_unserializable_detail(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        with pytest.raises(StateError, match="detail is not JSON-serializable"):
            store.save([alert(1), alert(2, detail={"s": {1, 2}})])
        assert store.history() == []


def test_nan_value_survives_as_nan(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path) as store:
        (saved,) = store.save([alert(value=math.nan)])
        got = store.get(saved.id or -1)
    assert got is not None and math.isnan(got.value)


@pytest.mark.parametrize(
    ("err", "cause"),
    [
        (OSError(errno.EROFS, "x"), "(read-only file system); use --state-dir DIR"),
        (OSError(errno.ENOSPC, "x"), "(no space left on device); free some space or use --state-dir DIR"),
        (OSError(errno.EACCES, "x"), "(permission denied); use --state-dir DIR"),
        (sqlite3.OperationalError("database or disk is full"), "(disk is full); free some"),
    ],
)
def test_describe_error(err: BaseException, cause: str) -> None:
    path = Path("/var/lib/connwatch/connwatch.db")
    message = describe_error(path, "write state", err)
    assert message.startswith(f"{path}: cannot write state {cause}")


def test_readonly_cause_comes_from_the_os(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", refuse)
    exc = sqlite3.OperationalError("attempt to write a readonly database")
    exc.sqlite_errorcode = 8  # SQLITE_READONLY
    message = describe_error(tmp_path / "connwatch.db", "write state", exc)
    expected = f"{tmp_path}/connwatch.db: cannot write state (read-only file system); use --state-dir DIR"
    assert message == expected


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONNWATCH_STATE_DIR", str(tmp_path / "explicit"))
    assert default_state_dir() == tmp_path / "explicit"
    monkeypatch.delenv("CONNWATCH_STATE_DIR")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_state_dir() == Path("/var/lib/connwatch")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "connwatch"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "connwatch"


# alerts/store.py at schema 1 (connwatch 0.1 to 7ff2aa0), verbatim
V1_SCHEMA = """
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


# -- scopes: runs in different network namespaces sharing one state dir ---------------------------------

BLUE = "netns 4026532300 blue"


def test_each_scope_steps_only_its_own_alerts(tmp_path: Path) -> None:
    """`ip netns exec blue connwatch check` keys its own namespace's alerts as the host's check keys the host's
    (TCP(1414)): in one table they must not meet, or each run clears the other's alert as gone."""
    with AlertStore.open(tmp_path) as host, AlertStore.open(tmp_path, BLUE) as blue:
        [mine] = host.save([alert()])
        [theirs] = blue.save([alert(system_name="blue")])  # same key, active: another scope, no conflict
        assert mine.id != theirs.id
        assert host.load_active() == {mine.key: mine} and blue.load_active() == {theirs.key: theirs}
        assert host.history() == [mine] and blue.history(include_cleared=True) == [theirs]
        assert host.get(theirs.id or -1) == theirs  # ids are unique over scopes: `alerts show ID` finds any
        assert host.listing() == blue.listing() == [(BLUE, theirs), ("", mine)]  # (newest last_updated first)
        assert host.listing(alert_id=theirs.id) == [(BLUE, theirs)]
        stepped, _ = blue.step([], 1.0, lambda active, _first: dict(active), lambda _r: [])
        assert stepped == {theirs.key: theirs}
        blue.save([replace(theirs, state="cleared", cleared_at=2.0)])
        assert host.load_active() == {mine.key: mine} and blue.load_active() == {}
        with pytest.raises(StateError):  # still one active alert per key within a scope
            host.save([alert()])


def test_first_seen_is_per_scope(tmp_path: Path) -> None:
    """"Is this a new application?": a port first seen in the host's namespace is new in blue's."""
    with AlertStore.open(tmp_path) as host, AlertStore.open(tmp_path, BLUE) as blue:
        assert host.mark_seen(["TCP(80)"], 10.0) == {"TCP(80)": 10.0}
        assert blue.mark_seen(["TCP(80)", "TCP(80)"], 20.0) == {"TCP(80)": 20.0}
        assert host.mark_seen(["TCP(80)"], 30.0) == {"TCP(80)": 10.0}
        keys = [k for (k,) in host.db._db().execute("SELECT key FROM seen ORDER BY key")]
    assert keys == ["TCP(80)", f"[{BLUE}] TCP(80)"]


def test_a_schema_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A state dir written before scopes: its alerts become the host's scope's, the unique index covers scopes."""
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    with conn:
        for statement in (s for s in V1_SCHEMA.split(";") if s.strip()):
            conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        marks = ", ".join("?" * len(store_module._COLUMNS))
        conn.execute(f"INSERT INTO alerts ({store_module._COLS}) VALUES ({marks})", alert_to_row(alert(), tmp_path))
    conn.close()
    with AlertStore.open(tmp_path) as host, AlertStore.open(tmp_path, BLUE) as blue:
        [old] = host.load_active().values()
        assert replace(old, id=None) == alert() and blue.load_active() == {}
        with pytest.raises(StateError):
            host.save([alert()])
        assert blue.save([alert()])[0].id == (old.id or 0) + 1
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert versions == [(1,), (2,)]
    assert "alerts_one_active" not in indexes and "alerts_one_active_in_scope" in indexes
