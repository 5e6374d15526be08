"""A bad config file is refused in one line, never a crash or a hang (issue 14.1): by `check`
(exit 3) and by the agent's reload (old rules kept, agent alive)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from connwatch.errors import ConfigError
from connwatch.rules.configfile import MAX_CONFIG_BYTES
from connwatch.rules.spec import load_rules

from .test_agent import GOOD, PROC, _agent, _free_port, _get, _wait_for


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _bytes(data: bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        _clear(path)
        path.write_bytes(data)
    return make


def _dev_zero(path: Path) -> None:
    _clear(path)
    path.symlink_to("/dev/zero")


def _directory(path: Path) -> None:
    _clear(path)
    path.mkdir()


def _fifo(path: Path) -> None:
    _clear(path)
    os.mkfifo(path)


# (name, maker of the bad file at a path, what the one line says after "PATH")
BAD: list[tuple[str, Callable[[Path], None], str]] = [
    ("byte-0xff", _bytes(GOOD.encode().replace(b"AcceptQueueFill", b"Accept\xffQueueFill")),
     ":2: config is not UTF-8 text (byte 0xff)"),
    ("5000-deep-array", _bytes(b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n"),
     ": invalid TOML: arrays or tables nested too deeply"),
    ("dev-zero", _dev_zero, ": cannot read config: a character device, not a regular file"),
    ("directory", _directory, ": cannot read config: a directory, not a regular file"),
    ("fifo", _fifo, ": cannot read config: a FIFO, not a regular file"),
    ("over-1-MiB", _bytes(b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)), ": cannot read config: larger than 1024 KiB"),
    ("5000-digit-integer", _bytes(b"x = " + b"9" * 5000 + b"\n"),
     ": invalid TOML: Exceeds the limit (4300 digits) for integer string conversion"),
]
IDS = [name for name, _, _ in BAD]


def _within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run call in a thread; fail the test if it does not return in time (a hang, e.g. a FIFO)."""
    caught: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            caught.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    return caught[0] if caught else None


@pytest.mark.parametrize(("name", "make", "says"), BAD, ids=IDS)
def test_load_rules_refuses_in_one_line(name: str, make: Callable[[Path], None], says: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    make(path)
    exc = _within(10, lambda: load_rules(path))
    assert isinstance(exc, ConfigError), repr(exc)
    assert str(exc).startswith(f"{path}{says}") and "\n" not in str(exc)


@pytest.mark.parametrize(("name", "make", "says"), BAD, ids=IDS)
def test_check_with_a_bad_config_exits_3_in_one_line(name: str, make: Callable[[Path], None], says: str,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    make(path)
    done = subprocess.run([sys.executable, "-m", "connwatch", "check", "--config", str(path), "--proc-root", PROC,
                           "--no-netlink", "--interval", "0.1", "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.startswith(f"connwatch: {path}{says}") and done.stderr.count("\n") == 1, done.stderr


def test_agent_reload_refuses_every_bad_file_and_keeps_its_rules(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD)
    agent = _agent(tmp_path / "state", path)
    before = agent.rules
    assert any(r.port == 8080 and r.high == 50 for r in before)
    for count, (_, make, says) in enumerate(BAD, 1):
        make(path)
        caplog.clear()
        with caplog.at_level(logging.INFO, "connwatch.agent"):
            assert _within(10, agent.reload) is None
        assert agent.rules == before and agent.reload_failures == count and not agent.config_ok
        [line] = [r.getMessage() for r in caplog.records]
        assert line.startswith(f"config reload refused: {path}{says}") and "\n" not in line
        assert line.endswith(f"keeping the {len(before)} rules in force")
    _clear(path)
    path.write_text(GOOD.replace("50", "60"))
    agent.reload()
    assert agent.config_ok and any(r.high == 60 for r in agent.rules)


def test_sighup_with_bad_files_leaves_the_agent_running_on_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = subprocess.Popen(
        [sys.executable, "-m", "connwatch", "run", "--proc-root", PROC, "--no-netlink", "--interval", "0.5",
         "--listener-interval", "0.1", "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "s"),
         "--config", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: "connwatch_config_last_reload_successful 1.0" in _get(url), 20)
        for count, (_, make, _says) in enumerate(BAD, 1):
            make(path)
            os.kill(proc.pid, signal.SIGHUP)
            assert _wait_for(lambda n=count: f"connwatch_config_reload_failures_total {n}.0" in _get(url), 15)  # type: ignore[misc]
            assert proc.poll() is None
        _clear(path)
        path.write_text(GOOD)
        os.kill(proc.pid, signal.SIGHUP)
        assert _wait_for(lambda: "connwatch_config_last_reload_successful 1.0" in _get(url), 15)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    refused = [line for line in err.splitlines() if "config reload refused" in line]
    assert len(refused) == len(BAD) and "Traceback" not in err and "internal error" not in err, err
    assert err.count("config reloaded from") == 1
