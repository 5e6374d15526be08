"""Lost privileges are always said (issue 14.10): as nobody, under the systemd unit's two
capabilities, and as root with every capability dropped. Real processes, real /proc, real setpriv."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from .netns import PROGS, Netns, poll
from .unprivileged import NO_CAPS, NOBODY, UNIT_CAPS, world_readable_site

PORT, OWN_PORT, METRICS = 9120, 9121, 9815
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
pytestmark = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop privileges")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(world_readable_site(tmp_path))}


def _snapshot(ns: Netns, prefix: list[str], python: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = ns.run([*prefix, python, "-m", "connwatch", "snapshot", "--format", "json"], check=False, env=env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _scrape(ns: Netns) -> str:
    code = ("import sys, urllib.request\n"
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
    return ns.run([sys.executable, "-c", code, f"http://127.0.0.1:{METRICS}/metrics"], check=False).stdout


def test_unit_capabilities_read_the_owners_fd_limit(ns: Netns, tmp_path: Path) -> None:
    # Regression: prlimit(2) needs the same uid or CAP_SYS_RESOURCE, which the unit does not grant,
    # so fd_limit was null and nothing said the "owner at its fd limit" check was gone.
    listener = ns.python("listener.py", "--port", str(PORT), "--nofile", "777")  # runs as root
    report = _snapshot(ns, ["setpriv", *NOBODY, *UNIT_CAPS], PYTHON, _env(tmp_path))
    [lst] = [x for x in report["listeners"] if x["port"] == PORT]
    assert lst["owner"]["pid"] == listener.pid
    assert lst["owner"]["fd_limit"] == 777 and lst["owner"]["open_fds"] >= 3
    assert not [n for n in report["limitations"] if "unreadable" in n or "could not be inspected" in n]


def test_root_without_capabilities_says_owners_are_unknown(ns: Netns) -> None:
    # Regression: as uid 0 without CAP_SYS_PTRACE /proc/<pid>/fd lists but its links are denied;
    # the scan skipped them silently and blamed "another PID namespace".
    ns.python("listener.py", "--port", str(PORT))  # root with every capability
    report = _snapshot(ns, ["setpriv", *NO_CAPS], sys.executable)
    [lst] = [x for x in report["listeners"] if x["port"] == PORT]
    assert lst["owner"] is None
    notes = report["limitations"]
    assert any("could not be inspected (running as uid 0 without CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE)" in n
               and "owners are unknown" in n for n in notes), notes
    assert not any("another PID namespace" in n for n in notes), notes


def test_run_as_nobody_says_once_that_owners_are_invisible(ns: Netns, tmp_path: Path) -> None:
    ns.python("listener.py", "--port", str(PORT))  # root's: invisible to nobody
    env = _env(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    agent = ns.popen(["setpriv", *NOBODY, PYTHON, "-m", "connwatch", "run", "--interval", "0.5",
                      "--listener-interval", "0.1", "--listen", f"127.0.0.1:{METRICS}", "--state-dir", str(state)],
                     env=env)
    try:
        if not poll(lambda: f'port="{PORT}"' in _scrape(ns), 30):
            agent.kill()
            raise AssertionError(agent.communicate(timeout=10)[1])
        # A listener of nobody's own makes the agent scan owners again: its owner is visible, the
        # other one's still is not, and that is not said a second time.
        own = ns.popen(["setpriv", *NOBODY, PYTHON, str(PROGS / "listener.py"), "--port", str(OWN_PORT)])
        assert own.stdout is not None and own.stdout.readline().startswith("READY")
        assert poll(lambda: f'pid="{own.pid}"' in _scrape(ns), 30)  # connwatch_listener_owner_info
        os.kill(agent.pid, signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate(timeout=10)
    assert agent.returncode == 0, err
    said = [line for line in err.splitlines() if "could not be inspected" in line]
    assert len(said) == 1, err
    assert said[0].startswith("connwatch: WARNING: cannot see everything: ")
    assert "running as uid 65534 without CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE" in said[0]
    assert "owners are unknown" in said[0] and "Traceback" not in err
