"""Benchmark: per-source attributes with 100,000 distinct sources, against `ss -tan` and psutil.

    sudo python bench/bench_sources.py [--sources 100000] [--held 5000] [--repeat 5]

Runs inside a network namespace it creates (and deletes):
- `--sources` distinct loopback sources (127.x.y.z, bound before connect) each make one connection
  that the server closes first, leaving a server-side TIME_WAIT socket per source on port 7100
  (TIME_WAIT holds no fd, so the 20,000 fd limit does not bind; they live 60 s, the run is shorter);
- `--held` further sources hold 2 ESTABLISHED connections each to port 7101 (client processes hold
  them, the listener accepts and keeps them).
Then runs `connwatch sources` (text, then JSON) and `ss -tan` as processes, interleaved (the order flips
each round), and reports the median and range of the per-pair wall-time and CPU-time (user + system)
ratios and each process's peak RSS (GNU time). In-process it also times the socket dump (collect), `measure()` of the
per-source attributes and the report, with measure()'s peak allocation (tracemalloc) and how many
measurements (alert candidates) came out: capped per port.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

CLIENT = textwrap.dedent("""
    import socket, sys, time
    port, first, count, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    def addr(i):
        high, low = divmod(i, 254)
        return f"127.{10 + high // 256}.{high % 256}.{low + 1}"
    held = []
    for i in range(first, first + count):
        for _ in range(1 if mode == "tw" else 2):
            s = socket.socket(); s.bind((addr(i), 0)); s.connect(("127.0.0.1", port))
            if mode == "tw":
                s.recv(1); s.close()   # the server closed first: its socket goes to TIME_WAIT
            else:
                held.append(s)
    print("READY", flush=True)
    if mode != "tw":
        time.sleep(120)
