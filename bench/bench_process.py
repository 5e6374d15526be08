#!/usr/bin/env python3
"""Whole processes, interleaved with the peer: `connwatch snapshot --format json` against `ss -tan`
(wall and CPU), `connwatch check --interval 0.5` CPU against `ss -tan`'s, and each command's start-up
(exec to the first read of the kernel's state). Needs root: the load lives in a network namespace the
script makes and deletes (bench/twload.py; TIME_WAIT topped up between rounds, never during one).

    sudo python bench/bench_process.py [--sockets 35000] [--rounds 11] [--namespaces 100] [--startup 9]

Every round runs `ss -tan` and each connwatch variant once, in alternating order; the figures are the
medians of the per-round ratios connwatch / ss (and their range), with the machine's load average.
`--namespaces N` adds N small namespaces (lo up, 5 listeners each) for the `--netns all` rows: connwatch
then samples every namespace on the host (those of other jobs too: their count is printed).
Start-up: strace (seccomp-filtered: only execve, openat and socket stop) from the execve to the first
open of /proc/... or /run/netns or the first netlink socket; `python -c pass` under the same strace
for scale. Targets (issue 17): snapshot <= 1.0x ss at 35k, <= 0.6x at 300k; check CPU <= 1.5x ss's;
start-up <= 60 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
CONNWATCH = str(Path(sys.executable).parent / "connwatch") if (Path(sys.executable).parent / "connwatch").exists() \
    else None
KERNEL = re.compile(r'openat\(AT_FDCWD, "(/proc/|/run/netns)|socket\(AF_NETLINK')


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one process run to completion, output discarded."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True, timeout=300)
    wall = (time.perf_counter() - t) * 1000
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000


def startup_ms(argv: list[str], env: dict[str, str], trace: Path) -> float | None:
    """exec to the first kernel read, from an strace of execve/openat/socket (seccomp-filtered)."""
    subprocess.run(["strace", "--seccomp-bpf", "-f", "-ttt", "-e", "trace=execve,openat,socket", "-o", str(trace),
                    *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=300)
    events = []  # (time, line) after the last successful execve (`ip netns exec` execs connwatch)
    for line in trace.read_text().splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        if parts[2].startswith("execve(") and parts[2].rstrip().endswith("= 0"):
            events = []
        events.append((float(parts[1]), parts[2]))
    if not events:
        return None
    end = next((t for t, what in events[1:] if KERNEL.search(what)), events[-1][0])  # else: to the exit
    return (end - events[0][0]) * 1000


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def small_namespaces(count: int) -> tuple[list[str], list[socket.socket]]:
    from connwatch.collect import CollectOptions
    from connwatch.collect_netns import discover
    from connwatch.sources.netns import open_netns, run_in_each

    names = [f"cwproc-{os.getpid()}-{i}" for i in range(count)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    found, _ = discover(CollectOptions())
    fds = [open_netns(ref) for ref, _ in found if ref.name in set(names)]

    def listen(_fd: int) -> list[socket.socket]:
        socks = []
        for port in range(9001, 9006):
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen(128)
            socks.append(s)
        return socks
    held: list[socket.socket] = []
    try:
        for made in run_in_each(fds, listen):
            assert isinstance(made, list), made
            held.extend(made)
    finally:
        for fd in fds:
            os.close(fd)
    return names, held


class Load:
    def __init__(self, ns: str, target: int) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(HERE / "twload.py"),
                                      "--target", str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit(f"twload did not start: {line!r}")
        self.tw = int(line.split()[1])

    def top_up(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("top\n")
        self.proc.stdin.flush()
        self.tw = int(self.proc.stdout.readline().split()[1])
        return self.tw

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


Runs = dict[str, Callable[[], tuple[float, float]]]


def rounds(load: Load, n: int, runs: Runs) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for i in range(n):
        load.top_up()
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for key in order:
            out[key].append(runs[key]())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sockets", type=int, default=35000)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--namespaces", type=int, default=0, help="small namespaces to add for the --netns all rows")
    ap.add_argument("--startup", type=int, default=9, help="start-up runs per command (0: skip)")
    ap.add_argument("--no-check", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_process: needs root (network namespaces)")
    if CONNWATCH is None:
        raise SystemExit("bench_process: no connwatch script next to this interpreter (pip install -e .)")
    import connwatch

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(connwatch.__file__).parent)], check=True)
    ns = f"cwproc-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    names: list[str] = []
    held: list[socket.socket] = []
    load = None
    state = Path(tempfile.mkdtemp(prefix="cwbench-"))
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0",
                        "net.ipv4.ip_local_port_range=10000 60999",
                        f"net.ipv4.tcp_max_tw_buckets={max(262144, 2 * a.sockets)}"], check=True)
        if a.namespaces:
            names, held = small_namespaces(a.namespaces)
        t = time.perf_counter()
        load = Load(ns, a.sockets)
        print(f"load: {load.tw} TIME_WAIT (+2,000 ESTABLISHED pairs) in {time.perf_counter() - t:.1f} s; "
              f"namespaces on the host: {len(os.listdir('/proc/self/ns')) and _host_namespaces()}")
        own = {**os.environ, "CONNWATCH_NETNS": "own"}
        every = {**os.environ, "CONNWATCH_NETNS": "all"}
        inns = ["ip", "netns", "exec", ns]
        runs: Runs = {
            "ss -tan": lambda: run([*inns, "ss", "-tan"], own),
            "snapshot (--netns own)": lambda: run([*inns, CONNWATCH, "snapshot", "--format", "json"], own),
            "snapshot (--netns all)": lambda: run([*inns, CONNWATCH, "snapshot", "--format", "json"], every),
        }
        if not a.no_check:
            check = [*inns, CONNWATCH, "check", "--interval", "0.5", "--format", "json", "--state-dir", str(state)]
            runs["check --interval 0.5 (own)"] = lambda: _ok(check, own)
            runs["check --interval 0.5 (all)"] = lambda: _ok(check, every)
        print(f"load average before: {os.getloadavg()}")
        res = rounds(load, a.rounds, runs)
        print(f"load average after: {os.getloadavg()}; TIME_WAIT at the end {load.tw}")
        ss = res["ss -tan"]
        print(f"`ss -tan`: wall median {statistics.median(w for w, _ in ss):.1f} ms, "
              f"CPU {statistics.median(c for _, c in ss):.1f} ms")
        for key, vals in res.items():
            if key == "ss -tan":
                continue
            wall = [v[0] / s[0] for v, s in zip(vals, ss, strict=True)]
            cpu = [v[1] / s[1] for v, s in zip(vals, ss, strict=True)]
            print(f"{key:30s} wall {statistics.median(v[0] for v in vals):7.1f} ms  "
                  f"CPU {statistics.median(v[1] for v in vals):7.1f} ms   / ss: wall {med(wall)}  CPU {med(cpu)}")
        if a.startup:
            startup(a.startup, inns, own, every, state)
    finally:
        if load is not None:
            load.stop()
        for s in held:
            s.close()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(state, ignore_errors=True)
    return 0


def _ok(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """check exits 0/1/2 by verdict: any of them is a completed run."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=300, text=True)
    wall = (time.perf_counter() - t) * 1000
    if done.returncode not in (0, 1, 2):
        raise SystemExit(f"{argv}: exit {done.returncode}: {done.stderr[-500:]}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000


def _host_namespaces() -> int:
    from connwatch.collect import CollectOptions
    from connwatch.collect_netns import discover

    return len(discover(CollectOptions())[0])


def startup(n: int, inns: list[str], own: dict[str, str], every: dict[str, str], state: Path) -> None:
    """exec -> first kernel read, per command, interleaved with `python -c pass` (same strace)."""
    cmds = {
        "python -c pass": ([sys.executable, "-c", "pass"], own),
        "snapshot": ([CONNWATCH, "snapshot"], own),
        "snapshot --netns all": ([CONNWATCH, "snapshot"], every),
        "listeners": ([CONNWATCH, "listeners"], own),
        "check": ([CONNWATCH, "check", "--interval", "0", "--state-dir", str(state)], own),
        "destinations": ([CONNWATCH, "destinations", "--interval", "0"], own),
        "sources": ([CONNWATCH, "sources", "--interval", "0"], own),
        "top --batch": ([CONNWATCH, "top", "--batch", "-n", "1"], own),
    }
    got: dict[str, list[float]] = {k: [] for k in cmds}
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace"
        for i in range(n):
            for key in (cmds if i % 2 == 0 else reversed(list(cmds))):
                argv, env = cmds[key]
                ms = startup_ms([*inns, *argv], env, trace)
                if ms is not None:
                    got[key].append(ms)
    print(f"start-up, exec to the first kernel read (strace, median of {n}; the strace'd `ip netns exec` "
          "is not counted: timing starts at connwatch's own execve):")
    for key, vals in got.items():
        if vals:
            print(f"  {key:24s} {statistics.median(vals):6.1f} ms (range {min(vals):.1f}-{max(vals):.1f})")


if __name__ == "__main__":
    sys.exit(main())
