"""Benchmark: a snapshot of >= 30,000 sockets against `ss -tan` and psutil, measured in one run.

    sudo python bench/bench_snapshot.py [--sockets 34000] [--repeat 7]

Runs inside a network namespace it creates (and deletes): loopback listeners on four ports, then
connect+close churn leaves TIME_WAIT sockets (they hold no fd, so the 20,000 fd limit does not bind).
Reports medians and the ratios the README quotes. Also times `connwatch --help` start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time

# The load this and bench_accept_decode.py build in their namespace (`target` set before it): four
# loopback listeners that accept and close, 2,000 held connections, then `target` connect+close cycles.
LOAD = textwrap.dedent("""
    ports = [7001, 7002, 7003, 7004]
    servers = []
    for p in ports:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", p)); s.listen(4096); servers.append(s)
    def drain(srv):
        while True:
            c, _ = srv.accept(); c.close()
    for s in servers:
        threading.Thread(target=drain, args=(s,), daemon=True).start()
    held = [socket.create_connection(("127.0.0.1", ports[i % 4])) for i in range(2000)]  # ESTABLISHED too
    deadline = time.monotonic() + 120
    i = 0
    while i < target and time.monotonic() < deadline:
        c = socket.socket(); c.connect(("127.0.0.1", ports[i % 4])); c.close(); i += 1
    time.sleep(0.5)
""")

INNER = textwrap.dedent("""
    import json, socket, statistics, subprocess, sys, threading, time, tracemalloc
    target, repeat = int(sys.argv[1]), int(sys.argv[2])
""") + LOAD + textwrap.dedent("""
    from connwatch.clock import SystemClock
    from connwatch.collect import CollectOptions, collect
    import psutil

    def timed(fn):
        out = []
        for _ in range(repeat):
            t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
        return statistics.median(out)

    opts = CollectOptions(owners=False)
    snap = collect(SystemClock(), opts)
    tracemalloc.start()
    collect(SystemClock(), opts)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    from connwatch.parsers.sock_diag_listeners import ListenerDecoder
    from connwatch.sources import netlink
    nl = netlink.open_socket()

    def listener_dump():
        found = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            netlink.dump(nl, fam, netlink.TCPF_LISTEN, 1 << 6, ListenerDecoder(found))

    res = {
        "listener_dump_ms": timed(listener_dump),
        "sockets": snap.sockets.total + len(snap.listeners),
        "by_state": dict(snap.sockets.by_state),
        "collect_ms": timed(lambda: collect(SystemClock(), opts)),
        "collect_listeners_only_ms": timed(lambda: collect(SystemClock(), CollectOptions(owners=False, sockets=False))),
        "collect_peak_kib": round(peak / 1024),
        "ss_tan_ms": timed(lambda: subprocess.run(["ss", "-tan"], stdout=subprocess.DEVNULL, check=True)),
        "ss_tan_count": subprocess.run(["ss", "-tanH"], capture_output=True, text=True).stdout.count("\\n"),
        "psutil_ms": timed(lambda: psutil.net_connections("tcp")),
        "cli_snapshot_ms": timed(lambda: subprocess.run([sys.executable, "-m", "connwatch", "snapshot"],
                                                        stdout=subprocess.DEVNULL, check=True)),
    }
    print(json.dumps(res))
""")


def help_startup_ms(repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "connwatch", "--help"], stdout=subprocess.DEVNULL, check=True)
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=34000)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    ns = f"cwbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", INNER, str(a.sockets),
                               str(a.repeat)], capture_output=True, text=True, timeout=600, check=True)
        res = json.loads(done.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    res["help_ms"] = help_startup_ms(a.repeat)
    res["ratio_collect_vs_ss"] = round(res["collect_ms"] / res["ss_tan_ms"], 2)
    res["ratio_cli_vs_ss"] = round(res["cli_snapshot_ms"] / res["ss_tan_ms"], 2)
    res["ratio_psutil_vs_collect"] = round(res["psutil_ms"] / res["collect_ms"], 1)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
