"""Benchmark `connwatch analyze` on a large `ss -tan` capture against the shell pipeline an SRE
would run by hand on the same file (`awk '{print $5}' | sort | uniq -c`), measured in the same run.

    python bench/analyze_bench.py [ROWS]

Prints rows, seconds, rows/s, peak RSS of the analyze process, and the ratio to the pipeline.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_capture(path: Path, rows: int) -> None:
    with path.open("w") as fh:
        fh.write("State      Recv-Q Send-Q Local Address:Port   Peer Address:Port\n")
        fh.write("LISTEN     0      511          0.0.0.0:443        0.0.0.0:*\n")
        for i in range(rows):
            if i % 3:
                fh.write(f"TIME-WAIT  0      0        10.0.0.5:{32768 + i % 28000}  10.1.{i % 40}.7:5432\n")
            else:
                fh.write(f"ESTAB      0      0        10.0.0.5:443   192.168.{i % 250}.{i % 200 + 1}:{1024 + i % 60000}\n")


def timed(cmd: list[str] | str, shell: bool = False) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, shell=shell, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done.stderr


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "ss-tan.txt"
        make_capture(capture, rows)
        code = ("import resource,sys;from connwatch.cli import main;main(['analyze','--format','json',sys.argv[1]]);"
                "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))")
        t_analyze, rss = timed([sys.executable, "-c", code, str(capture)])
        t_pipe, _ = timed(f"awk '{{print $5}}' {capture} | sort | uniq -c > /dev/null", shell=True)
        size_mb = capture.stat().st_size / 1e6
        print(f"rows={rows} file={size_mb:.1f} MB")
        print(f"connwatch analyze: {t_analyze:.2f} s ({rows / t_analyze:,.0f} rows/s), peak RSS {int(rss) / 1024:.0f} MiB")
        print(f"awk|sort|uniq -c:  {t_pipe:.2f} s")
        print(f"ratio analyze/pipeline: {t_analyze / t_pipe:.2f}")


if __name__ == "__main__":
    main()
