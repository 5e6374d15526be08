"""`connwatch rules --format prometheus`: same decisions as the agent, and promtool accepts it."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from connwatch.attributes.registry import default_rules, specs
from connwatch.cli import main
from connwatch.outputs.promrules import agent_rules, default_runbook_base, prometheus_rules, recording_rules
from connwatch.rules.spec import Rule, load_rules


def _expanded(expr: str, rules: Sequence[Rule], interval: float = 5) -> str:
    """The alert's expression with the recording rules' series it reads written out."""
    records = {r.record: r.expr for r in recording_rules(rules, interval)}
    pattern = re.compile("|".join(re.escape(n) for n in sorted(records, key=len, reverse=True)) + r"(?![a-z_])")
    while pattern.search(expr):
        expr = pattern.sub(lambda m: f"({records[m.group(0)]})", expr)
    return expr


def test_each_tier_fires_on_its_own_with_routing_and_connwatch_severity() -> None:
    rules = (Rule("BacklogRejectsByPort", 0, severity=3), Rule("BacklogRejectsByPort", 100, severity=2))
    medium, high = prometheus_rules(rules, interval=5, window="1m")
    records = {r.record: r.expr for r in recording_rules(rules, 5)}
    value = "max by (instance, netns, port) (connwatch_attribute_backlog_rejects_by_port)"  # judged per namespace
    assert high.expr.split("\nor\n")[0] == "(connwatch:backlog_rejects_by_port:breach_high)"
    assert records["connwatch:backlog_rejects_by_port:breach_high"] == f"({value} > 100)"
    assert medium.expr.split("\nor\n")[0] == "(connwatch:backlog_rejects_by_port:breach)"
    assert records["connwatch:backlog_rejects_by_port:breach"] == f"({value} > 0) or ({value} > 100)"  # never flaps
    assert (high.labels["severity"], high.labels["connwatch_severity"]) == ("critical", "high")
    assert (medium.labels["severity"], medium.labels["connwatch_severity"]) == ("warning", "medium")
    assert high.for_ == "0s" and high.annotations["runbook_url"].endswith("runbooks.md#backlogrejectsbyport")
    assert "BacklogRejectsByPort High, " in high.annotations["summary"]
    assert "BacklogRejectsByPort Medium, " in medium.annotations["summary"]  # the summary says its own tier


def test_port_rules_replace_generic_ones_and_unlimited_switches_off() -> None:
    rules = (Rule("BacklogRejectsByPort", 0, severity=3), Rule("BacklogRejectsByPort", 50, severity=2, port=1414),
             Rule("AcceptQueueFill", 80, severity=4), Rule("AcceptQueueFill", None, port=22))
    generic, special, fill, *by_fold = prometheus_rules(rules, interval=10, window="2m")
    assert 'connwatch_attribute_backlog_rejects_by_port{port!~"1414"}) > 0' in _expanded(generic.expr, rules, 10)
    assert 'connwatch_attribute_backlog_rejects_by_port{port="1414"}) > 50' in _expanded(special.expr, rules, 10)
    fill_expr = _expanded(fill.expr, rules, 10)
    assert 'connwatch_attribute_accept_queue_fill_percent{port!~"22"}' in fill_expr  # no rule at all for port 22
    assert "unless on (instance, netns, port)" in fill_expr  # one problem, one alert: folded into the rejects alert
    # an alert takes the severity of what folds into it: the queue alert gets a Medium and a High tier, the
    # rejects alert a Low one, each firing only through the fold
    assert sorted((r.alert, r.labels["connwatch_severity"]) for r in by_fold) == [
        ("AcceptQueueFill", "high"), ("AcceptQueueFill", "medium"), ("BacklogRejectsByPort", "low")]
    assert all(r.labels["connwatch_rule"] == "folded" and "folded into it" in r.annotations["summary"]
               for r in by_fold)


def test_the_alert_already_open_keeps_the_problem() -> None:
    """engine.fold: a problem keeps the alert already active; the rules read their own previous state (ALERTS
    one --interval ago) to do the same, and hold it open (not clean) while a breach folded into it goes on."""
    rules = (Rule("BacklogRejectsByPort", 0, severity=3), Rule("AcceptQueueFill", 80, severity=4))
    rejects = prometheus_rules(rules, interval=5)[0]
    assert 'ALERTS{alertname="AcceptQueueFill", alertstate="firing", connwatch_origin="prometheus"} ' \
           "offset 5000ms" in _expanded(rejects.expr, rules)
    # the clearing window is a range over the recorded primary: exactly the evaluations' own results
    assert "count_over_time(connwatch:backlog_rejects_by_port:primary[12500ms])" in rejects.expr
    assert 'connwatch_severity="medium"} offset 5000ms' in rejects.expr.split("\nor\n")[1]


def test_shadowed_rule_is_left_out_and_rate_mode_divides_by_the_interval() -> None:
    rules = (Rule("ListenOverflows", 10, severity=4, mode="rate"), Rule("ListenOverflows", 5, severity=1,
                                                                         mode="rate"))
    [only] = prometheus_rules(rules)
    assert only.labels["severity"] == "critical"
    assert "(max by (instance, netns) (connwatch_attribute_listen_overflows) / 5 > 5)" in _expanded(only.expr, rules)


def test_address_rules_select_their_resources() -> None:
    rules = (Rule("EphemeralPortUsage", 50, severity=3), Rule("EphemeralPortUsage", 90, severity=3,
                                                              address="10.0.0.9"))
    generic, special = prometheus_rules(rules)
    expr = _expanded(generic.expr, rules)
    assert 'unless on (instance, netns, destination, local_address) (connwatch_attribute_ephemeral_port_usage_percent' \
           '{destination=~"10\\\\.0\\\\.0\\\\.9(:[0-9]+)?"}' in expr
    assert ' and on (instance, netns, destination, local_address) (' in _expanded(special.expr, rules)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
def test_promtool_accepts_the_generated_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rules.toml"
    config.write_text('[[rules]]\nattribute = "BacklogRejectsByPort"\nport = 1414\nhigh = 20\nseverity = 2\n'
                      '[[rules]]\nattribute = "BacklogRejectsByPort"\naddress = "127.0.0.1"\nhigh = 5\nseverity = 2\n'
                      '[[rules]]\nattribute = "EphemeralPortUsage"\naddress = "10.0.0.9"\nhigh = 90\nseverity = 2\n'
                      '[[rules]]\nattribute = "ListenOverflows"\nhigh = 3\nmode = "rate"\nseverity = 2\n')
    assert main(["rules", "--format", "prometheus", "--config", str(config)]) == 0
    out = tmp_path / "connwatch.rules.yml"
    out.write_text(capsys.readouterr().out)
    done = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = len(prometheus_rules(load_rules(config))) + len(recording_rules(load_rules(config))) + 3  # + agent
    assert f"SUCCESS: {expected} rules found" in done.stdout
    comments = [line[2:] for line in out.read_text().splitlines() if line.startswith("# ")]
    assert "inhibit_rules:" in comments and any("connwatch_origin" in line for line in comments)


def test_bad_window_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--format", "prometheus", "--window", "soon"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--window must be a Prometheus duration" in err


def test_every_runbook_url_points_at_a_section_of_the_shipped_runbook() -> None:
    text = (Path(__file__).parents[2] / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
               for line in text.splitlines() if line.startswith("## ")}
    urls = [r.annotations["runbook_url"] for r in (*prometheus_rules(default_rules()), *agent_rules())]
    assert {u.split("#")[1] for u in urls} <= anchors
    assert {name.lower() for name in specs()} <= anchors  # one section per attribute of the registry


def test_runbook_url_is_the_installed_runbook_unless_a_published_one_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No invented website: by default the runbook the package ships (a file:// URL that exists on this host,
    the same text as docs/runbooks.md); --runbook-base or [settings] runbook_base name where it was published."""
    shipped = Path(default_runbook_base().removeprefix("file://"))
    assert shipped.read_text() == (Path(__file__).parents[2] / "docs" / "runbooks.md").read_text()
    [first, *_] = prometheus_rules(default_rules())
    assert first.annotations["runbook_url"] == f"{shipped.as_uri()}#{first.alert.lower()}"
    assert main(["rules", "--format", "runbook"]) == 0
    assert capsys.readouterr().out == shipped.read_text()
    config = tmp_path / "c.toml"
    config.write_text('[settings]\nrunbook_base = "https://wiki.example.com/ops/connwatch.md"\n')
    assert main(["rules", "--format", "prometheus", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert 'runbook_url: "https://wiki.example.com/ops/connwatch.md#backlogrejectsbyport"' in out
    assert 'runbook_url: "https://wiki.example.com/ops/connwatch.md#connwatch-itself"' in out and "file://" not in out
    assert main(["rules", "--format", "prometheus", "--config", str(config), "--runbook-base",
                 "https://git.example.com/runbooks.md"]) == 0  # the flag wins over the file
    assert '"https://git.example.com/runbooks.md#acceptqueuefill"' in capsys.readouterr().out
    for bad in (["--runbook-base", "wiki/runbooks.md#x"], ["--runbook-base", "https://w.example.com/r.md#top"]):
        assert main(["rules", "--format", "prometheus", *bad]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--runbook-base: runbook base must be an http(s):// or file:// URL" in err
    config.write_text("[settings]\nrunbook_base = 3\n")
    assert main(["rules", "--format", "prometheus", "--config", str(config)]) == 3
    assert "runbook_base must be a string" in capsys.readouterr().err