""")

INNER = textwrap.dedent("""
    import json, os, socket, statistics, subprocess, sys, threading, time, tracemalloc
    rss_file = f"/tmp/cwbench-rss-{os.getpid()}"
    n_sources, n_held, repeat, client = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    variants = json.loads(sys.argv[5])  # {label: source tree (PYTHONPATH)}: other connwatch trees, same rounds
    def server(port, keep):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port)); s.listen(4096)
        kept = []
        def loop():
            while True:
                c, _ = s.accept()
                kept.append(c) if keep else c.close()
        threading.Thread(target=loop, daemon=True).start()
    server(7100, False); server(7101, True)
    start = time.monotonic()
    def spawn(port, first, count, mode):
        return subprocess.Popen([sys.executable, "-c", client, str(port), str(first), str(count), mode],
                                stdout=subprocess.PIPE, text=True)
    workers = [spawn(7100, i * (n_sources // 4), n_sources // 4, "tw") for i in range(4)]
    holders = [spawn(7101, n_sources + i * (n_held // 2), n_held // 2, "held") for i in range(2)]
    for w in workers + holders:
        assert w.stdout.readline().startswith("READY")
    setup_s = time.monotonic() - start
    time.sleep(0.5)

    from connwatch.attributes import sources as attr
    from connwatch.clock import SystemClock
    from connwatch.collect import CollectOptions, collect
    from connwatch.reports.sources import build_report
    from connwatch.rules import sources as settings_mod
    from connwatch.rules.config import default_config

    def timed(fn):
        out = []
        for _ in range(repeat):
            t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
        return round(statistics.median(out), 1)

    def proc(argv, env=None):
        # wall ms and peak RSS in KiB, measured by GNU time (a small parent: a child forked straight from
        # this Python would report this process's RSS as its own, Linux carries it through exec)
        t = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file] + argv, stdout=subprocess.DEVNULL,
                       check=True, env=env)
        wall = (time.perf_counter() - t) * 1000
        with open(rss_file) as f:
            rss, user, system = f.read().split()[-3:]
        return wall, int(rss), (float(user) + float(system)) * 1000

    def ratios(pairs):
        ratios = sorted(c[0] / p[0] for c, p in pairs)
        cpu = sorted(c[2] / max(p[2], 10.0) for c, p in pairs)  # GNU time counts in 10 ms steps
        return {"connwatch_ms": round(statistics.median(c[0] for c, _ in pairs), 1),
                "peer_ms": round(statistics.median(p[0] for _, p in pairs), 1),
                "ratio_median": round(statistics.median(ratios), 2),
                "ratio_range": [round(ratios[0], 2), round(ratios[-1], 2)],
                "cpu_ratio_median": round(statistics.median(cpu), 2),
                "cpu_ratio_range": [round(cpu[0], 2), round(cpu[-1], 2)],
                "connwatch_peak_rss_mib": round(max(c[1] for c, _ in pairs) / 1024, 1),
                "peer_peak_rss_mib": round(max(p[1] for _, p in pairs) / 1024, 1)}

    def interleaved(cw_argv, peer_argv):
        # connwatch (and each variant tree) and the peer alternately (order flipped each round): medians of
        # the pair ratios, each run against the same round's peer run
        runs = {"connwatch": (cw_argv, None), **{label: (cw_argv, {**os.environ, "PYTHONPATH": src})
                                                 for label, src in variants.items()}}
        got = {k: [] for k in runs}
        for i in range(repeat):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            if i % 2:
                peer = proc(peer_argv)
            for key in order:
                got[key].append(proc(*runs[key]))
            if not i % 2:
                peer = proc(peer_argv)
            for key in runs:
                got[key][-1] = (got[key][-1], peer)
        out = ratios(got.pop("connwatch"))
        for label, pairs in got.items():
            out[label] = ratios(pairs)
        return out


    import dataclasses
    config = default_config()
    rules, settings = config.rules, config.sources
    opts = CollectOptions(owners=False)
    prev = collect(SystemClock(), opts)
    cur = collect(SystemClock(), opts)
    cw = [sys.executable, "-m", "connwatch"]
    load_before = os.getloadavg()
    cli_text = interleaved(cw + ["sources", "--netns", "own"], ["ss", "-tan"])  # as ss: this namespace
    cli_json = interleaved(cw + ["sources", "--netns", "own", "--format", "json"], ["ss", "-tan"])
    # TIME_WAIT lives 60 s: if the runs above took longer, the load shrank under them; say so
    left = subprocess.run(["ss", "-tanH"], capture_output=True, text=True).stdout.count("\\n")
    tracemalloc.start()
    measured = attr.measure(prev, cur, config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    agg = dataclasses.replace(config, sources=settings_mod.SourceSettings(aggregate=True))
    res = {
        "setup_s": round(setup_s, 1),
        "load_average_before_cli": [round(x, 2) for x in load_before],
        "sockets": cur.sockets.total,
        "sockets_after_the_cli_runs": left,
        "distinct_sources": len({u.source for u in cur.sockets.sources}),
        "cli_sources_text_vs_ss_tan": cli_text,
        "cli_sources_json_vs_ss_tan": cli_json,
        "collect_ms": timed(lambda: collect(SystemClock(), opts)),
        "measure_ms": timed(lambda: attr.measure(prev, cur, config)),
        "measure_aggregated_ms": timed(lambda: attr.measure(prev, cur, agg)),
        "report_ms": timed(lambda: build_report(prev, cur, rules, settings, None, 10)),
        "measure_peak_kib": round(peak / 1024),
        "measurements": len(measured),
        "measurements_by_attribute": {a: sum(m.attribute == a for m in measured)
                                      for a in ("ConnectionsPerSource", "HalfOpenPerSource", "PortsPerSource")},
        "ss_tan_ms": timed(lambda: subprocess.run(["ss", "-tan"], stdout=subprocess.DEVNULL, check=True)),
        "elapsed_s": round(time.monotonic() - start, 1),
    }
    for h in holders:
        h.kill()
    if os.path.exists(rss_file):
        os.unlink(rss_file)
    print(json.dumps(res))
""")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=100_000, help="distinct TIME_WAIT sources (multiple of 4)")
    ap.add_argument("--held", type=int, default=5000, help="sources holding 2 connections each (<= 14,000)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline-src", default=None,
                    help="another connwatch source tree (e.g. `git archive main src | tar -x -C DIR`, then DIR/src): "
                    "its CLI runs are measured in the same rounds (PYTHONPATH), reported under BASELINE")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=DIR", help="like --baseline-src, NAME")
    a = ap.parse_args()
    if a.sources > 500_000 or a.held > 14_000:
        ap.error("--sources at most 500,000 and --held at most 14,000 (fd limit)")
    # as installed: with bytecode (this environment may set PYTHONDONTWRITEBYTECODE; pip writes it)
    import connwatch
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(connwatch.__file__)], check=True)
    variants = dict(v.partition("=")[::2] for v in a.variant)
    if a.baseline_src:
        variants["BASELINE"] = a.baseline_src
    for src in variants.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True)
    ns = f"cwbench-src-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=1000000"],
                       check=True)
        argv = [str(a.sources), str(a.held), str(a.repeat), CLIENT, json.dumps(variants)]
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", INNER, *argv], capture_output=True,
                              text=True, timeout=600)
        if done.returncode != 0:
            sys.exit(f"bench failed: {done.stderr.strip().splitlines()[-1:]}")
        res = json.loads(done.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    res["ratio_collect_vs_ss"] = round(res["collect_ms"] / res["ss_tan_ms"], 2)
    res["ratio_collect_plus_measure_vs_ss"] = round((res["collect_ms"] + res["measure_ms"]) / res["ss_tan_ms"], 2)
    res["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
