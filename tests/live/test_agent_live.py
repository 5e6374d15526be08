"""The agent for real: a flooded listener in a namespace -> Alertmanager, Prometheus, a webhook.

Everything (agent, Alertmanager, Prometheus, listener, flood) runs in the test's namespace, on its
loopback. Alertmanager and Prometheus come from the Debian packages prometheus-alertmanager and
prometheus; without them these tests skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .agentstack import AM_BIN, INSTANCE, PROM_BIN, Stack
from .netns import Netns, poll

HOT = 8080
needs_am = pytest.mark.skipif(AM_BIN is None, reason="needs Alertmanager (Debian: prometheus-alertmanager)")
needs_prom = pytest.mark.skipif(PROM_BIN is None, reason="needs Prometheus (Debian: prometheus)")


def _flood(ns: Netns) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    listener = ns.python("listener.py", "--port", str(HOT), "--backlog", "5", "--lifetime", "150")
    flood = ns.python("flood.py", "--port", str(HOT), "--count", "40", "--hold", "150")
    assert poll(lambda: ns.ss_drops(HOT) > 0, 10), "the full queue never dropped a SYN"
    return listener, flood


def _rules(ns: Netns) -> str:
    done = ns.connwatch("rules", "--format", "prometheus", "--interval", "1", "--window", "10s")
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_am
@needs_prom
def test_flood_reaches_alertmanager_and_prometheus_rules_fire(ns: Netns, tmp_path: Path) -> None:
    stack = Stack(ns, tmp_path)
    stack.start_alertmanager()
    rules = _rules(ns)
    (tmp_path / "check.yml").write_text(rules)
    checked = subprocess.run(["promtool", "check", "rules", str(tmp_path / "check.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    stack.start_agent(webhook=False)
    stack.start_prometheus(rules)
    _flood(ns)
    assert poll(lambda: stack.am_alerts("BacklogRejectsByPort", instance=INSTANCE, port=str(HOT)), 30, 0.5), \
        stack.log()
    [alert] = stack.am_alerts("BacklogRejectsByPort", instance=INSTANCE, port=str(HOT))
    assert alert["labels"]["connwatch_severity"] in ("medium", "high") and alert["labels"]["resource"] == f"TCP({HOT})"
    level = alert["labels"]["connwatch_severity"]
    assert alert["labels"]["severity"] == {"medium": "warning", "high": "critical"}[level]
    level = level.capitalize()  # the summary says the alert's own severity
    assert alert["annotations"]["summary"].startswith(f"TCP({HOT}) BacklogRejectsByPort {level}, ")
    assert alert["generatorURL"].startswith(f"connwatch://{INSTANCE}/alerts/")
    assert "backlog of 5" in alert["annotations"]["explanation"]
    assert alert["status"]["state"] == "active"
    # One problem, one alert: the full queue (6 of 5: 120 % > 100 %) makes the rejects alert High.
    assert not stack.am_alerts("AcceptQueueFill", instance=INSTANCE, port=str(HOT))
    assert poll(lambda: [a for a in stack.am_alerts("BacklogRejectsByPort", instance=INSTANCE, port=str(HOT))
                         if a["labels"]["connwatch_severity"] == "high"], 20, 0.5)
    # Prometheus scrapes the agent and the generated rules fire on the same flood.
    assert poll(lambda: any(a["state"] == "firing" and a["labels"].get("port") == str(HOT)
                            for a in stack.prom_alerts("BacklogRejectsByPort")), 40, 0.5), stack.read("prometheus.log")
    assert poll(lambda: any(a["state"] == "firing" and a["labels"]["connwatch_severity"] == "high"
                            for a in stack.prom_alerts("BacklogRejectsByPort")), 20, 0.5)
    assert not [a for a in stack.prom_alerts("AcceptQueueFill") if a["state"] == "firing"]  # folded, as the agent
    targets = stack.get_json("http://127.0.0.1:19090/api/v1/targets")
    assert [t["health"] for t in targets["data"]["activeTargets"]] == ["up"]
    # ...and Prometheus forwards them to the same Alertmanager, where the agent's own alert inhibits them
    # (the inhibit rules the generated rules print): one active alert for one problem.
    from_rules = {"port": str(HOT), "connwatch_origin": "prometheus"}
    assert poll(lambda: [a for a in stack.am_alerts("BacklogRejectsByPort", **from_rules)
                         if a["status"]["state"] == "suppressed"], 30, 0.5)
    assert len([a for a in stack.am_alerts("BacklogRejectsByPort", port=str(HOT))
                if a["status"]["state"] == "active"]) == 1


def _events(stack: Stack) -> list[tuple[str, int]]:
    return [(e["event"], e["alert"]["id"]) for e in stack.sink_events()]


def _unique_events(stack: Stack) -> list[tuple[str, int]]:
    """Events once per Idempotency-Key (a repeat must carry the key of the notification it repeats)."""
    by_key = {e["notification_id"]: (e["event"], e["alert"]["id"]) for e in stack.sink_events()}
    return list(by_key.values())


def _active_ids(stack: Stack) -> set[int]:
    return {a["id"] for a in stack.connwatch("alerts")["alerts"]}


@needs_am
def test_outage_and_kill_9_lose_nothing_and_repeat_nothing(ns: Netns, tmp_path: Path) -> None:
    stack = Stack(ns, tmp_path)
    stack.start_sink()
    stack.start_agent()  # Alertmanager is down: an outage from the start
    listener, flood = _flood(ns)
    assert poll(lambda: "alertmanager http://127.0.0.1:19093/api/v2/alerts: cannot deliver (connection refused)"
                in stack.log(), 20), stack.log()
    assert poll(lambda: ("firing", min(_active_ids(stack) or {0})) in _events(stack), 20)
    stack.start_alertmanager()  # the outage ends: the queued alert arrives
    assert poll(lambda: stack.am_alerts("BacklogRejectsByPort", instance=INSTANCE, port=str(HOT)), 20, 0.3)
    before = stack.am_alerts("BacklogRejectsByPort", instance=INSTANCE, port=str(HOT))[0]
    ids = _active_ids(stack)
    stack.kill_agent()  # kill -9 mid-way, then start again on the same state
    stack.start_agent()
    assert "delivering again after" in stack.log()  # the outage's end was logged, once
    assert poll(lambda: _samples(stack) >= 3, 20)
    after = stack.connwatch("alerts", "--all")["alerts"]
    assert {a["id"] for a in after if a["state"] == "active"} == ids  # history and active alerts intact
    [am] = stack.am_alerts("BacklogRejectsByPort", instance=INSTANCE, port=str(HOT))
    assert am["startsAt"] == before["startsAt"] and am["fingerprint"] == before["fingerprint"]
    # The flood ends (listener and clients gone): the alerts clear and are resolved everywhere.
    for proc in (flood, listener):
        proc.kill()
        proc.wait(timeout=10)
    assert poll(lambda: not _active_ids(stack), 20, 0.3)
    assert poll(lambda: not stack.am_alerts("BacklogRejectsByPort", instance=INSTANCE), 20, 0.3)
    # Every alert of the run (one may have been raised after `ids` was read) fired and resolved. The
    # contract is at-least-once: a kill -9 between a delivery and its bookkeeping may repeat one
    # notification, always under the same Idempotency-Key, so events are counted per key.
    every = {a["id"] for a in stack.connwatch("alerts", "--all")["alerts"]} | ids
    assert poll(lambda: Counter(e for e, _ in _unique_events(stack))["resolved"] == len(every), 20, 0.3), \
        _events(stack)
    events = _unique_events(stack)
    assert Counter(events) == Counter({**{("firing", i): 1 for i in every}, **{("resolved", i): 1 for i in every}})
    assert len(stack.sink_peers()) <= 2  # one kept-alive connection per agent run, not one per event


def _samples(stack: Stack) -> float:
    for line in stack.get(stack.metrics_url).splitlines():
        if line.startswith('connwatch_samples_total{kind="full"}'):
            return float(line.split()[-1])
    return 0.0


def _metric(stack: Stack, name: str) -> float | None:
    for line in stack.get(stack.metrics_url).splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return None


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def _stop_and_unmount(stack: Stack) -> None:
    """End the agent (by PID) before lazily unmounting its tmpfs state dir."""
    if stack.agent is not None and stack.agent.poll() is None:
        stack.agent.kill()
        stack.agent.wait(timeout=10)
    subprocess.run(["umount", "-l", str(stack.state)], capture_output=True, timeout=30)


def test_read_only_state_bad_reload_and_unreachable_urls(ns: Netns, tmp_path: Path) -> None:
    stack = Stack(ns, tmp_path)
    stack.state.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "cwtest-state", str(stack.state))
    try:
        _mount("-o", "remount,ro", str(stack.state))
        config = tmp_path / "rules.toml"
        config.write_text("[settings]\nclear_after = 2\n")
        agent = stack.start_agent("--config", str(config), "--webhook", "http://127.0.0.1:9/nobody")
        _flood(ns)
        assert poll(lambda: "read-only file system" in stack.log(), 10), stack.log()
        assert _metric(stack, "connwatch_state_up") == 0
        config.write_text("[settings]\nclear_after = 0\n")
        os.kill(agent.pid, signal.SIGHUP)  # `ip netns exec` execs: this pid is the agent
        assert poll(lambda: "config reload refused" in stack.log(), 10), stack.log()
        samples = _samples(stack)
        assert poll(lambda: _samples(stack) >= samples + 2, 10)  # still sampling, still serving
        # The disk comes back, as the agent sees it (`ip netns exec` gave it its own mount namespace).
        subprocess.run(["nsenter", "-t", str(agent.pid), "-m", "mount", "-o", "remount,rw", str(stack.state)],
                       check=True, capture_output=True, timeout=30)
        assert poll(lambda: _metric(stack, "connwatch_state_up") == 1, 10), stack.log()
        assert poll(lambda: _active_ids(stack), 10)  # the flood's alerts are recorded now
        assert poll(lambda: "http://127.0.0.1:9/nobody: cannot deliver (connection refused)" in stack.log(), 15)
        assert agent.poll() is None
    finally:
        _stop_and_unmount(stack)
    log = stack.log()
    assert log.count("read-only file system") == 1 and "usable again" in log and "Traceback" not in log
    [refused] = [x for x in log.splitlines() if "config reload refused" in x]
    assert "clear_after" in refused and "keeping the" in refused



def _fill(directory: Path) -> Path:
    """Write zeros into `directory` until its file system is full (bounded by the tmpfs size)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for _ in range(64 * 1024):  # at most 64 MiB, far above the tmpfs size
            os.write(fd, b"\0" * 1024)
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)
    return filler


