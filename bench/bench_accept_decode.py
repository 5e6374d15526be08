"""Benchmark: sock_diag decode + aggregation of ~33,000 sockets, this tree against a baseline copy of
parsers/sock_diag.py (issue 16: the accept counting must not slow the decoder by more than a few %).

    git show <rev>:src/connwatch/parsers/sock_diag.py > /tmp/old_sock_diag.py
    sudo python bench/bench_accept_decode.py /tmp/old_sock_diag.py [--sockets 33000] [--rounds 30]

Runs inside a network namespace it creates (and deletes): four loopback listeners that accept and
close, 2,000 held connections, connect+close churn (server-side TIME_WAIT: the case the counting adds
work to). One dump is recorded, then both decoders run on the same bytes, interleaved; medians.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_snapshot import LOAD  # the same socket load as the snapshot benchmark

INNER = textwrap.dedent("""
    import importlib.util, socket, statistics, sys, threading, time
    from connwatch.sources import netlink
    from connwatch.parsers import sock_diag as new
    spec = importlib.util.spec_from_file_location("old_sock_diag", sys.argv[1])
    old = importlib.util.module_from_spec(spec); sys.modules["old_sock_diag"] = old; spec.loader.exec_module(old)
    target = int(sys.argv[2])
""") + LOAD + textwrap.dedent("""
    chunks = []
    def keep(chunk):
        chunks.append(bytes(chunk))
        return new.SocketAggregator(frozenset())(chunk)
    netlink.dump(netlink.open_socket(), socket.AF_INET, netlink.TCPF_ALL_BUT_LISTEN, 0, keep)
    def run(mod):
        agg = mod.SocketAggregator(frozenset(ports), 1000)
        for c in chunks:
            if agg(c):
                break
        return agg.summary()
    res = {"old": [], "new": []}
    for _ in range(int(sys.argv[3])):
        for k, mod in (("old", old), ("new", new)):
            for _ in range(10):
                t = time.perf_counter(); run(mod); res[k].append((time.perf_counter() - t) * 1000)
    s = run(new)
    inbound_tw = sum(sum(a.closed_by_age) for a in s.accepts)
    mo, mn = statistics.median(res["old"]), statistics.median(res["new"])
    print(f"{s.total} sockets ({inbound_tw} server-side TIME_WAIT): decode+aggregate median baseline "
          f"{mo:.1f} ms, this tree {mn:.1f} ms, ratio {mn / mo:.3f}")
""")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("baseline")
    ap.add_argument("--sockets", type=int, default=33000)
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespace)")
    name = f"cwb-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", INNER, a.baseline, str(a.sockets),
                        str(a.rounds)], check=True, timeout=600)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


if __name__ == "__main__":
    main()
