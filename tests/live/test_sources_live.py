"""Real kernel: connections per source, half-open per source, ports per source, the nft rule, many sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .netns import Netns, poll

PORT, HALF, CROWD = 2525, 2526, 2527
SCAN_PORTS = list(range(3000, 3012))


def _check(ns: Netns, state: Path, config: str | None = None) -> tuple[int, dict[str, Any]]:
    args = ["check", "--interval", "1", "--format", "json", "--state-dir", str(state)]
    if config is not None:
        path = state.with_suffix(".toml")
        path.write_text(config)
        args += ["--config", str(path)]
    done = ns.connwatch(*args)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _alerts(report: dict[str, Any], attribute: str) -> list[dict[str, Any]]:
    return [a for a in report["alerts"] if a["attribute"] == attribute]


def _count(ns: Netns, state: str, port: int) -> int:
    """Server-side sockets of `port` in `state`, as `ss` sees them."""
    out = ns.run(["ss", "-Htn", "state", state, f"( sport = :{port} )"]).stdout
    return len(out.splitlines())


def _need_nft() -> str:
    """The nft binary; installed with apt-get when absent (as .ci/run does)."""
    found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if found is None and shutil.which("apt-get"):
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        for cmd in (["apt-get", "install", "-y", "-qq", "nftables"], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "nftables"]):
            subprocess.run(cmd, capture_output=True, timeout=300, env=env, check=False)
            found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
            if found:
                break
    if found is None:
        pytest.fail("nftables (nft) is missing and could not be installed")
    return found


def test_connections_per_source_default_per_port_and_unlimited(ns: Netns, tmp_path: Path) -> None:
    ns.python("listener.py", "--port", str(PORT), "--backlog", "512", "--accept", "--lifetime", "120")
    ns.python("flood.py", "--port", str(PORT), "--count", "150", "--source", "127.0.0.2", "--hold", "120")
    ns.python("flood.py", "--port", str(PORT), "--count", "20", "--source", "127.0.0.3", "--hold", "120")
    assert poll(lambda: _count(ns, "established", PORT) == 170, 20), "170 connections never established"
    code, report = _check(ns, tmp_path / "default")
    [alert] = _alerts(report, "ConnectionsPerSource")
    assert (alert["source"], alert["port"], alert["value"], alert["limit"]) == ("127.0.0.2", PORT, 150.0, 100.0)
    assert code == 1 and alert["severity"] == 3  # Medium -> WARNING
    assert alert["description"] == f"TCP({PORT}) 127.0.0.2 ConnectionsPerSource High, 150 conns > 100 conns"
    assert "is this host itself" in alert["explanation"] and "ct count over 100" in alert["action"]
    assert f"connwatch sources --port {PORT} --nft --limit 100" in alert["action"] and "add rule" not in alert["action"]
    assert "python" in alert["owner"] or "listener" in alert["owner"]
    light = [m for m in report["measurements"] if m["attribute"] == "ConnectionsPerSource"
             and m["source"] == "127.0.0.3"]
    assert light and light[0]["value"] == 20 and not light[0]["breached"]

    per_port = f'[[rules]]\nattribute = "ConnectionsPerSource"\nport = {PORT}\nhigh = 200\n'
    code, report = _check(ns, tmp_path / "per-port", per_port)
    assert not _alerts(report, "ConnectionsPerSource") and code == 0
    assert {m["limit"] for m in report["measurements"] if m["attribute"] == "ConnectionsPerSource"} == {200.0}
    for unlimited in ('[sources]\nlimit = "unlimited"\n',
                      f'[[rules]]\nattribute = "ConnectionsPerSource"\nport = {PORT}\nhigh = "unlimited"\n'):
        code, report = _check(ns, tmp_path / f"unlimited{len(unlimited)}", unlimited)
        assert code == 0 and not [m for m in report["measurements"] if m["attribute"] == "ConnectionsPerSource"]

    table = ns.connwatch("sources", "--port", str(PORT), "--format", "json")
    assert table.returncode == 0, table.stderr
    rows = json.loads(table.stdout)["sources"]
    assert [(r["source"], r["value"], r["limit"]) for r in rows] == [("127.0.0.2", 150, 100.0),
                                                                    ("127.0.0.3", 20, 100.0)]


CLIENT = """
import json, socket, sys
port, src, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
held, results = [], []
for _ in range(n):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        held.append(s)
        results.append("ok")
    except OSError as exc:
        results.append(type(exc).__name__)
