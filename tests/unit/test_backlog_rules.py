"""Backlog attributes, rules and explanations on hand-built snapshots (pure, fake clock)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connwatch.alerts.store import AlertStore
from connwatch.attributes.backlog import measure, reconcile
from connwatch.engine import judge
from connwatch.errors import ConfigError
from connwatch.model import Process, Snapshot
from connwatch.rules.config import Config
from connwatch.rules.evaluate import evaluate
from connwatch.rules.spec import default_rules, load_rules

from .builders import listener, snapshot

T0 = 1_700_000_000.0
OWNER = Process(pid=4242, command="mqlistener", user="mqm", started_at=T0 - 600, open_fds=10, fd_limit=1024)


def _pair(drops_before: int, drops_after: int, queue: int = 6, backlog: int = 5,
          somaxconn: int = 4096) -> tuple[Snapshot, Snapshot]:
    prev = snapshot(T0, (listener(1414, 0, backlog, drops_before, owner=OWNER),
                         listener(1414, 0, backlog, 0, address="::", family=6, owner=OWNER),
                         listener(80, 0, 128, 0)),
                    {"TcpExt.ListenDrops": 1000, "TcpExt.ListenOverflows": 1000}, somaxconn)
    cur = snapshot(T0 + 5, (listener(1414, queue, backlog, drops_after, owner=OWNER),
                            listener(1414, 1, backlog, 4, address="::", family=6, owner=OWNER),
                            listener(80, 0, 128, 0)),
                   {"TcpExt.ListenDrops": 1000 + drops_after - drops_before + 4 + 3,
                    "TcpExt.ListenOverflows": 1000 + drops_after - drops_before + 4}, somaxconn)
    return prev, cur


def test_rejects_summed_over_every_listener_on_the_port() -> None:
    prev, cur = _pair(10, 130)
    by = {(m.attribute, m.resource_key): m for m in measure(prev, cur)}
    assert by[("BacklogRejectsByPort", "TCP(1414)")].value == 124  # 120 on IPv4 + 4 on IPv6
    assert by[("BacklogRejectsByPort", "TCP(80)")].value == 0
    assert by[("AcceptQueueFill", "TCP(1414)")].value == 120.0
    assert by[("ListenOverflows", "TCP(host)")].value == 124
    # Every overflow the namespace counted is explained by a live listener (ListenDrops' 3 others are not
    # rejections): attributed 124 = ListenOverflows, nothing unattributed, never clamped.
    assert reconcile(prev, cur) == {"host_listen_drops": 127, "host_listen_overflows": 124,
                                    "attributed": 124, "unattributed": 0, "host_syn_queue_drops": None,
                                    "host_deferred_accept_drops": None, "listener_drops": 124}


def test_new_listener_counts_all_its_drops_and_reset_counter_is_unavailable() -> None:
    prev, cur = _pair(10, 130)
    prev = dataclasses.replace(prev, listeners=prev.listeners[2:],
                               counters={"TcpExt.ListenDrops": 5, "TcpExt.ListenOverflows": 990})
    by = {(m.attribute, m.resource_key): m.value for m in measure(prev, cur)}
    assert by[("BacklogRejectsByPort", "TCP(1414)")] == 134
    cur2 = dataclasses.replace(cur, counters={"TcpExt.ListenDrops": 1, "TcpExt.ListenOverflows": 1})
    assert ("ListenOverflows", "TCP(host)") not in {(m.attribute, m.resource_key) for m in measure(prev, cur2)}


def test_default_rules_and_severity() -> None:
    prev, cur = _pair(10, 130)
    findings = {(f.measurement.attribute, f.measurement.resource_key): f
                for f in evaluate(default_rules(), measure(prev, cur))}
    rejects = findings[("BacklogRejectsByPort", "TCP(1414)")]
    assert rejects.breached and rejects.severity == 2 and rejects.limit == 100
    assert not findings[("BacklogRejectsByPort", "TCP(80)")].breached
    assert findings[("AcceptQueueFill", "TCP(1414)")].severity == 2


def test_port_rule_replaces_generic_and_unlimited_disables(tmp_path: Path) -> None:
    cfg = tmp_path / "rules.toml"
    cfg.write_text('[[rules]]\nattribute = "BacklogRejectsByPort"\nport = 1414\nhigh = 200\nseverity = 1\n'
                   '[[rules]]\nattribute = "AcceptQueueFill"\nport = 1414\nhigh = "unlimited"\n')
    prev, cur = _pair(10, 130)
    findings = {(f.measurement.attribute, f.measurement.resource_key): f
                for f in evaluate(load_rules(cfg), measure(prev, cur))}
    assert not findings[("BacklogRejectsByPort", "TCP(1414)")].breached
    assert findings[("BacklogRejectsByPort", "TCP(1414)")].limit == 200
    assert ("AcceptQueueFill", "TCP(1414)") not in findings


def test_rate_mode_divides_by_interval(tmp_path: Path) -> None:
    cfg = tmp_path / "rules.toml"
    cfg.write_text('[settings]\nreplace_defaults = true\n[[rules]]\nattribute = "BacklogRejectsByPort"\n'
                   'high = 20\nmode = "rate"\n')
    prev, cur = _pair(10, 130)
    [f] = [f for f in evaluate(load_rules(cfg), measure(prev, cur)) if f.measurement.resource_key == "TCP(1414)"]
    assert f.measurement.value == pytest.approx(124 / 5) and f.measurement.unit == "requests/s" and f.breached


@pytest.mark.parametrize(("text", "message"), [
    ('[[rules]]\nattribute = "Nope"\nhigh = 1\n', "unknown attribute 'Nope'"),
    ('[[rules]]\nattribute = "AcceptQueueFill"\nhigh = 1\nmode = "rate"\n', "mode must be 'value'"),
    ('[[rules]]\nattribute = "BacklogRejectsByPort"\nhigh = -1\n', "out of range"),
    ('[[rules]]\nattribute = "BacklogRejectsByPort"\nhigh = "lots"\n', "must be a number or"),
    ('[[rules]]\nattribute = "BacklogRejectsByPort"\nhigh = 1\nseverity = 9\n', "severity"),
    ('[[rules]]\nattribute = "BacklogRejectsByPort"\nhigh = 1\nport = 70000\n', "port"),
    ('[[rules]]\nattribute = "BacklogRejectsByPort"\nhigh = 1\ncolour = "red"\n', "unknown key"),
    ("[[rules]\n", "invalid TOML"),
    ("[other]\n", "unknown section"),
])
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_rules(cfg)
    assert message in str(err.value) and str(cfg) in str(err.value) and "\n" not in str(err.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_rules("/nonexistent/connwatch.toml")


def test_explanation_answers_the_seed_questions(tmp_path: Path) -> None:
    prev, cur = _pair(10, 130)
    with AlertStore.open(tmp_path) as store:
        result = judge(prev, cur, Config(default_rules()), store)
    [alert] = [a for a in result.step.raised if a.attribute == "BacklogRejectsByPort"]
    assert alert.description == "TCP(1414) BacklogRejectsByPort High, 124 requests > 100 requests"
    text = alert.explanation
    assert "It persists" in text  # did it clear?
    assert "No other port rejected" in text  # other ports?
    assert "running for 10 min" in text and "recently started" in text  # a new application?
    assert "asked listen() for a backlog of 5" in text and "somaxconn (4096)" in text
    assert "re-sends its SYN at about 1, 3, 7, 15, 31, 63 s" in text  # no tcp_syn_linear_timeouts: doubling
    assert "124 connection request(s)" in text and "not distinct clients" in text
    assert "live listeners account for 124" in text
    assert "pid 4242 (mqlistener" in alert.owner
    assert result.exit_code == 2 and result.status == "CRITICAL"


def test_explanation_when_cleared_capped_and_fd_exhausted(tmp_path: Path) -> None:
    starved = dataclasses.replace(OWNER, open_fds=1024, started_at=T0 - 86400 * 3)
    prev = snapshot(T0, (listener(8443, 0, 16, 0, owner=starved), listener(9000, 0, 16, 0)),
                    {"TcpExt.ListenOverflows": 0, "TcpExt.ListenDrops": 0}, somaxconn=16)
    cur = snapshot(T0 + 5, (listener(8443, 2, 16, 40, owner=starved), listener(9000, 0, 16, 7)),
                   {"TcpExt.ListenOverflows": 47, "TcpExt.ListenDrops": 47}, somaxconn=16)
    result = judge(prev, cur, Config(default_rules()), None)
    by = {(f.measurement.attribute, f.measurement.resource_key): f for f in result.breached}
    words = by[("BacklogRejectsByPort", "TCP(8443)")].explanation
    assert words is not None
    assert "the accept queue had room again (2 of 16" in words.explanation
    assert "Port(s) 9000 also rejected connections in this interval while their queues had room again" \
        in words.explanation
    assert "holds 1024 of its 1024 file descriptors" in words.explanation
    assert "capped by somaxconn" in words.explanation and "recently started" not in words.explanation
    assert "sysctl -w net.core.somaxconn=" in words.action and "restart" in words.action
    assert result.exit_code == 1  # severity 3 only -> WARNING


def test_lifecycle_through_engine_with_fake_clock(tmp_path: Path) -> None:
    prev, cur = _pair(10, 130)
    with AlertStore.open(tmp_path) as store:
        first = judge(prev, cur, Config(default_rules()), store)
        again = judge(cur, dataclasses.replace(cur, taken_at=T0 + 10, monotonic=T0 + 10,
                                               listeners=_pair(130, 200)[1].listeners,
                                               counters={k: v + 70 for k, v in cur.counters.items()}),
                      Config(default_rules()), store)
    [raised] = [a for a in first.step.raised if a.attribute == "BacklogRejectsByPort"]
    [updated] = [a for a in again.step.updated if a.attribute == "BacklogRejectsByPort"]
    assert updated.id == raised.id and updated.occurrences == 2 and updated.created_at == T0 + 5
    assert updated.last_occurred == T0 + 10
    # Quiet: no counters moving and the queue drained (a queue still full would hold the alert open).
    quiet = dataclasses.replace(cur, counters={}, listeners=_pair(130, 130, queue=0)[1].listeners)
    with AlertStore.open(tmp_path) as store:  # a new process: history persisted
        for i in range(3):
            t = T0 + 20 + i
            same = dataclasses.replace(quiet, taken_at=t, monotonic=t)
            res = judge(same, same, Config(default_rules()), store)
        assert [a.id for a in res.step.cleared if a.attribute == "BacklogRejectsByPort"] == [raised.id]
        assert ("BacklogRejectsByPort", "TCP(1414)") not in store.load_active()


def test_a_full_queue_between_bursts_holds_the_one_alert_open(tmp_path: Path) -> None:
    """Clients back off (SYN re-sends at 1, 3, 7, 15 s...): an interval can see no new reject while the
    queue stays full. That is the same problem: the rejects alert stays, no AcceptQueueFill alert appears."""
    prev, cur = _pair(10, 130)
    with AlertStore.open(tmp_path) as store:
        first = judge(prev, cur, Config(default_rules()), store)
        t = T0 + 10
        still = dataclasses.replace(cur, taken_at=t, monotonic=t)  # same counters: no reject, queue 6 of 5
        again = judge(cur, still, Config(default_rules()), store)
    [raised] = [a for a in first.step.raised if a.attribute == "BacklogRejectsByPort"]
    assert not again.step.raised and not again.step.cleared and not again.step.still_active_clean
    [held] = again.step.updated
    assert held.id == raised.id and held.clean_samples == 0 and held.occurrences == raised.occurrences
    [fill] = [f for f in again.findings if f.measurement.attribute == "AcceptQueueFill" and f.breached]
    assert fill.breached and fill.folded_into == "BacklogRejectsByPort TCP(1414)"


def test_generic_rule_in_file_replaces_built_in_limits(tmp_path: Path) -> None:
    cfg = tmp_path / "rules.toml"
    cfg.write_text('[[rules]]\nattribute = "BacklogRejectsByPort"\nhigh = 200\nseverity = 3\n')
    rules = load_rules(cfg)
    assert [r.high for r in rules if r.attribute == "BacklogRejectsByPort"] == [200]
    assert len([r for r in rules if r.attribute == "AcceptQueueFill"]) == 2  # others keep their defaults
    prev, cur = _pair(10, 130)
    [f] = [f for f in evaluate(rules, measure(prev, cur))
           if f.measurement.attribute == "BacklogRejectsByPort" and f.measurement.resource_key == "TCP(1414)"]
    assert not f.breached and f.limit == 200
