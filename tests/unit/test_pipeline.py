"""The one judging pipeline, the registry, the Config value and the state store's defences."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from connwatch.alerts.store import AlertStore
from connwatch.attributes.registry import default_rules, known_attributes, specs, subjects
from connwatch.cli import main
from connwatch.engine import judge
from connwatch.errors import ConfigError, StateError
from connwatch.findings import Finding
from connwatch.model import Process, Snapshot
from connwatch.outputs.promrules import prometheus_rules
from connwatch.rules.config import Config, load_config

from .builders import listener, snapshot

T0 = 1_700_000_000.0
OWNER = Process(pid=4242, command="mqlistener", user="mqm", started_at=T0 - 600, open_fds=10, fd_limit=1024)


def _pair(at: float, drops_before: int, drops_after: int) -> tuple[Snapshot, Snapshot]:  # stuck 1414
    prev = snapshot(at, (listener(1414, 6, 5, drops_before, owner=OWNER),),
                    {"TcpExt.ListenOverflows": drops_before, "TcpExt.ListenDrops": drops_before})
    cur = snapshot(at + 5, (listener(1414, 6, 5, drops_after, owner=OWNER),),
                   {"TcpExt.ListenOverflows": drops_after, "TcpExt.ListenDrops": drops_after})
    return prev, cur


def test_registry_is_the_one_list_of_attributes() -> None:
    names = list(specs())
    assert names[:5] == ["BacklogRejectsByPort", "AcceptQueueFill", "ListenOverflows", "SynQueueDrops",
                         "SynCookiesSent"]
    assert len(names) == len(set(names)) == 19 and [s.name for s in subjects()] == ["backlog", "ephemeral", "sources",
                                                                                  "accept", "hostlimits"]
    assert known_attributes()["BacklogRejectsByPort"] == ("requests", True)
    assert {r.attribute for r in default_rules()} == set(names)
    for spec in specs().values():  # every spec explains its own facts: words from a real measurement
        assert spec.help and spec.unit and callable(spec.explain)
    native = {r.alert for r in prometheus_rules(default_rules()) if "connwatch_attribute_" in r.expr}
    assert native == set(specs())  # every attribute has its Prometheus rules, from its spec


def test_every_breach_is_explained_by_its_spec() -> None:
    prev, cur = _pair(T0, 10, 130)
    result = judge(prev, cur, Config(default_rules()), None)
    [f] = [f for f in result.breached if f.measurement.attribute == "BacklogRejectsByPort"]
    assert f.measurement.value == 120 and f.explanation is not None
    assert f.explanation.text == specs()["BacklogRejectsByPort"].help
    assert "pid 4242 (mqlistener, user mqm)" in f.explanation.owner
    assert f.measurement.detail["listeners"][0]["drops_delta"] == 120  # typed facts, flattened for JSON


def test_config_is_passed_not_installed(tmp_path: Path) -> None:
    aggregated = tmp_path / "agg.toml"
    aggregated.write_text("[sources]\naggregate = true\nlimit = 7\n")
    one = load_config(aggregated)
    assert one.sources.aggregate and load_config(None).sources.aggregate is False  # no state left behind
    assert any(r.attribute == "ConnectionsPerSource" and r.high == 7 for r in one.rules)


@pytest.mark.parametrize(("text", "words"), [
    ('[settings]\nreplace_defaults = "false"\n', "replace_defaults must be true or false"),
    ("[settings]\nclear_aftr = 2\n", "unknown key(s) ['clear_aftr']"),
    ('[[rules]]\nattribute = "AcceptQueueFill"\nhigh = nan\n', "must be a finite number"),
    ('[[rules]]\nattribute = "AcceptQueueFill"\nhigh = inf\n', "must be a finite number"),
    ('[[rules]]\nattribute = "AcceptQueueFill"\nhigh = 1e400\n', "must be a finite number"),
    ('[[rules]]\nattribute = "AcceptQueueFill"\nhigh = 5\nclass = 3\n', "class must be a string"),
])
def test_config_values_that_would_switch_alerting_off_are_refused(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert words in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_one_transaction_per_step_loses_no_update(tmp_path: Path) -> None:
    """20 threads, each with its own connection, judge the same breach 5 times: 100 occurrences."""
    config = Config(default_rules())
    with AlertStore.open(tmp_path):
        pass
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with AlertStore.open(tmp_path) as store:
                for i in range(5):
                    prev, cur = _pair(T0 + 10 * (n * 5 + i), 10, 130)
                    judge(prev, cur, config, store)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    with AlertStore.open(tmp_path) as store:
        [alert] = [a for a in store.history() if a.attribute == "BacklogRejectsByPort"]
    assert alert.occurrences == 100


def test_a_damaged_row_does_not_stop_the_verdict(tmp_path: Path) -> None:
    prev, cur = _pair(T0, 10, 130)
    with AlertStore.open(tmp_path) as store:
        judge(prev, cur, Config(default_rules()), store)
    conn = sqlite3.connect(tmp_path / "connwatch.db")
    conn.execute("UPDATE alerts SET detail = '{not json'")
    conn.commit()
    conn.close()
    with AlertStore.open(tmp_path) as store:
        prev, cur = _pair(T0 + 10, 130, 250)
        again = judge(prev, cur, Config(default_rules()), store)
        [alert] = [a for a in store.history() if a.attribute == "BacklogRejectsByPort"]
    assert again.store_error is None and again.exit_code == 2
    assert alert.occurrences == 2 and alert.detail["listeners"][0]["drops_delta"] == 120


def test_store_failure_still_gives_the_verdict(tmp_path: Path) -> None:
    prev, cur = _pair(T0, 10, 130)
    with AlertStore.open(tmp_path) as store:
        store.db.close()  # a store that fails on first use
        result = judge(prev, cur, Config(default_rules()), store)
    assert result.exit_code == 2 and result.store_error is not None and "closed" in result.store_error
    assert all(isinstance(f, Finding) for f in result.breached)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant files as another user")


@needs_root
def test_a_planted_database_symlink_is_refused(tmp_path: Path) -> None:
    state, target = tmp_path / "state", tmp_path / "precious"
    state.mkdir(mode=0o700)
    target.write_text("do not overwrite")
    (state / "connwatch.db").symlink_to(target)
    with pytest.raises(StateError, match="symbolic link"):
        AlertStore.open(state)
    assert target.read_text() == "do not overwrite"
    (state / "connwatch.db").unlink()
    (state / "connwatch.db-wal").symlink_to(tmp_path / "dangling")
    with pytest.raises(StateError, match="symbolic link"):
        AlertStore.open(state)
    assert not (tmp_path / "dangling").exists()


@needs_root
def test_a_state_dir_another_user_controls_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "theirs"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    with pytest.raises(StateError, match="owned by uid 65534"):
        AlertStore.open(state)
    mine = tmp_path / "open"
    mine.mkdir()
    mine.chmod(0o777)
    with pytest.raises(StateError, match="writable by other users"):
        AlertStore.open(mine)
    proc = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")
    code = main(["check", "--interval", "0.01", "--proc-root", proc, "--no-netlink", "--state-dir", str(state)])
    err = capsys.readouterr().err
    assert code in (0, 1, 2) and err.count("\n") == 1 and "refusing" in err  # the verdict, plus one warning
    assert not (state / "connwatch.db").exists()
