#!/usr/bin/env python3
"""`connwatch top` cost with 10,000 sockets: start-up (exec to the first frame on a pseudo-terminal,
80x24) and CPU (% of one core) over a run with the default refreshes (listeners every second, a full
sample every 5 s). For the choice of library, also the start-up of a minimal textual app (a DataTable
drawn once, then exit) when an interpreter with textual is given (--textual-python). Needs root (a network
namespace of its own; traffic on its loopback).

    sudo python bench/bench_top.py [--duration 60] [--sockets 10000] [--textual-python /path/to/python]

Targets (issue 13): start-up < 300 ms, < 5 % of a core at 10,000 sockets.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import statistics
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_agent import cpu_seconds, rss_mb, sh, start

PROGS = Path(__file__).resolve().parents[1] / "tests" / "live" / "progs"

PORT = 7000
TEXTUAL_APP = """
from textual.app import App
from textual.widgets import DataTable
class T(App):
    def compose(self):
        yield DataTable()
    def on_mount(self):
        t = self.query_one(DataTable)
        t.add_columns("Port", "Queue", "Drops")
        t.add_row("7000", "0/4096", "0")
        self.set_timer(0.01, self.exit)
T().run()
"""


def pty_process(ns: str, argv: list[str], cols: int = 80, rows: int = 24) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**os.environ, "CONNWATCH_NETNS": "own", "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True)
    os.close(slave)
    return proc, master


def drain(master: int, until: bytes | None, timeout: float) -> bool:
    """Read the terminal output; True when `until` was seen before the timeout."""
    seen, end = b"", time.monotonic() + timeout
    while time.monotonic() < end:
        ready_fds, _, _ = select.select([master], [], [], 0.05)
        if ready_fds:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return False
            seen = (seen + chunk)[-4096:]
            if until is not None and until in seen:
                return True
    return False


def first_frame(ns: str, argv: list[str], marker: bytes) -> float:
    t = time.perf_counter()
    proc, master = pty_process(ns, argv)
    try:
        if not drain(master, marker, 30):
            raise SystemExit(f"no first frame from {argv}")
        return time.perf_counter() - t
    finally:
        os.write(master, b"q")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(master)


def cpu_run(ns: str, duration: float) -> dict[str, float]:
    proc, master = pty_process(ns, [sys.executable, "-m", "connwatch", "top"])
    try:
        drain(master, None, 8)  # imports, first full samples
        child = int(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()[0]
                    ) if subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).returncode == 0 \
            else proc.pid
        c0, t0 = cpu_seconds(child), time.monotonic()
        drain(master, None, duration)
        return {"cpu_pct": (cpu_seconds(child) - c0) / (time.monotonic() - t0) * 100, "rss_mb": rss_mb(child)}
    finally:
        os.write(master, b"q")
        proc.wait(timeout=10)
        os.close(master)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--sockets", type=int, default=10000)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--textual-python", default=None, help="an interpreter with textual installed")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_top: needs root for a network namespace")
    # Start-up as installed: with bytecode (this environment may set PYTHONDONTWRITEBYTECODE; pip writes
    # .pyc files at install time, an editable checkout has none until compiled).
    import connwatch

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(connwatch.__file__).parent)], check=True)
    ns = f"cwbench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        sh(ns, "ip", "link", "set", "lo", "up")
        sh(ns, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=20000 60999")
        srv = start(ns, sys.executable, str(PROGS / "listener.py"), "--port", str(PORT), "--backlog", "4096",
                    "--accept", "--lifetime", "3600", ready=True)
        procs.append(srv)
        cli = start(ns, sys.executable, str(PROGS / "flood.py"), "--port", str(PORT), "--count",
                    str(a.sockets // 2), "--hold", "3600", ready=True)
        procs.append(cli)
        time.sleep(2)
        print(f"sockets in the namespace: {sh(ns, 'ss', '-tanH').count(chr(10))}")
        marker = b"connwatch top"
        top = [first_frame(ns, [sys.executable, "-m", "connwatch", "top"], marker) for _ in range(a.runs)]
        helps = []
        for _ in range(a.runs):
            t = time.perf_counter()
            sh(ns, sys.executable, "-m", "connwatch", "--help")
            helps.append(time.perf_counter() - t)
        print(f"start-up to the first frame (80x24 pty, median of {a.runs}): connwatch top "
              f"{statistics.median(top) * 1000:.0f} ms (min {min(top) * 1000:.0f}); `connwatch --help` "
              f"{statistics.median(helps) * 1000:.0f} ms; both include `ip netns exec`")
        if a.textual_python:
            tx = []
            for _ in range(a.runs):
                t = time.perf_counter()
                proc, master = pty_process(ns, [a.textual_python, "-c", TEXTUAL_APP])
                drain(master, b"7000", 30)
                tx.append(time.perf_counter() - t)
                proc.wait(timeout=10)
                os.close(master)
            print(f"minimal textual app (one DataTable row) to its first frame: {statistics.median(tx) * 1000:.0f} ms "
                  f"(min {min(tx) * 1000:.0f})")
        r = cpu_run(ns, a.duration)
        print(f"connwatch top over {a.duration:g} s (listeners 1 s, full sample 5 s, 80x24): CPU "
              f"{r['cpu_pct']:.2f} % of one core, RSS {r['rss_mb']:.1f} MB")
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
