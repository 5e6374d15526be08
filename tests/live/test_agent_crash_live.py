"""kill -9 during delivery, again and again: Alertmanager ends up holding exactly the database's
active alerts, and every webhook notification keeps one Idempotency-Key (issue 14.6).

Alerts are raised and cleared all along (listeners flooded and released at random), the agent is
killed with SIGKILL at random moments (a bounded number of times) and restarted on the same state.
Last, one crash loses the state database (a state dir on tmpfs after a reboot): alerts that
Alertmanager holds and the new database never had must be resolved by the restarted agent, not
left active for 4 re-send intervals. Set CONNWATCH_CRASH_SEED to replay a run; the seed is printed.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from .agentstack import AM_BIN, INSTANCE, Stack
from .netns import Netns, poll

PORTS = (8081, 8082, 8083)
KILLS = 8
needs_am = pytest.mark.skipif(AM_BIN is None, reason="needs Alertmanager (Debian: prometheus-alertmanager)")
Flood = tuple[subprocess.Popen[str], subprocess.Popen[str]]


def _flood(ns: Netns, port: int) -> Flood:
    listener = ns.python("listener.py", "--port", str(port), "--backlog", "5", "--lifetime", "200")
    flood = ns.python("flood.py", "--port", str(port), "--count", "20", "--hold", "200")
    return listener, flood


def _release(floods: dict[int, Flood], port: int) -> None:
    for proc in floods.pop(port):
        proc.kill()
        proc.wait(timeout=10)


def _db_active(stack: Stack) -> set[tuple[str, str, str]]:
    return {(a["attribute"], a["resource"], a["severity_name"].lower()) for a in stack.connwatch("alerts")["alerts"]}


def _ports_active(stack: Stack) -> set[str]:
    """Resources of the per-port alerts (host-wide ones, e.g. ListenOverflows, come and go with the SYN retries)."""
    return {r for _, r, _ in _db_active(stack) if r != "TCP(host)"}


def _am_active(stack: Stack) -> set[tuple[str, str, str]]:
    return {(a["labels"]["alertname"], a["labels"]["resource"], a["labels"]["connwatch_severity"])
            for a in stack.am_alerts(instance=INSTANCE)}


@needs_am
def test_repeated_kill_9_leaves_alertmanager_equal_to_the_database(ns: Netns, tmp_path: Path) -> None:
    seed = int(os.environ.get("CONNWATCH_CRASH_SEED", time.time_ns() % 2**32))
    print(f"CONNWATCH_CRASH_SEED={seed}")
    rng = random.Random(seed)
    stack = Stack(ns, tmp_path)
    stack.start_alertmanager()
    stack.start_sink()
    floods = {port: _flood(ns, port) for port in PORTS}
    # A long re-send interval: an alert left behind in Alertmanager stays there for 4 x 60 s unless
    # the agent resolves it, so a difference cannot vanish by itself within the test's deadline.
    stack.start_agent("--resend-interval", "60", interval="0.5")
    assert poll(lambda: len(_ports_active(stack)) >= 2, 20), stack.log()
    for _ in range(KILLS):
        port = rng.choice(PORTS)  # churn: raise or clear the alerts of one port
        if port in floods:
            _release(floods, port)
        else:
            floods[port] = _flood(ns, port)
        time.sleep(rng.uniform(0.2, 3.0))  # a random moment in sampling and delivery, on purpose
        stack.kill_agent()
        stack.start_agent("--resend-interval", "60", interval="0.5")
    # Converge with two ports flooded and the third released.
    for port in PORTS[:2]:
        if port not in floods:
            floods[port] = _flood(ns, port)
    if PORTS[2] in floods:
        _release(floods, PORTS[2])
    both = {f"TCP({p})" for p in PORTS[:2]}
    assert poll(lambda: _ports_active(stack) == both, 30, 0.3), _db_active(stack)
    assert poll(lambda: _am_active(stack) == _db_active(stack), 30, 0.3), _differ(stack, seed)
    assert any(a["state"] == "cleared" for a in stack.connwatch("alerts", "--all")["alerts"])
    _check_webhook_keys(stack)
    # The last crash loses the database; meanwhile the second port's trouble ends.
    stack.kill_agent()
    _release(floods, PORTS[1])
    shutil.rmtree(stack.state)
    stack.start_agent("--resend-interval", "60", interval="0.5")
    assert poll(lambda: _ports_active(stack) == {f"TCP({PORTS[0]})"}, 30, 0.3)
    assert poll(lambda: _am_active(stack) == _db_active(stack), 30, 0.3), _differ(stack, seed)
    assert re.search(r"resolved [1-9]\d* alert\(s\) it held active that the database does not", stack.log())


def _differ(stack: Stack, seed: int) -> str:
    return (f"seed {seed}: Alertmanager {sorted(_am_active(stack))} != database {sorted(_db_active(stack))}\n"
            + stack.log()[-3000:])


def _check_webhook_keys(stack: Stack) -> None:
    """At-least-once with a stable key: repeats are allowed, but a key always names one notification,
    and every active alert was announced and every announced cleared one resolved."""
    def told() -> dict[str, set[tuple[str, int, str]]]:
        named: dict[str, set[tuple[str, int, str]]] = defaultdict(set)
        for line in (json.loads(x) for x in stack.sink_file.read_text().splitlines() if x):
            body = line["body"]
            assert line["key"] == body["notification_id"]
            named[line["key"]].add((body["event"], body["alert"]["id"], body["alert"]["created_at"]))
        return named

    def complete() -> bool:
        events = {(e, i) for vs in told().values() for e, i, _ in vs}
        alerts = stack.connwatch("alerts", "--all")["alerts"]
        fired = {i for e, i in events if e == "firing"}
        return ({("firing", a["id"]) for a in alerts if a["state"] == "active"} <= events
                and {("resolved", a["id"]) for a in alerts if a["state"] == "cleared" and a["id"] in fired} <= events)

    assert poll(complete, 20, 0.3), told()
    assert all(len(v) == 1 for v in told().values())
