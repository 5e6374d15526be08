"""Real kernel: conntrack, TCP memory and file handles, each checked against the namespace's own files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from connwatch.attributes.hostlimits import measure
from connwatch.clock import SystemClock
from connwatch.collect import CollectOptions, collect

from .netns import Netns, poll

PORT = 8080
CT_RULES = "table inet cwt { chain out { type filter hook output priority 0; ct state new counter; }; }"


def ct_count(ns: Netns) -> int:
    return int(ns.run(["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]).stdout)


def ct_stat(ns: Netns, column: str) -> int:
    rows = ns.run(["cat", "/proc/net/stat/nf_conntrack"]).stdout.split("\n")
    at = rows[0].split().index(column)
    return sum(int(r.split()[at], 16) for r in rows[1:] if r.strip())


def with_conntrack(ns: Netns) -> None:
    """Make conntrack count in the namespace: an nft rule that uses it (skip when nft cannot)."""
    done = ns.run(["nft", CT_RULES], check=False)
    if done.returncode != 0:
        pytest.skip(f"nft could not load a ct rule (no nf_conntrack?): {done.stderr.strip()}")
    if ns.run(["test", "-e", "/proc/sys/net/netfilter/nf_conntrack_count"], check=False).returncode:
        pytest.skip("no /proc/sys/net/netfilter/nf_conntrack_count in the namespace")


def test_conntrack_usage_and_drops_match_the_namespace(ns: Netns, tmp_path: Path) -> None:
    with_conntrack(ns)
    ns.python("accept_server.py", "--port", str(PORT), "--backlog", "512")
    ns.python("arrivals.py", "--port", str(PORT), "--rate", "0", "--duration", "0", "--count", "200",
              "--hold", "60")
    assert poll(lambda: ct_count(ns) >= 200, 10), ct_count(ns)
    ns.python("arrivals.py", "--port", str(PORT), "--rate", "40", "--duration", "10", "--hold", "30", "--seed", "7")
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nattribute = "ConntrackTableUsage"\nhigh = 0\nseverity = 3\n')
    maximum = int(ns.run(["cat", "/proc/sys/net/netfilter/nf_conntrack_max"]).stdout)
    before, drops = ct_count(ns), ct_stat(ns, "drop")
    done = ns.connwatch("check", "--interval", "2", "--format", "json", "--state-dir", str(tmp_path),
                        "--config", str(rules))
    after, drops = ct_count(ns), ct_stat(ns, "drop") - drops
    report: dict[str, Any] = json.loads(done.stdout)
    [a] = [x for x in report["alerts"] if x["attribute"] == "ConntrackTableUsage"]
    d = a["detail"]
    assert d["max"] == maximum and before <= d["count"] <= after and d["count_before"] >= before
    assert a["value"] == pytest.approx(100 * d["count"] / maximum, abs=1e-3)
    # the arrivals grow the table: the forecast follows the namespace's own count
    assert 0 < d["growth_per_s"] <= (after - before) / 2 * 1.5 + 1
    assert d["seconds_to_full"] == pytest.approx((maximum - d["count"]) / d["growth_per_s"], rel=0.01)
    assert d["drop"] == drops == 0 and d["listen_overflows"] == 0
    [m] = [x for x in report["measurements"] if x["attribute"] == "ConntrackDrops"]
    assert m["value"] == 0 and not m["breached"]
    assert "nf_conntrack: table full" in a["explanation"] and "A bigger backlog will not help" in a["explanation"]
    assert "nf_conntrack_max" in a["action"]


def test_tcp_memory_is_host_wide_and_file_handles_match_file_nr(ns: Netns, tmp_path: Path) -> None:
    script = ("import json, time\nfrom connwatch.clock import SystemClock\n"
              "from connwatch.collect import CollectOptions, collect\n"
              "from connwatch.attributes.hostlimits import measure\n"
              "a = collect(SystemClock(), CollectOptions(sockets=False))\ntime.sleep(0.2)\n"
              "b = collect(SystemClock(), CollectOptions(sockets=False))\n"
              "print(json.dumps({m.attribute: m.value for m in measure(a, b)}))\n")
    file_nr = [int(x) for x in Path("/proc/sys/fs/file-nr").read_text().split()]
    inside = json.loads(ns.run([sys.executable, "-c", script]).stdout)
    file_nr2 = [int(x) for x in Path("/proc/sys/fs/file-nr").read_text().split()]
    # tcp_mem does not exist in a child namespace: TCP memory is not judged there (never a silent zero)
    assert "TcpMemoryUsage" not in inside and "TcpMemoryAborts" not in inside
    low, high = sorted((file_nr[0], file_nr2[0]))
    assert 100 * (low - 500) / file_nr[2] <= inside["FileHandleUsage"] <= 100 * (high + 500) / file_nr[2]
    # the host's own namespace sees tcp_mem: the value is sockstat TCP mem over its maximum (host-wide and
    # busy on a shared machine: bracketed by reads just before and after the two samples, +-500 pages)
    mem = [int(x) for x in Path("/proc/sys/net/ipv4/tcp_mem").read_text().split()]
    before = _pages()
    opts = CollectOptions(sockets=False, owners=False)
    first = collect(SystemClock(), opts)
    host = {m.attribute: m for m in measure(first, collect(SystemClock(), opts))}
    after = _pages()
    value = host["TcpMemoryUsage"].value
    assert 100 * (min(before, after) - 500) / mem[2] <= value <= 100 * (max(before, after) + 500) / mem[2]
    assert host["TcpMemoryUsage"].facts.tcp_mem_max == mem[2] and host["TcpMemoryAborts"].value >= 0


def _pages() -> int:
    found = re.search(r"TCP: .* mem (\d+)", Path("/proc/net/sockstat").read_text())
    assert found is not None
    return int(found.group(1))
