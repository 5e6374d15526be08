"""Benchmark: `connwatch listeners` (text) with 5,000 listeners, against `ss -ltnp`, as processes.

    sudo python bench/bench_listeners.py [--listeners 5000] [--repeat 7] [--before DIR]

Runs inside a network namespace it creates (and deletes): one process opens `--listeners` loopback
listening sockets (ports 20000 and up) and holds them. Then, interleaved (the order flips each round):
- `connwatch listeners` piped (plain text: no styles to draw) against `ss -ltnp` piped;
- `connwatch listeners` on an 80x24 pseudo-terminal (rich draws the first screenful, plain text the rest)
  against `ss -ltnp` on the same kind of terminal (wall, and CPU from the reaped process's rusage);
- `connwatch listeners --format json` against `ss -ltnp`.
Reports the median and range of the per-pair wall-time ratios and of the CPU-time (user + system)
ratios (less sensitive to other jobs on a loaded machine), each process's peak RSS (GNU time), the load
average, the processes and open fds on the host (what `ss -p` reads, all of it), and checks that the
piped table has one row per listener.

`--before DIR`: also run the connwatch whose package is DIR/connwatch (e.g. `git archive main src | tar -x
-C /tmp/old` and DIR=/tmp/old/src), in the same rounds (each round runs ss, connwatch and the old one, the
order rotating), so that before/after ratios to `ss` come from the same load; `after_vs_before` gives the
pair ratios of the new and the old connwatch of each round.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HOLDER = textwrap.dedent("""
    import resource, socket, sys, time
    n = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 100)), hard))
    held = []
    for i in range(n):
        s = socket.socket(); s.bind(("127.0.0.1", 20000 + i)); s.listen(128); held.append(s)
    print("READY", flush=True)
    time.sleep(600)
""")


def _in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def piped(argv: list[str], rss_file: str) -> tuple[float, int, str, float]:
    """Wall ms, peak RSS (KiB), stdout and CPU ms (user + system) of one process writing to a pipe."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file, *argv], capture_output=True,
                          text=True, check=True)
    wall = (time.perf_counter() - start) * 1000
    with open(rss_file) as f:
        rss, user, system = f.read().split()[-3:]
    return wall, int(rss), done.stdout, (float(user) + float(system)) * 1000


