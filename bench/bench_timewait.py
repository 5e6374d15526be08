"""Benchmark: 30,000+ TIME_WAIT sockets over several destinations, connwatch against `ss -tan` and psutil.

    sudo python bench/bench_timewait.py [--per-destination 6000] [--repeat 5]

Creates a network namespace (deleted at the end) with listeners on 127.0.0.1:7101-7104 and
127.0.0.2:7101-7102 that close only after the client's FIN, so the CLIENT ends in TIME_WAIT toward
each destination (connect+close churn: TIME_WAIT holds no fd, so the 20,000 fd limit does not bind),
plus 500 held ESTABLISHED connections. Then, in the same run and the same process, it times:

- connwatch: collect() (sock_diag dump aggregated per destination while decoding, owners on) and the
  ephemeral attributes (measure) on two samples; peak Python memory by tracemalloc, and the memory
  still held by the snapshot after the sample (no per-socket objects survive it);
- `ss -tan` as a process (wall time, output read);
- psutil.net_connections("tcp") (wall time, peak Python memory), which builds one object per socket.

It also checks that connwatch's per-destination TIME_WAIT counts equal those parsed from `ss -tan`.
All TIME_WAIT sockets are created and measured within their 60 s lifetime.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

DESTINATIONS = [("127.0.0.1", 7101), ("127.0.0.1", 7102), ("127.0.0.1", 7103), ("127.0.0.1", 7104),
                ("127.0.0.2", 7101), ("127.0.0.2", 7102)]
HELD = 500


def _serve(listeners: list[socket.socket], stop: threading.Event) -> None:
    """Accept, close after the client's FIN (recv() == b""): the client side ends in TIME_WAIT.

    One selector loop for every listener, so held connections never block the others.
    """
    sel = selectors.DefaultSelector()
    for srv in listeners:
        srv.setblocking(False)
        sel.register(srv, selectors.EVENT_READ, "listener")
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "listener":
                while True:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "conn")
                continue
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()


def _churn(per_destination: int, deadline_s: float = 40.0) -> int:
    """connect+close cycles, round robin over the destinations; bounded in count and time."""
    end = time.monotonic() + deadline_s
    done = 0
    for i in range(per_destination * len(DESTINATIONS)):
        if time.monotonic() > end:
            break
        c = socket.socket()
        c.connect(DESTINATIONS[i % len(DESTINATIONS)])
        c.close()
        done += 1
    return done


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, int]:
    """Median wall ms over repeat runs, and the peak Python memory (bytes) of one more run."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak


def _ss_time_wait() -> Counter[tuple[str, str]]:
    out = subprocess.run(["ss", "-tanH", "state", "time-wait"], capture_output=True, text=True, check=True).stdout
    counts: Counter[tuple[str, str]] = Counter()
    for row in out.splitlines():
        f = row.split()
        counts[(f[-2].rsplit(":", 1)[0], f[-1])] += 1
    return counts


