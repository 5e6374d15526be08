#!/usr/bin/env python3
"""Agent cost with 10,000 sockets: CPU (% of one core) and RSS over 60 s at 1 s and 5 s intervals,
and /metrics scrape latency; the per-sample cost is set against `ss -tan` and psutil measured in the
same run, on the same sockets. Needs root (a network namespace of its own; traffic on its loopback).

    sudo python bench/bench_agent.py [--duration 60] [--sockets 10000] [--soak 600]

Targets (issue 5): < 1 % CPU at 5 s, RSS < 60 MB, flat over a 10-minute soak (--soak 600).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROGS = ROOT / "tests" / "live" / "progs"
PORT, METRICS = 7000, 19816
TICK = os.sysconf("SC_CLK_TCK")


def sh(ns: str, *args: str, timeout: float = 120) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def start(ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        raise SystemExit(f"helper did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_agent(ns: str, interval: float, duration: float, state: Path, extra: list[str]) -> dict[str, float]:
    agent = start(ns, sys.executable, "-m", "connwatch", "run", "--interval", str(interval),
                  "--listen", f"127.0.0.1:{METRICS}", "--state-dir", str(state), *extra)
    try:
        time.sleep(max(2 * interval, 5))  # imports, first samples
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < duration:
            time.sleep(1)
            rss.append(rss_mb(agent.pid))
        cpu = (cpu_seconds(agent.pid) - c0) / (time.monotonic() - t0) * 100
        scrape, body = scrape_latency(ns)
        sample_s = float(next(line.split()[-1] for line in body.splitlines()
                              if line.startswith('connwatch_sample_duration_seconds{kind="full"}')))
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=30)
    alerts = sorted({m for m in re.findall(r'^connwatch_alert_active\{attribute="([^"]+)"', body, re.M)})
    print(f"  active alerts during the run: {', '.join(alerts) or 'none'}")
    return {"cpu_pct": cpu, "rss_mb_max": max(rss), "rss_mb_first": rss[0], "rss_mb_last": rss[-1],
            "full_sample_ms": sample_s * 1000, **scrape}


SCRAPER = """import json, sys, time, urllib.request
url = sys.argv[1]
lat = []
end = time.monotonic() + 2.0
while time.monotonic() < end or len(lat) < 200:  # at least 100 scrapes/s for 2 s, plus more
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read()
    lat.append(time.perf_counter() - t)
print(json.dumps({"lat": lat, "bytes": len(body), "body": body.decode()}))
"""


def scrape_latency(ns: str) -> tuple[dict[str, float], str]:
    import json

    out = json.loads(sh(ns, sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{METRICS}/metrics"))
    lat = sorted(out["lat"])
    return {"scrapes": len(lat), "scrape_ms_p50": statistics.median(lat) * 1000,
            "scrape_ms_p99": lat[int(len(lat) * 0.99) - 1] * 1000, "scrapes_per_s": len(lat) / sum(lat),
            "metrics_bytes": out["bytes"]}, str(out["body"])


def reference(ns: str) -> dict[str, float]:
    """ss and psutil on the same sockets, same namespace, same run (median of 5)."""
    ss, ps = [], []
    for _ in range(5):
        t = time.perf_counter()
        sh(ns, "ss", "-tan")
        ss.append(time.perf_counter() - t)
        t = time.perf_counter()
        sh(ns, sys.executable, "-c", "import psutil, time; t = time.perf_counter(); "
           "psutil.net_connections('tcp'); print(time.perf_counter() - t)")
        ps.append(time.perf_counter() - t)
    inproc = [float(sh(ns, sys.executable, "-c", "import psutil, time; t = time.perf_counter(); "
                       "psutil.net_connections('tcp'); print(time.perf_counter() - t)")) for _ in range(3)]
    return {"ss_tan_ms": statistics.median(ss) * 1000, "psutil_ms": statistics.median(inproc) * 1000}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--sockets", type=int, default=10000)
    p.add_argument("--intervals", default="5,1")
    p.add_argument("--soak", type=float, default=0, help="also run a soak of this many seconds at 5 s")
    p.add_argument("--config", default=None, help="rules file for the agent (default: built-in rules, under "
                   "which the 5,000 connections from 127.0.0.1 raise ConnectionsPerSource)")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_agent: needs root for a network namespace")
    ns = f"cwbench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        sh(ns, "ip", "link", "set", "lo", "up")
        sh(ns, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=20000 60999")
        srv = start(ns, sys.executable, str(PROGS / "listener.py"), "--port", str(PORT), "--backlog", "4096",
                    "--accept", "--lifetime", "3600")
        procs.append(srv)
        ready(srv)
        conns = a.sockets // 2  # each connection is two sockets here (client and accepted)
        cli = start(ns, sys.executable, str(PROGS / "flood.py"), "--port", str(PORT), "--count", str(conns),
                    "--hold", "3600")
        procs.append(cli)
        ready(cli)
        time.sleep(2)
        total = sh(ns, "ss", "-tanH").count("\n")
        print(f"sockets in the namespace: {total}")
        ref = reference(ns)
        print(f"reference: ss -tan {ref['ss_tan_ms']:.1f} ms, psutil.net_connections {ref['psutil_ms']:.1f} ms")
        runs = [(float(i), a.duration) for i in a.intervals.split(",")]
        if a.soak:
            runs.append((5.0, a.soak))
        for interval, duration in runs:
            extra = ["--config", a.config] if a.config else []
            r = measure_agent(ns, interval, duration, Path(f"/tmp/{ns}-state-{interval:g}-{duration:g}"), extra)
            print(f"interval {interval:g} s over {duration:g} s: CPU {r['cpu_pct']:.2f} % of one core, "
                  f"RSS max {r['rss_mb_max']:.1f} MB (first {r['rss_mb_first']:.1f}, last {r['rss_mb_last']:.1f}), "
                  f"full sample {r['full_sample_ms']:.1f} ms = {r['full_sample_ms'] / ref['ss_tan_ms']:.2f} x ss, "
                  f"{r['full_sample_ms'] / ref['psutil_ms']:.2f} x psutil; /metrics {r['scrapes']} scrapes at "
                  f"{r['scrapes_per_s']:.0f}/s, p50 {r['scrape_ms_p50']:.2f} ms, p99 {r['scrape_ms_p99']:.2f} ms, "
                  f"{r['metrics_bytes']} bytes")
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
