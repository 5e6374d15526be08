"""The agent without a kernel: a captured /proc, real signals, a real HTTP server on loopback."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.agent.owned import OWNER_REFRESH_S
from connwatch.clock import Clock, SystemClock
from connwatch.model import Listener, Snapshot
from connwatch.rules.config import load_config

PROC = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")
GOOD = '[[rules]]\nattribute = "AcceptQueueFill"\nport = 8080\nhigh = 50\nseverity = 2\n'


def _agent(state_dir: Path, config: Path | None = None) -> Agent:
    opts = AgentOptions(state_dir=state_dir, listen_port=0, proc_root=PROC, use_netlink=False,
                        config=str(config) if config else None)
    return Agent(opts, load_config(opts.config), SystemClock())


def _metric(agent: Agent, name: str) -> float | None:
    value = agent.registry.get_sample_value(name)
    return value


def test_bad_reload_is_refused_in_one_line_and_old_rules_kept(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(GOOD)
    agent = _agent(tmp_path / "state", config)
    before = agent.rules
    config.write_text('[[rules]]\nattribute = "NoSuchThing"\nhigh = 1\n')
    with caplog.at_level(logging.INFO, "connwatch.agent"):
        agent.reload()
    assert agent.rules == before and agent.reload_failures == 1
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("config reload refused: ") and "unknown attribute 'NoSuchThing'" in line
    assert "keeping the" in line and "\n" not in line
    agent.full_sample()
    assert _metric(agent, "connwatch_config_last_reload_successful") == 0
    config.write_text(GOOD.replace("50", "60"))
    agent.reload()
    assert agent.config_ok and any(r.high == 60 for r in agent.rules)


def test_unusable_state_dir_keeps_sampling_logs_once_and_recovers(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    agent = _agent(state)
    with caplog.at_level(logging.INFO, "connwatch.agent"):
        for _ in range(3):
            agent.full_sample()
            agent.listener_poll()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(state) in errors[0] and "sampling and /metrics go on" in errors[0]
    assert _metric(agent, "connwatch_state_up") == 0 and _metric(agent, "connwatch_samples_total") is None
    assert agent.registry.get_sample_value("connwatch_samples_total", {"kind": "full"}) == 3
    state.unlink()
    with caplog.at_level(logging.INFO, "connwatch.agent"):
        agent.full_sample()
    assert _metric(agent, "connwatch_state_up") == 1 and (state / "connwatch.db").exists()
    assert "usable again" in caplog.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


# A sample line of the family (labels, then a value), not its HELP/TYPE lines: those are served from
# start-up, before the first sample, so waiting for the bare name returned too early (flaky on 3.12/3.13).
QUEUE_SAMPLE = re.compile(r'^connwatch_listener_queue\{[^}]*port="\d+"[^}]*\} \d', re.M)


def _wait_for(check: Callable[[], object], deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if check():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def test_process_serves_metrics_reloads_on_hup_and_stops_on_term(tmp_path: Path) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(GOOD)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = subprocess.Popen(
        [sys.executable, "-m", "connwatch", "run", "--proc-root", PROC, "--no-netlink", "--interval", "0.5",
         "--listener-interval", "0.1", "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "s"),
         "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: QUEUE_SAMPLE.search(_get(url)), 20)
        assert _wait_for(lambda: 'connwatch_samples_total{kind="listeners"}' in _get(url), 10)
        config.write_text("this is [not toml")
        os.kill(proc.pid, signal.SIGHUP)
        assert _wait_for(lambda: "connwatch_config_last_reload_successful 0.0" in _get(url), 10)
        assert proc.poll() is None  # still running on the old rules
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert err.count("config reload refused") == 1 and "invalid TOML" in err
    assert err.rstrip().endswith("connwatch: INFO: stopped") and "Traceback" not in err


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    for args, words in ((["--interval", "0"], "--interval must be between"),
                        (["--listen", "nowhere"], "--listen must be HOST:PORT"),
                        (["--alertmanager", "ftp://x"], "--alertmanager: 'ftp://x' is not an http"),
                        (["--config", str(tmp_path / "missing.toml")], "cannot read config")):
        done = subprocess.run([sys.executable, "-m", "connwatch", "run", "--state-dir", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 3 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_a_vanishing_source_is_counted_and_the_others_go_on(tmp_path: Path) -> None:
    import shutil

    proc = tmp_path / "proc"
    shutil.copytree(PROC, proc)
    opts = AgentOptions(state_dir=tmp_path / "state", listen_port=0, proc_root=str(proc), use_netlink=False)
    agent = Agent(opts, load_config(None), SystemClock())
    agent.full_sample()
    netstat = str(proc / "net" / "netstat")
    assert agent.registry.get_sample_value("connwatch_source_up", {"source": netstat}) == 1
    (proc / "net" / "netstat").unlink()  # the source vanishes
    agent.full_sample()
    agent.full_sample()
    assert agent.registry.get_sample_value("connwatch_source_up", {"source": netstat}) == 0
    assert agent.registry.get_sample_value("connwatch_source_errors_total", {"source": netstat}) == 2
    assert agent.registry.get_sample_value("connwatch_samples_total", {"kind": "full"}) == 3
    snmp = agent.registry.get_sample_value("connwatch_kernel_counter_total", {"counter": "Tcp.ActiveOpens"})
    assert snmp is not None  # /proc/net/snmp still read and exported
    assert agent.registry.get_sample_value("connwatch_source_up", {"source": str(proc / "net" / "snmp")}) == 1


def test_a_second_agent_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    """Two agents judging into one history would clear each other's alerts and deliver twice."""
    first = subprocess.Popen([sys.executable, "-m", "connwatch", "run", "--proc-root", PROC, "--no-netlink",
                              "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (tmp_path / "agent.lock").exists():
            time.sleep(0.05)
        assert (tmp_path / "agent.lock").exists()
        second = subprocess.run([sys.executable, "-m", "connwatch", "run", "--proc-root", PROC, "--no-netlink",
                                 "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 3 and second.stderr.count("\n") == 1
        assert f"another connwatch agent (pid {first.pid})" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)
    assert first.returncode == 0


def test_the_cyclic_gc_is_paused_while_a_sample_is_taken_and_runs_again_after(tmp_path: Path) -> None:
    """A sample's tens of thousands of surviving objects triggered GC passes over the whole heap (a third
    of the CPU with 100 namespaces): full samples and listener polls run with it paused, and a failing
    sample leaves it running."""
    import gc

    agent = _agent(tmp_path / "state")
    seen: list[bool] = []
    collect, poll = agent._collect, agent.poller.poll

    def watched_collect() -> list[Snapshot]:
        seen.append(gc.isenabled())
        return collect()

    def watched_poll(clock: Clock) -> tuple[Listener, ...]:
        seen.append(gc.isenabled())
        return poll(clock)

    agent._collect = watched_collect  # type: ignore[method-assign]
    agent.poller.poll = watched_poll  # type: ignore[method-assign]
    assert gc.isenabled()
    agent.full_sample()
    agent.listener_poll()
    assert seen == [False, False] and gc.isenabled()
    def failing_poll(clock: Clock) -> tuple[Listener, ...]:
        raise OSError("gone")

    agent.poller.poll = failing_poll  # type: ignore[method-assign]
    agent._guarded(agent.listener_poll)
    assert gc.isenabled() and agent.source_errors["sample"] == 1
    agent.keeper.close()


class _Others:
    """Another namespace's listener poll (collect_netns.NetnsListenerPoller's poll()): what `answer` holds."""

    def __init__(self) -> None:
        self.answer: dict[int, tuple[Listener, ...] | None] = {}

    def poll(self) -> dict[int, tuple[Listener, ...] | None]:
        return self.answer

    def close(self) -> None:
        pass


def test_a_reused_poll_of_another_namespace_keeps_its_peaks_and_a_new_one_or_a_new_sample_counts(
        tmp_path: Path) -> None:
    agent = _agent(tmp_path / "state")
    others = _Others()
    agent.netns.others = others  # type: ignore[assignment]
    agent.full_sample()
    idle = (Listener(4, "0.0.0.0", 9000, 0, 128, 0, 77001, 0, 5),)
    queued = (Listener(4, "0.0.0.0", 9000, 7, 128, 0, 77001, 0, 5),)
    key = idle[0].identity
    others.answer = {4026532101: idle}
    agent.listener_poll()
    assert agent.peaks[key] == 0
    others.answer = {4026532101: queued}  # a fresh dump: its queue is seen
    agent.listener_poll()
    assert agent.peaks[key] == 7
    others.answer = {4026532101: idle}
    agent.listener_poll()
    others.answer = {4026532101: idle}  # the same tuple again (the poller reused its dump)
    agent.listener_poll()
    assert agent.peaks[key] == 7  # the interval's peak stands
    agent.full_sample()
    assert key not in agent.peaks
    agent.listener_poll()  # the same tuple as before the sample: counted again in the new interval
    assert agent.peaks[key] == 0
    others.answer = {4026532101: None}  # its dump failed
    agent.listener_poll()
    assert agent.peaks[key] == 0


def test_an_owner_refresh_reads_the_known_owners_first_and_a_new_listener_scans_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connwatch import collect as collect_module
    from connwatch.agent import loop
    from connwatch.clock import FakeClock
    from connwatch.model import Process
    from connwatch.record import replace

    clock = FakeClock()
    opts = AgentOptions(state_dir=tmp_path / "state", listen_port=0, proc_root=PROC, use_netlink=False)
    agent = Agent(opts, load_config(None), clock)
    base = collect_module.collect(clock, collect_module.CollectOptions(proc_root=PROC, use_netlink=False, owners=False))
    assert base.listeners
    owned = tuple(replace(x, owner=Process(pid=4000 + i, command="server")) for i, x in enumerate(base.listeners))
    snaps = [replace(base, listeners=owned)]
    asked: list[collect_module.CollectOptions] = []

    def fake_collect(_clock: Clock, o: collect_module.CollectOptions) -> Snapshot:
        asked.append(o)
        return snaps[-1]

    monkeypatch.setattr(loop, "collect", fake_collect)
    monkeypatch.setattr(agent.poller, "last", owned, raising=False)
    agent.full_sample()
    assert asked[-1].owners and asked[-1].destination_owners and asked[-1].owner_hints is None  # the first
    clock.advance(5)
    agent.full_sample()
    assert not asked[-1].owners  # nothing new: the known owners stay
    clock.advance(OWNER_REFRESH_S)
    agent.full_sample()
    hints = {x.inode: x.owner.pid for x in owned if x.owner is not None and x.inode}
    assert asked[-1].owners and asked[-1].owner_hints == hints and hints
    # destination owners (explanations of the ephemeral-port alerts) only while one of those is active
    assert asked[-1].destination_owners == any(a.attribute.startswith("EphemeralPort") for a in agent.alerts)
    agent.alerts = (SimpleNamespace(attribute="EphemeralPortUsage", key="k", severity=2),)
    clock.advance(OWNER_REFRESH_S)
    agent.full_sample()
    assert asked[-1].owner_hints == hints and asked[-1].destination_owners
    new = replace(base.listeners[0], inode=987654, cookie=1)
    snaps.append(replace(base, listeners=(*owned, new)))
    monkeypatch.setattr(agent.poller, "last", (*owned, new), raising=False)
    clock.advance(5)
    agent.full_sample()
    assert asked[-1].owners and asked[-1].destination_owners and asked[-1].owner_hints is None  # a new listener