print(json.dumps(results), flush=True)
sys.stdin.readline()
"""


def _connect(ns: Netns, source: str, count: int) -> list[str]:
    """Open `count` blocking connections from `source`; they stay open until the test ends."""
    proc = ns.popen([sys.executable, "-c", CLIENT, str(PORT), source, str(count)], stdin=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    result: list[str] = json.loads(line)
    return result


def test_generated_nft_rule_refuses_the_101st_connection(ns: Netns, tmp_path: Path) -> None:
    nft = _need_nft()
    ns.python("listener.py", "--port", str(PORT), "--backlog", "512", "--accept", "--lifetime", "120")
    made = ns.connwatch("sources", "--port", str(PORT), "--nft")  # the default limit: 100 per source
    assert made.returncode == 0, made.stderr
    rule = tmp_path / "limit.nft"
    rule.write_text(made.stdout)
    for _ in range(2):  # applying twice is harmless (chain and sets are flushed first)
        applied = ns.run([nft, "-f", str(rule)], check=False)
        assert applied.returncode == 0, applied.stderr
    results = _connect(ns, "127.0.0.2", 101)
    assert results[:100] == ["ok"] * 100
    assert results[100] == "ConnectionRefusedError"  # the 101st: TCP reset from the rule
    assert _connect(ns, "127.0.0.3", 3) == ["ok"] * 3  # another source is admitted
    listed = ns.run([nft, "list", "chain", "inet", "connwatch", f"limit_p{PORT}"]).stdout
    assert "ct count over 100" in listed and "counter packets 1 " in listed


def test_half_open_per_source(ns: Netns, tmp_path: Path) -> None:
    nft = _need_nft()
    drop_acks = tmp_path / "drop-acks.nft"
    drop_acks.write_text("table inet test_drop {\n  chain input {\n    type filter hook input priority -10;\n"
                         f"    tcp dport {HALF} tcp flags & (syn | ack) == ack drop\n  }}\n}}\n")
    ns.run([nft, "-f", str(drop_acks)])
    ns.python("listener.py", "--port", str(HALF), "--backlog", "128", "--lifetime", "120")
    ns.python("flood.py", "--port", str(HALF), "--count", "20", "--source", "127.0.0.4", "--hold", "120")
    assert poll(lambda: _count(ns, "syn-recv", HALF) == 20, 10), "the handshakes never stayed half-open"
    code, report = _check(ns, tmp_path / "half", "[sources]\nhalf_open_limit = 10\n")
    [alert] = _alerts(report, "HalfOpenPerSource")
    assert (alert["source"], alert["port"], alert["value"], alert["limit"]) == ("127.0.0.4", HALF, 20.0, 10.0)
    assert "tcp_syncookies" in alert["explanation"] and code == 1
    assert not _alerts(report, "ConnectionsPerSource")  # half-open connections are not held connections


SCANNER = """
import socket, sys, time
socks = []
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.bind(("127.0.0.6", 0))
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    socks.append(s)
print("READY", flush=True)
time.sleep(120)
"""


def test_ports_per_source_sees_a_scan(ns: Netns, tmp_path: Path) -> None:
    ns.python("multi_listener.py", "--ports", *map(str, SCAN_PORTS))
    proc = ns.popen([sys.executable, "-c", SCANNER, *map(str, SCAN_PORTS)])
    assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    _, report = _check(ns, tmp_path / "scan")
    [alert] = _alerts(report, "PortsPerSource")
    assert (alert["source"], alert["value"], alert["limit"]) == ("127.0.0.6", 12.0, 10.0)
    assert alert["detail"]["ports"] == SCAN_PORTS and "scan" in alert["action"]


def test_many_sources_output_is_capped(ns: Netns, tmp_path: Path) -> None:
    sources, per = 5200, 2  # 10,400 client sockets in two processes, 10,400 accepted in the listener
    ns.python("listener.py", "--port", str(CROWD), "--backlog", "4096", "--accept", "--lifetime", "150")
    for first in (0, sources // 2):
        ns.python("many_sources.py", "--port", str(CROWD), "--first", str(first), "--sources",
                  str(sources // 2), "--per-source", str(per), "--hold", "150")
    assert poll(lambda: _count(ns, "established", CROWD) == sources * per, 60, 0.5)
    _, report = _check(ns, tmp_path / "crowd", "[sources]\nlimit = 1\n")
    crowd = [a for a in _alerts(report, "ConnectionsPerSource") if a["port"] == CROWD]
    assert len(crowd) == 10  # max_alerts_per_port, not one per source
    assert f"{sources} sources are over the limit on this port; connwatch alerts on the 10 heaviest only" \
        in crowd[0]["explanation"]
    listed = ns.connwatch("sources", "--port", str(CROWD), "--format", "json", timeout=60)
    data = json.loads(listed.stdout)
    assert len(data["sources"]) == 10 and data["ports"][0]["sources"] == sources
    assert data["ports"][0]["connections"] == sources * per and data["sample_ms"] < 5000
