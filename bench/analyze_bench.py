"""Benchmark `connwatch analyze` on large `ss -tan` and Windows `netstat -ano` captures against the shell
pipeline an SRE would run by hand on the same file (`awk '{print $5}' | sort | uniq -c`), interleaved.

    python bench/analyze_bench.py [ROWS] [RUNS] [BEFORE_SRC]

The captures (`ss -tan`, Windows `netstat -ano`, Linux `netstat -tan`) are synthetic (built here: a benchmark,
not a fixture), shaped like real output: a header,
listeners first, then ESTABLISHED inbound connections to the listening ports and TIME_WAIT outbound ones
to a few destinations. Each run times analyze (whole process, `--format json`) and the pipeline back to
back; prints per format the median rows/s of analyze (whole process, and the analysis alone as measured
inside the process, start-up excluded; and per CPU second of the whole process, user + system: less moved
by other jobs on the machine than the wall clock), its peak RSS, and the median and spread of the ratio
analyze/pipeline, with `uptime`'s load at the start and end. With BEFORE_SRC (the `src` directory of another
checkout, e.g. `git archive main src | tar -x -C /tmp/before`), that version's analyze is run in each round
too (before, after, pipeline, in turn) and the before/after ratio is printed: before/after in the same run.

Each analyze runs as installed code runs: with its byte-code cache (PYTHONDONTWRITEBYTECODE is dropped, the
cache goes to a temporary PYTHONPYCACHEPREFIX, filled by one untimed run of each version first).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SS_HEADER = "State      Recv-Q Send-Q Local Address:Port   Peer Address:Port\n"
LINUX_HEADER = ("Active Internet connections (servers and established)\n"
                "Proto Recv-Q Send-Q Local Address           Foreign Address         State\n")
WIN_HEADER = "\nActive Connections\n\n  Proto  Local Address          Foreign Address        State           PID\n"


def make_ss(path: Path, rows: int) -> None:
    with path.open("w") as fh:
        fh.write(SS_HEADER)
        fh.write("LISTEN     0      511          0.0.0.0:443        0.0.0.0:*\n")
        fh.write("LISTEN     0      128          0.0.0.0:22         0.0.0.0:*\n")
        for i in range(rows):
            if i % 3:
                fh.write(f"TIME-WAIT  0      0        10.0.0.5:{32768 + i % 28000}  10.1.{i % 40}.7:5432\n")
            else:
                fh.write(f"ESTAB      0      0        10.0.0.5:443   192.168.{i % 250}.{i % 200 + 1}:"
                         f"{1024 + i % 60000}\n")


def make_netstat_linux(path: Path, rows: int) -> None:
    with path.open("w") as fh:
        fh.write(LINUX_HEADER)
        fh.write("tcp        0      0 0.0.0.0:443             0.0.0.0:*               LISTEN\n")
        fh.write("tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN\n")
        for i in range(rows):
            if i % 3:
                fh.write(f"tcp        0      0 10.0.0.5:{32768 + i % 28000:<15} 10.1.{i % 40}.7:5432{'':<10} "
                         "TIME_WAIT\n")
            else:
                peer = f"192.168.{i % 250}.{i % 200 + 1}:{1024 + i % 60000}"
                fh.write(f"tcp        0      0 10.0.0.5:443            {peer:<23} ESTABLISHED\n")


def make_netstat_windows(path: Path, rows: int) -> None:
    with path.open("w", newline="\r\n") as fh:
        fh.write(WIN_HEADER)
        fh.write("  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1192\n")
        fh.write("  TCP    0.0.0.0:443            0.0.0.0:0              LISTENING       4\n")
        for i in range(rows):
            if i % 3:
                fh.write(f"  TCP    10.0.0.5:{49152 + i % 16000}       10.1.{i % 40}.7:1433"
                         "         TIME_WAIT       0\n")
            else:
                fh.write(f"  TCP    10.0.0.5:443           192.168.{i % 250}.{i % 200 + 1}:{1024 + i % 60000}"
                         "    ESTABLISHED     4\n")


ANALYZE = ("import resource,sys,time;from connwatch.cli import main;t=time.perf_counter();"
           "main(['analyze','--format','json',sys.argv[1]]);"
           "sys.stderr.write('%f %d' % (time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))")


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed_analyze(path: Path, env: dict[str, str]) -> tuple[float, float, int, float]:
    """(wall seconds, seconds inside main, peak RSS KiB, CPU seconds of the whole process)."""
    cpu, start = _cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-c", ANALYZE, str(path)], capture_output=True, text=True, check=False,
                          env=env)
    whole = time.perf_counter() - start
    inner, rss = done.stderr.split()[-2:]
    return whole, float(inner), int(rss), _cpu() - cpu


def timed_pipeline(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(f"awk '{{print $5}}' {path} | sort | uniq -c > /dev/null", shell=True, check=True)
    return time.perf_counter() - start


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def environment(tmp: str, src: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / ("pyc-before" if src else "pyc"))
    if src:
        env["PYTHONPATH"] = src
    return env


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (spread {min(values):.2f}-{max(values):.2f})"


def measure(name: str, path: Path, rows: int, runs: int, envs: dict[str, dict[str, str]]) -> None:
    whole: dict[str, list[float]] = {v: [] for v in envs}
    inner: dict[str, list[float]] = {v: [] for v in envs}
    ratios: dict[str, list[float]] = {v: [] for v in envs}
    speedup: list[float] = []
    cpus: dict[str, list[float]] = {v: [] for v in envs}
    rss = dict.fromkeys(envs, 0)
    for env in envs.values():
        timed_analyze(path, env)  # fills the byte-code cache
    for _ in range(runs):  # interleaved: each analyze, then the pipeline on the same file
        took = {}
        for version, env in envs.items():
            w, i, r, c = timed_analyze(path, env)
            took[version] = w
            cpus[version].append(c)
            whole[version].append(w)
            inner[version].append(i)
            rss[version] = max(rss[version], r)
        p = timed_pipeline(path)
        for version in envs:
            ratios[version].append(took[version] / p)
        if "before" in took:
            speedup.append(took["before"] / took["after"])
    print(f"{name}: {path.stat().st_size / 1e6:.1f} MB, {rows:,} rows")
    for version in envs:
        print(f"  {version}: analyze {statistics.median(whole[version]):.2f} s "
              f"({rows / statistics.median(whole[version]):,.0f} rows/s whole process, "
              f"{rows / statistics.median(inner[version]):,.0f} rows/s analysis alone, "
              f"{rows / statistics.median(cpus[version]):,.0f} rows per CPU second), "
              f"peak RSS {rss[version] / 1024:.0f} MiB; analyze/pipeline {spread(ratios[version])}")
    if speedup:
        print(f"  before/after (same round) {spread(speedup)}")


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    before = sys.argv[3] if len(sys.argv) > 3 else None
    print(f"rows={rows} runs={runs} load at start {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        envs = {"after": environment(tmp, None)}
        if before:
            envs = {"before": environment(tmp, before), **envs}
        for name, make in (("ss -tan", make_ss), ("netstat -ano (Windows)", make_netstat_windows),
                           ("netstat -tan (Linux)", make_netstat_linux)):
            path = Path(tmp) / "capture.txt"
            make(path, rows)
            measure(name, path, rows, runs, envs)
    print(f"load at end {load()}")


if __name__ == "__main__":
    main()
