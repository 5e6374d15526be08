"""The generated Prometheus rules reach the agent's verdicts on the same data (`promtool test rules`).

The agent (`connwatch run`'s Agent, its real pipeline and alert lifecycle) samples a sequence of
snapshots every 5 s; after each sample its /metrics is scraped. Those scrapes are promtool's input
series, evaluated every 5 s by the generated rules. At every step the most severe alert Prometheus
fires per problem (what Alertmanager shows once the generated inhibit rules silence the lower tiers)
must be the agent's active alert: same attribute, resource and severity; nothing when the agent has none.
Scenarios: steady load, a burst in one interval, recovery (the agent's clear_after clean samples), and the
fold between the queue and the rejects alerts in both orders (the alert already open keeps the problem: the
rules read their own ALERTS one interval back).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import connwatch.agent.loop
from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.attributes.registry import default_rules
from connwatch.clock import Clock, FakeClock
from connwatch.collect import CollectOptions
from connwatch.model import Snapshot
from connwatch.outputs.promrules import prometheus_rules, recording_rules, to_yaml
from connwatch.rules.config import Config

from .builders import listener, snapshot

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")
INTERVAL = 5
RANK = {"critical": 1, "high": 2, "medium": 3, "low": 4}
PORT = 8080


def _snapshots(drops_per_interval: Sequence[int], queues: Sequence[int]) -> Iterator[Snapshot]:
    """Port 8080 (backlog 5) dropping the given requests per interval, its queue at the given lengths;
    the namespace's ListenOverflows/ListenDrops count the same drops (every drop an overflow)."""
    total = 0
    for i, (drops, queue) in enumerate(zip(drops_per_interval, queues, strict=True)):
        total += drops
        counters = {"TcpExt.ListenOverflows": total, "TcpExt.ListenDrops": total, "TcpExt.TCPReqQFullDrop": 0}
        yield snapshot(1_700_000_000.0 + i * INTERVAL, (listener(PORT, queue, 5, total),), counters)


def _run_agent(snaps: list[Snapshot], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> tuple[list[str], list[dict[tuple[str, str], str]]]:
    """The agent over the snapshots: its /metrics after each sample and its active alerts."""
    feed = iter(snaps)

    def replay(clock: Clock, opts: CollectOptions | None = None) -> Snapshot:
        return next(feed)

    monkeypatch.setattr(connwatch.agent.loop, "collect", replay)
    clock = FakeClock(start=snaps[0].taken_at)
    agent = Agent(AgentOptions(state_dir=tmp_path / "state", listen_port=0), Config(default_rules()), clock)
    bodies, verdicts = [], []
    try:
        for _ in snaps:
            agent.full_sample()
            bodies.append(generate_latest(agent.registry).decode())
            verdicts.append({(a.attribute, str(a.resource.get("port") or "")): a.severity_name.lower()
                             for a in agent.alerts})
            clock.sleep(INTERVAL)
    finally:
        agent.keeper.close()
        agent.poller.close()
    return bodies, verdicts


def _input_series(bodies: list[str]) -> list[dict[str, str]]:
    """promtool input_series: every connwatch_attribute_* series, one value per scrape ('_' = absent)."""
    values: dict[str, list[str]] = {}
    for i, body in enumerate(bodies):
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name.startswith("connwatch_attribute_"):
                    labels = {**s.labels, "instance": "testhost:9815", "job": "connwatch"}
                    key = s.name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                    values.setdefault(key, ["_"] * len(bodies))[i] = f"{s.value:g}"
    return [{"series": k, "values": " ".join(v)} for k, v in values.items()]


EFFECTIVE = " or ".join(f'ALERTS{{alertstate="firing", connwatch_severity="{name}"}} * {rank}'
                        for name, rank in RANK.items())
EFFECTIVE = f"min by (alertname, port) ({EFFECTIVE})"


def _tests(bodies: list[str], verdicts: list[dict[tuple[str, str], str]], rules_file: str) -> dict[str, object]:
    expr_tests = []
    for i, verdict in enumerate(verdicts):
        samples = [{"labels": "{" + f'alertname="{attr}", port="{port}"' + "}", "value": RANK[sev]}
                   for (attr, port), sev in sorted(verdict.items())]
        expr_tests.append({"expr": EFFECTIVE, "eval_time": f"{i * INTERVAL}s", "exp_samples": samples})
    return {"rule_files": [rules_file], "evaluation_interval": f"{INTERVAL}s",
            "tests": [{"interval": f"{INTERVAL}s", "input_series": _input_series(bodies),
                       "promql_expr_test": expr_tests}]}


SCENARIOS = {
    # 20 requests rejected every interval: Medium all along (the queue is full: 6 of 5 = 120 %, High).
    "steady": ([0, 20, 20, 20, 20, 20, 20], [0, 2, 2, 2, 2, 2, 2]),
    # one interval of 150 rejects: High for that sample, Medium before and after while it continues.
    "burst": ([0, 20, 20, 150, 20, 20, 20], [0, 1, 1, 1, 1, 1, 1]),
    # rejects end: the alert stays active for clear_after (3) clean samples, then clears.
    "recovery": ([0, 20, 150, 0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0, 0]),
    # the queue fills without rejects (AcceptQueueFill alone), then rejects start: one alert, the rejects one,
    # made High by the full queue folded into it.
    "queue then rejects": ([0, 0, 0, 10, 10, 0, 0, 0, 0], [0, 5, 6, 6, 6, 0, 0, 0, 0]),
    # rejects, then the queue stays full without rejects: the rejects alert is held open at its own severity.
    "rejects then full queue": ([0, 20, 20, 0, 0, 0, 0, 0, 0, 0], [0, 1, 1, 6, 6, 6, 0, 0, 0, 0]),
    # a queue at 100 % (Low), then rejects (Medium) folded into its alert: the alert becomes Medium.
    "low fill then rejects": ([0, 0, 10, 10, 0, 0, 0, 0], [0, 5, 5, 5, 0, 0, 0, 0]),
    # the queue alert clears, then rejects start while the queue is under its limit: a new alert, the rejects one.
    "fill clearing then rejects": ([0, 0, 0, 0, 10, 10, 0, 0, 0, 0], [0, 6, 0, 0, 2, 2, 0, 0, 0, 0]),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_prometheus_rules_reach_the_agents_verdicts(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    drops, queues = SCENARIOS[name]
    bodies, verdicts = _run_agent(list(_snapshots(drops, queues)), tmp_path, monkeypatch)
    assert any(verdicts), "the scenario must raise something"
    rules = tmp_path / "connwatch.rules.yml"
    rules.write_text(to_yaml(prometheus_rules(default_rules(), INTERVAL), "test",
                             records=recording_rules(default_rules(), INTERVAL)))
    test = tmp_path / "test.yml"
    test.write_text(json.dumps(_tests(bodies, verdicts, str(rules)), indent=1))  # JSON is YAML
    done = subprocess.run(["promtool", "test", "rules", str(test)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"agent verdicts {verdicts}\n{done.stdout}{done.stderr}"
