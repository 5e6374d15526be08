"""`connwatch rules --format prometheus`: same decisions as the agent, and promtool accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from connwatch.cli import main
from connwatch.outputs.promrules import prometheus_rules
from connwatch.rules.spec import Rule, load_rules


def test_defaults_band_severities_like_the_agent() -> None:
    rules = (Rule("BacklogRejectsByPort", 0, severity=3), Rule("BacklogRejectsByPort", 100, severity=2))
    medium, high = prometheus_rules(rules, interval=5, window="1m")
    drops = "sum by (instance, port) (rate(connwatch_listener_drops_total[1m])) * 5"
    assert high.expr == f"{drops} > 100" and high.labels["severity"] == "high"
    assert medium.expr == f"{drops} > 0\nunless\n{drops} > 100"  # the agent picks the most severe one


def test_port_rules_replace_generic_ones_and_unlimited_switches_off() -> None:
    rules = (Rule("BacklogRejectsByPort", 0, severity=3), Rule("BacklogRejectsByPort", 50, severity=2, port=1414),
             Rule("AcceptQueueFill", 80, severity=4), Rule("AcceptQueueFill", None, port=22))
    generic, special, fill = prometheus_rules(rules, interval=10, window="2m")
    assert 'connwatch_listener_drops_total{port!~"1414"}[2m]' in generic.expr and "* 10 > 0" in generic.expr
    assert 'connwatch_listener_drops_total{port="1414"}' in special.expr and special.expr.endswith("> 50")
    assert 'connwatch_listener_queue_peak{port!~"22"}' in fill.expr  # no rule at all for port 22


def test_shadowed_rule_is_left_out_and_rate_mode_has_no_interval() -> None:
    rules = (Rule("ListenOverflows", 10, severity=4, mode="rate"), Rule("ListenOverflows", 5, severity=1,
                                                                         mode="rate"))
    [only] = prometheus_rules(rules)
    assert only.labels["severity"] == "critical" and "* 5" not in only.expr
    assert "connwatch_netstat_tcpext_listen_overflows_total" in only.expr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_promtool_accepts_the_generated_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rules.toml"
    config.write_text('[[rules]]\nattribute = "BacklogRejectsByPort"\nport = 1414\nhigh = 20\nseverity = 2\n')
    assert main(["rules", "--format", "prometheus", "--config", str(config)]) == 0
    out = tmp_path / "connwatch.rules.yml"
    out.write_text(capsys.readouterr().out)
    done = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = len(prometheus_rules(load_rules(config))) + 3  # + the agent-health group
    assert f"SUCCESS: {expected} rules found" in done.stdout


def test_bad_window_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--format", "prometheus", "--window", "soon"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--window must be a Prometheus duration" in err
