"""Real kernel: sharing a port, IPv6, the /proc fallback, non-root, and no TCP opened by sampling."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from .netns import Netns, poll
from .unprivileged import world_readable_site

PORT = 9100


def _reuseport_listeners(ns: Netns) -> None:
    code = (
        "import socket, time\n"
        "socks = []\n"
        "for fam, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):\n"
        "    s = socket.socket(fam, socket.SOCK_STREAM)\n"
        "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n"
        f"    s.bind((host, {PORT})); s.listen(3); socks.append(s)\n"
        "print('READY', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = ns.popen([sys.executable, "-c", code])
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")


def test_listeners_sharing_a_port_are_judged_together(ns: Netns, tmp_path: Path) -> None:
    _reuseport_listeners(ns)
    ns.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "60")
    ns.python("flood.py", "--host", "::1", "--port", str(PORT), "--count", "20", "--hold", "60")
    assert poll(lambda: ns.ss_drops(PORT) > 0, 10)
    done = ns.connwatch("check", "--interval", "2", "--format", "json", "--state-dir", str(tmp_path))
    report = json.loads(done.stdout)
    group = [x for x in report["listeners"] if x["port"] == PORT]
    assert len(group) == 3 and {x["family"] for x in group} == {4, 6}
    [alert] = [a for a in report["alerts"] if a["attribute"] == "BacklogRejectsByPort"]
    assert alert["value"] == sum(x["drops_delta"] for x in group)
    assert sum(1 for x in group if x["drops_delta"]) >= 2  # the v4 group and the v6 listener both dropped
    assert report["reconciliation"]["unattributed"] == 0


def test_proc_fallback_names_what_it_cannot_see(ns: Netns, tmp_path: Path) -> None:
    ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
    done = ns.connwatch("listeners", "--no-netlink", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [lst] = report["listeners"]
    assert lst["port"] == PORT and lst["backlog"] is None and lst["drops"] is None and lst["fill"] is None
    assert any("no listen backlog" in x for x in report["limitations"])
    text = ns.run([sys.executable, "-m", "connwatch", "listeners", "--no-netlink"],
                  env={**os.environ, "COLUMNS": "200"})
    assert "n/a" in text.stdout and "no listen backlog" in text.stdout


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop privileges")
def test_non_root_still_sees_listeners_and_says_what_it_cannot(ns: Netns, tmp_path: Path) -> None:
    ns.python("listener.py", "--port", str(PORT), "--backlog", "7")
    site = world_readable_site(tmp_path)
    os.chmod(tmp_path, 0o777)
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(site)}
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    done = ns.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-m",
                   "connwatch", "check", "--interval", "0.5", "--format", "json",
                   "--state-dir", str(tmp_path / "state")], check=False, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [lst] = [x for x in report["listeners"] if x["port"] == PORT]
    assert lst["backlog"] == 7 and lst["drops"] == 0  # sock_diag needs no privilege
    assert lst["owner"] is None
    assert any("could not be inspected" in x and "run as root" in x for x in report["limitations"])


def test_sampling_opens_no_tcp_connection(ns: Netns, tmp_path: Path) -> None:
    ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
    before = ns.nstat("TcpActiveOpens")
    done = ns.connwatch("check", "--interval", "0.5", "--format", "json", "--state-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    snap = ns.connwatch("snapshot")
    assert json.loads(snap.stdout)["format"] == "connwatch-snapshot"
    assert ns.nstat("TcpActiveOpens") == before == 0