def on_tty(argv: list[str], cols: int = 80, rows: int = 24) -> tuple[float, int, str, float]:
    """Wall ms, no RSS (0), no output and CPU ms (user + system, the reaped child's rusage) of one process
    writing to an 80x24 pseudo-terminal, its output drained as a terminal would."""
    import fcntl
    import resource
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"TERM": "xterm-256color"}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                raise TimeoutError(argv)
            try:
                if not os.read(master, 1 << 16):
                    break
            except OSError:  # EIO: the terminal's last writer closed it
                break
        proc.wait(timeout=30)
    finally:
        os.close(master)
    wall = (time.perf_counter() - start) * 1000
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}")
    return wall, 0, "", (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000


def interleaved(repeat: int, ours: object, peer: object, before: object | None = None) -> dict[str, object]:
    """Alternate the callables (the order rotating each round); medians and the pair-ratio spread of each
    connwatch against the peer of its own round."""
    runs: list[tuple[object, ...]] = []
    contenders = [ours, peer] + ([before] if before is not None else [])
    for i in range(repeat):
        order = contenders[i % len(contenders):] + contenders[:i % len(contenders)]
        got = {id(c): c() for c in order}  # type: ignore[operator]
        runs.append(tuple(got[id(c)] for c in contenders))
    out = _ratios([(r[0], r[1]) for r in runs])
    if before is not None:
        out["before"] = _ratios([(r[2], r[1]) for r in runs])
        out["after_vs_before"] = _ratios([(r[0], r[2]) for r in runs])  # (pairs of the same round)
    return out


def _ratios(pairs: list[tuple[object, object]]) -> dict[str, object]:
    ms = [(p[0] if isinstance(p[0], float) else p[0][0], p[1] if isinstance(p[1], float) else p[1][0])  # type: ignore[index]
          for p in pairs]
    ratios = sorted(c / s for c, s in ms)
    out: dict[str, object] = {
        "connwatch_ms": round(statistics.median(c for c, _ in ms), 1),
        "peer_ms": round(statistics.median(s for _, s in ms), 1),
        "ratio_median": round(statistics.median(ratios), 2),
        "ratio_range": [round(ratios[0], 2), round(ratios[-1], 2)],
    }
    if not isinstance(pairs[0][0], float):
        if max(p[0][1] for p in pairs):  # type: ignore[index]  (on a terminal: not measured)
            out["connwatch_peak_rss_mib"] = round(max(p[0][1] for p in pairs) / 1024, 1)  # type: ignore[index]
            out["peer_peak_rss_mib"] = round(max(p[1][1] for p in pairs) / 1024, 1)  # type: ignore[index]
        cpu = sorted(p[0][3] / max(p[1][3], 10.0) for p in pairs)  # type: ignore[index]  (GNU time: 10 ms steps)
        out["cpu_ratio_median"] = round(statistics.median(cpu), 2)
        out["cpu_ratio_range"] = [round(cpu[0], 2), round(cpu[-1], 2)]
    return out


def host_fds() -> dict[str, int]:
    """Processes and open fds on the host: `ss -p` reads every fd of every process; connwatch stops once it
    has named every listener (looking first at the processes of the listeners' namespace)."""
    procs = fds = 0
    for pid in filter(str.isdecimal, os.listdir("/proc")):
        try:
            fds += len(os.listdir(f"/proc/{pid}/fd"))
            procs += 1
        except OSError:
            continue
    return {"processes": procs, "open_fds": fds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listeners", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--before", default=None, help="a directory holding an older connwatch package, run too")
    ap.add_argument("--netns-prefix", default="cwbench-lst", help="name of the namespace made (its pid appended)")
    a = ap.parse_args()
    if not 1 <= a.listeners <= 40000:
        ap.error("--listeners 1..40000")
    # as installed: with bytecode (this environment may set PYTHONDONTWRITEBYTECODE; pip writes it)
    import connwatch
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(connwatch.__file__)], check=True)
    ns = f"{a.netns_prefix}-{os.getpid()}"
    rss_file = os.path.join(tempfile.gettempdir(), f"cwbench-lst-rss-{os.getpid()}")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    holder = None
    try:
        subprocess.run(_in_ns(ns, ["ip", "link", "set", "lo", "up"]), check=True)
        holder = subprocess.Popen(_in_ns(ns, [sys.executable, "-c", HOLDER, str(a.listeners)]),
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().startswith("READY")
        cw = _in_ns(ns, [sys.executable, "-m", "connwatch", "listeners", "--netns", "own"])  # as ss: this netns
        old = None
        if a.before is not None:  # the older package first on the path (env: ip netns exec passes it on)
            subprocess.run([sys.executable, "-m", "compileall", "-q", a.before], check=True)
            old = _in_ns(ns, ["env", f"PYTHONPATH={os.path.abspath(a.before)}", sys.executable, "-m", "connwatch",
                              "listeners", "--netns", "own"])
        ss = _in_ns(ns, ["ss", "-ltnp"])
        load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        host_before = host_fds()
        table = piped(cw, rss_file)[2]
        if old is not None:
            piped(old, rss_file)  # (warm: its bytecode written)
        rows = sum(1 for line in table.splitlines() if line.lstrip()[:1].isdigit())
        res: dict[str, object] = {
            "listeners": a.listeners, "table_rows": rows,
            "text_piped_vs_ss_ltnp": interleaved(a.repeat, lambda: piped(cw, rss_file), lambda: piped(ss, rss_file),
                                                 old and (lambda: piped(old, rss_file))),
            "text_tty_80x24_vs_ss_ltnp": interleaved(a.repeat, lambda: on_tty(cw), lambda: on_tty(ss),
                                                     old and (lambda: on_tty(old))),
            "json_vs_ss_ltnp": interleaved(a.repeat, lambda: piped([*cw, "--format", "json"], rss_file),
                                           lambda: piped(ss, rss_file),
                                           old and (lambda: piped([*old, "--format", "json"], rss_file))),
            "uptime_before": load_before,
            "host_before": host_before,
            "host_after": host_fds(),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        }
        if rows != a.listeners:
            sys.exit(f"the table has {rows} rows for {a.listeners} listeners")
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
        if os.path.exists(rss_file):
            os.unlink(rss_file)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
