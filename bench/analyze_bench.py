"""Benchmark `connwatch analyze` on large `ss -tan` and Windows `netstat -ano` captures against the shell
pipeline an SRE would run by hand on the same file (`awk '{print $5}' | sort | uniq -c`), interleaved.

    python bench/analyze_bench.py [ROWS] [RUNS]

The captures are synthetic (built here: a benchmark, not a fixture), shaped like real output: a header,
listeners first, then ESTABLISHED inbound connections to the listening ports and TIME_WAIT outbound ones
to a few destinations. Each run times analyze (whole process, `--format json`) and the pipeline back to
back; prints per format the median rows/s of analyze (whole process, and the analysis alone as measured
inside the process, start-up excluded), its peak RSS, and the median and spread of the ratio
analyze/pipeline, with `uptime`'s load at the start and end.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SS_HEADER = "State      Recv-Q Send-Q Local Address:Port   Peer Address:Port\n"
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


def timed_analyze(path: Path) -> tuple[float, float, int]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", ANALYZE, str(path)], capture_output=True, text=True, check=False)
    whole = time.perf_counter() - start
    inner, rss = done.stderr.split()[-2:]
    return whole, float(inner), int(rss)


def timed_pipeline(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(f"awk '{{print $5}}' {path} | sort | uniq -c > /dev/null", shell=True, check=True)
    return time.perf_counter() - start


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(f"rows={rows} runs={runs} load at start {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in (("ss -tan", make_ss), ("netstat -ano (Windows)", make_netstat_windows)):
            path = Path(tmp) / "capture.txt"
            make(path, rows)
            whole, inner, ratios, rss = [], [], [], 0
            for _ in range(runs):  # interleaved: analyze, then the pipeline on the same file
                w, i, r = timed_analyze(path)
                p = timed_pipeline(path)
                whole.append(w)
                inner.append(i)
                ratios.append(w / p)
                rss = max(rss, r)
            print(f"{name}: {path.stat().st_size / 1e6:.1f} MB; analyze {statistics.median(whole):.2f} s "
                  f"({rows / statistics.median(whole):,.0f} rows/s whole process, "
                  f"{rows / statistics.median(inner):,.0f} rows/s analysis alone), peak RSS {rss / 1024:.0f} MiB; "
                  f"analyze/pipeline median {statistics.median(ratios):.2f} "
                  f"(spread {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"load at end {load()}")


if __name__ == "__main__":
    main()