def inner(per_destination: int, repeat: int) -> dict[str, Any]:
    import psutil

    from connwatch.attributes import ephemeral
    from connwatch.clock import SystemClock
    from connwatch.collect import CollectOptions, collect

    stop = threading.Event()
    listeners = []
    for host, port in DESTINATIONS:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(4096)
        listeners.append(srv)
    threading.Thread(target=_serve, args=(listeners, stop), daemon=True).start()
    held = [socket.create_connection(DESTINATIONS[0]) for _ in range(HELD)]
    started = time.monotonic()
    cycles = _churn(per_destination)
    churn_s = time.monotonic() - started
    time.sleep(0.3)  # let the servers close the last few

    clock, opts = SystemClock(), CollectOptions()
    first = collect(clock, opts)
    collect_ms, collect_peak = _timed(lambda: collect(clock, opts), repeat)
    bare = CollectOptions(owners=False)
    bare_ms, bare_peak = _timed(lambda: collect(clock, bare), repeat)
    gc.collect()
    tracemalloc.start()
    kept = collect(clock, opts)
    retained = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    measure_ms, measure_peak = _timed(lambda: ephemeral.measure(first, kept), repeat)
    ss_ms, _ = _timed(lambda: subprocess.run(["ss", "-tan"], capture_output=True, check=True), repeat)
    psutil_ms, psutil_peak = _timed(lambda: psutil.net_connections("tcp"), repeat)

    ss_tw = _ss_time_wait()
    assert kept.sockets is not None
    ours = {(d.remote_address, str(d.remote_port)): d.states.get("TIME_WAIT", 0)
            for d in kept.sockets.destinations if d.states.get("TIME_WAIT")}
    theirs = {(ip, str(port)): n for (_local, peer), n in ss_tw.items() for ip, port in [peer.rsplit(":", 1)]}
    age_s = time.monotonic() - started
    stop.set()
    del held
    return {
        "cycles": cycles, "churn_s": round(churn_s, 2), "sockets": kept.sockets.total,
        "time_wait": kept.sockets.by_state.get("TIME_WAIT", 0), "destinations": len(kept.sockets.destinations),
        "per_destination_time_wait": {f"{k[0]}:{k[1]}": v for k, v in sorted(ours.items())},
        "matches_ss": ours == theirs, "oldest_age_s_at_end": round(age_s, 1),
        "connwatch_collect_ms": round(collect_ms, 1), "connwatch_collect_peak_kib": collect_peak // 1024,
        "connwatch_snapshot_retained_kib": retained // 1024,
        "connwatch_no_owners_ms": round(bare_ms, 1), "connwatch_no_owners_peak_kib": bare_peak // 1024,
        "connwatch_measure_ms": round(measure_ms, 2), "connwatch_measure_peak_kib": measure_peak // 1024,
        "ss_tan_ms": round(ss_ms, 1), "psutil_ms": round(psutil_ms, 1), "psutil_peak_kib": psutil_peak // 1024,
        "owners": [o.command for d in kept.sockets.destinations for o in d.owners][:3],
    }


def outer(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench_timewait: needs root (creates a network namespace)", file=sys.stderr)
        return 3
    name = f"cwbench-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0"],
                    ["sysctl", "-q", "-w", "net.ipv4.tcp_max_tw_buckets=262144"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        done = subprocess.run(["ip", "netns", "exec", name, sys.executable, __file__, "--inner",
                               "--per-destination", str(args.per_destination), "--repeat", str(args.repeat)],
                              capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 3
    r = json.loads(done.stdout)
    report(r)
    return 0 if r["matches_ss"] else 1


def report(r: dict[str, Any]) -> None:
    print(f"{r['time_wait']} TIME_WAIT of {r['sockets']} sockets over {r['destinations']} destinations "
          f"({r['cycles']} connect+close cycles in {r['churn_s']} s); per destination: "
          f"{r['per_destination_time_wait']}")
    print(f"per-destination TIME_WAIT counts equal `ss -tan`'s: {r['matches_ss']}; owners (inferred): "
          f"{r['owners']}; oldest TIME_WAIT {r['oldest_age_s_at_end']} s old at the end (< 60)")
    rows = [("connwatch collect (sock_diag, aggregated, owners)", r["connwatch_collect_ms"],
             r["connwatch_collect_peak_kib"]),
            ("connwatch collect without the owner fd scan", r["connwatch_no_owners_ms"],
             r["connwatch_no_owners_peak_kib"]),
            ("connwatch ephemeral measure (2 samples)", r["connwatch_measure_ms"], r["connwatch_measure_peak_kib"]),
            ("ss -tan (process, output read)", r["ss_tan_ms"], None),
            ("psutil.net_connections('tcp')", r["psutil_ms"], r["psutil_peak_kib"])]
    print(f"{'':52} {'median ms':>10} {'peak KiB':>10}")
    for label, ms, kib in rows:
        print(f"{label:52} {ms:>10} {'' if kib is None else kib:>10}")
    print(f"snapshot kept after the sample: {r['connwatch_snapshot_retained_kib']} KiB "
          f"(no per-socket objects survive it)")
    base = r["connwatch_collect_ms"]
    bare = r["connwatch_no_owners_ms"]
    print(f"ratios: ss/connwatch {r['ss_tan_ms'] / base:.2f}x time ({r['ss_tan_ms'] / bare:.2f}x "
          f"without the owner scan, which ss -tan does not do); psutil/connwatch "
          f"{r['psutil_ms'] / base:.1f}x time, {r['psutil_peak_kib'] / max(r['connwatch_collect_peak_kib'], 1):.1f}x "
          "peak memory")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-destination", type=int, default=6000, help="TIME_WAIT sockets per destination")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 1 <= args.per_destination <= 20000:
        p.error("--per-destination must be 1..20000")
    if args.inner:
        print(json.dumps(inner(args.per_destination, args.repeat)))
        return 0
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