def test_full_disk_keeps_sampling_and_recovers(ns: Netns, tmp_path: Path) -> None:
    stack = Stack(ns, tmp_path)
    stack.state.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m,mode=0700", "cwtest-full", str(stack.state))
    try:
        stack.start_agent(alertmanager=False, webhook=False)
        assert poll(lambda: (stack.state / "connwatch.db").exists() and _samples(stack) >= 2, 10)
        filler = _fill(stack.state)
        _flood(ns)  # alerts to write now, on a full disk
        assert poll(lambda: "disk is full" in stack.log() or "no space left" in stack.log(), 15), stack.log()
        assert _metric(stack, "connwatch_state_up") == 0
        samples = _samples(stack)
        assert poll(lambda: _samples(stack) >= samples + 2, 10)  # sampling and serving go on
        assert _metric(stack, "connwatch_alert_active") == 1  # judged without the store meanwhile
        filler.unlink()  # space again
        assert poll(lambda: _metric(stack, "connwatch_state_up") == 1, 10), stack.log()
        assert poll(lambda: _active_ids(stack), 10)
    finally:
        _stop_and_unmount(stack)
    log = stack.log()
    errors = [x for x in log.splitlines() if "ERROR" in x]
    assert len(errors) == 1 and "usable again" in log and "Traceback" not in log, log


