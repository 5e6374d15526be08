"""systemd: sd_notify readiness and watchdog over a real datagram socket, journald priority prefixes, the
config file every command finds at /etc/connwatch/connwatch.toml, and the unit checked by systemd-analyze."""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

import connwatch.cli
from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.agent.systemd import JournalFormatter, journal_stderr, notify, watchdog_seconds
from connwatch.cli import COMMANDS, discover_config, main
from connwatch.clock import SystemClock
from connwatch.rules.config import load_config

UNIT = Path(__file__).parents[2] / "contrib" / "connwatch.service"


def _receiver(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    return sock


def test_notify_sends_one_datagram_to_the_socket_systemd_names(tmp_path: Path) -> None:
    with _receiver(tmp_path / "notify") as sock:
        assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert sock.recv(4096) == b"READY=1"
    abstract = f"@connwatch-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + abstract[1:])
        sock.settimeout(10)
        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": abstract}) and sock.recv(64) == b"WATCHDOG=1"
    assert not notify("READY=1", {}) and not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_process() -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_seconds({}, 42) is None and watchdog_seconds({"WATCHDOG_USEC": "0"}, 42) is None


def test_agent_says_ready_pings_the_watchdog_and_says_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    path = tmp_path / "notify"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    agent = Agent(AgentOptions(state_dir=tmp_path / "state", listen_port=0, interval=3600, listener_interval=0.05),
                  load_config(None), SystemClock())
    got: list[bytes] = []
    with _receiver(path) as sock:
        runner = threading.Thread(target=agent.run)
        runner.start()
        try:
            while len([m for m in got if m == b"WATCHDOG=1"]) < 2:  # recv times out after 10 s: no hang
                got.append(sock.recv(4096))
        finally:
            agent.stopping = True
            agent.wake.set()
            runner.join(timeout=30)
        got.append(sock.recv(4096))
    assert got[0].startswith(b"READY=1\nSTATUS=sampling every 3600 s") and got[-1] == b"STOPPING=1"


def test_log_lines_carry_priorities_only_when_stderr_is_the_journal(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w") as stream:
        st = os.fstat(stream.fileno())
        assert journal_stderr({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
        assert not journal_stderr({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, stream)
        assert not journal_stderr({}, stream)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter("connwatch: %(levelname)s: %(message)s"))
    log = logging.getLogger("connwatch.test.journal")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for emit in (log.error, log.warning, log.info, log.debug):
        emit("x")
    assert out.getvalue().splitlines() == ["<3>connwatch: ERROR: x", "<4>connwatch: WARNING: x",
                                           "<6>connwatch: INFO: x", "<7>connwatch: DEBUG: x"]


def test_every_command_with_rules_reads_the_default_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    etc = tmp_path / "etc" / "connwatch" / "connwatch.toml"
    etc.parent.mkdir(parents=True)
    etc.write_text('[[rules]]\nattribute = "BacklogRejectsByPort"\nport = 1414\nhigh = 7\nseverity = 2\n')
    assert discover_config({}, str(etc)) == str(etc)
    assert discover_config({}, str(tmp_path / "absent.toml")) is None
    assert discover_config({"CONNWATCH_CONFIG": "/x.toml"}, str(etc)) == "/x.toml"
    assert discover_config({"CONNWATCH_CONFIG": ""}, str(etc)) is None  # explicitly none
    monkeypatch.delenv("CONNWATCH_CONFIG")
    monkeypatch.setattr(connwatch.cli, "DEFAULT_CONFIG", str(etc))
    assert main(["rules", "--format", "json"]) == 0
    assert '"port": 1414' in capsys.readouterr().out
    with_config = []
    for name in COMMANDS:
        parser = argparse.ArgumentParser()
        importlib.import_module(f"connwatch.commands.{name}").add_arguments(parser)
        if "--config" in parser._option_string_actions:
            with_config.append(name)
    assert {"check", "destinations", "run", "rules", "sources", "analyze"} <= set(with_config)  # all via main()


SYSTEMD_ANALYZE = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


@SYSTEMD_ANALYZE
def test_unit_verifies_and_its_exposure_stays_low() -> None:
    unit = UNIT.read_text()
    assert "Type=notify" in unit and re.search(r"^WatchdogSec=\d+s$", unit, re.M) and "NotifyAccess=main" in unit
    done = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    problems = [x for x in done.stderr.splitlines() if "is not executable" not in x and x.strip()]
    assert not problems, problems  # the binary's path depends on the install (README: pip, pipx)
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True,
                          text=True, timeout=60)
    score = re.search(r"Overall exposure level for connwatch.service: ([0-9.]+)", done.stdout)
    assert score is not None, done.stdout + done.stderr
    assert float(score[1]) <= 2.5  # README: 2.2 OK