@needs_am
def test_a_severity_change_leaves_one_alert_in_alertmanager(ns: Netns, tmp_path: Path) -> None:
    """Alertmanager keys an alert by its labels, severity among them: when connwatch raises the severity of
    an alert (here by a rules reload), the old label set must end at once, not linger until its endsAt."""
    config = tmp_path / "rules.toml"
    rule = ('[settings]\nreplace_defaults = true\n[[rules]]\nattribute = "BacklogRejectsByPort"\nhigh = 0\n'
            "severity = {}\n")
    config.write_text(rule.format(3))
    stack = Stack(ns, tmp_path)
    stack.start_alertmanager()
    agent = stack.start_agent("--config", str(config), "--resend-interval", "60", webhook=False)
    _flood(ns)

    def severities() -> list[str]:
        return sorted(a["labels"]["connwatch_severity"] for a in stack.am_alerts("BacklogRejectsByPort",
                                                                                 instance=INSTANCE, port=str(HOT)))

    assert poll(lambda: severities() == ["medium"], 30, 0.3), stack.log()
    config.write_text(rule.format(2))
    os.kill(agent.pid, signal.SIGHUP)
    assert poll(lambda: severities() == ["high"], 20, 0.3), (severities(), stack.log())
    [alert] = stack.connwatch("alerts")["alerts"]
    assert alert["severity"] == 2 and alert["occurrences"] >= 2  # one connwatch alert, updated, not a new one
