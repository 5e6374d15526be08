#!/usr/bin/env python3
"""The agent's main-thread CPU per step with `--netns all` over N small namespaces, two source trees interleaved.

    sudo python bench/bench_netns_agent.py [--small 100] [--rounds 3] [--samples 8] [--baseline-src /work/main/src]

Makes N namespaces of 50 idle listeners each (bench_agent.HOLDER), then runs an Agent in process (as
profile_agent.py does, from the host's namespace seeing only these namespaces) for each source tree in turn,
`--rounds` times (A B A B ...): two warm-up samples, then `--samples` cycles of a full sample, one /metrics
rendering and four listener polls, back to back (no sleeps: the CPU of each step is what is measured, with
getrusage(RUSAGE_THREAD)). Prints per tree the median over rounds of each step's CPU per cycle and the
pair ratios (this tree / baseline) of the same round. `--check` also compares the cached /metrics body
with an uncached rendering of the same registry at every cycle (byte for byte).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_agent as ba

INNER = r"""
import functools, json, resource, sys, tempfile
from collections import defaultdict
from pathlib import Path
samples, check = int(sys.argv[1]), sys.argv[2] == "1"
acc = defaultdict(float)
def ru():
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime
def wrap(obj, name, label):
    fn = getattr(obj, name)
    @functools.wraps(fn)
    def inner(*a, **k):
        t = ru()
        try:
            return fn(*a, **k)
        finally:
            acc[label] += ru() - t
    setattr(obj, name, inner)
from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.clock import SystemClock
from connwatch.rules.config import load_config
from prometheus_client.exposition import generate_latest
tmp = tempfile.mkdtemp()
agent = Agent(AgentOptions(state_dir=Path(tmp), listen_port=0, netns="all"), load_config(None), SystemClock())
wrap(agent, "_collect", "collect")
wrap(agent.collector, "update", "collector.update")
wrap(agent, "listener_poll", "listener polls (4)")
wrap(agent.metrics_cache, "response", "render")
mismatch = 0
for i in range(samples + 2):
    if i == 2:
        acc.clear(); start = ru()
    t = ru(); agent.full_sample(); acc["full_sample"] += ru() - t
    _h, body = agent.metrics_cache.response("", "")
    strip = lambda b: [x for x in b.splitlines() if b"process_" not in x]
    if check and strip(body) != strip(generate_latest(agent.registry)):  # (process_*: the CPU time of each moment)
        mismatch += 1
        import difflib
        print("\n".join(list(difflib.unified_diff([x.decode() for x in strip(body)], [x.decode() for x in strip(
            generate_latest(agent.registry))], lineterm="", n=0))[:8]), file=sys.stderr)
    for _ in range(4):
        agent.listener_poll()
total = ru() - start
print(json.dumps({"acc": {k: v / samples * 1000 for k, v in acc.items()}, "total": total / samples * 1000,
                  "mismatch": mismatch, "reused": agent.samples.get("judgements_reused", 0)}))
"""

PROFILE = r"""
import cProfile, pstats, sys, tempfile
from pathlib import Path
from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.clock import SystemClock
from connwatch.rules.config import load_config
agent = Agent(AgentOptions(state_dir=Path(tempfile.mkdtemp()), listen_port=0, netns="all"), load_config(None),
              SystemClock())
pr = cProfile.Profile()
on = [False]
if len(sys.argv) > 2:  # the sampling threads' part instead: each namespace's sample (collect_netns._sample)
    import connwatch.collect_netns as CN
    inner = CN._sample
    def _sample(*a, **k):
        if i < 2 or not on[0]:
            return inner(*a, **k)
        pr.enable()
        try:
            return inner(*a, **k)
        finally:
            pr.disable()
    CN._sample = _sample
for i in range(6):
    if i == 2:
        on = [len(sys.argv) > 2]
        if not on[0]:
            pr.enable()
    agent.full_sample()
    agent.metrics_cache.response("", "")
    for _ in range(4):
        agent.listener_poll()
pr.disable()
pstats.Stats(pr).sort_stats(sys.argv[1]).print_stats(70)
"""


def run(src: str, names: list[str], samples: int, check: bool) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": src}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(ba.isolated(names, sys.executable, "-c", INNER, str(samples), "1" if check else "0",
                                     prefix="cwh1b"),
                         capture_output=True, text=True, env=env, timeout=600)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    if out.stderr.strip():
        print(out.stderr[:1500])
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--src", default=str(Path(__file__).resolve().parent.parent / "src"))
    p.add_argument("--baseline-src", default="/work/main/src")
    p.add_argument("--check", action="store_true")
    p.add_argument("--prefix", default="cwbn")
    p.add_argument("--profile", metavar="SORT", help="instead: cProfile this tree's cycles once (pstats sort key)")
    p.add_argument("--sampler", action="store_true", help="with --profile: the namespaces' samples (their thread)")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_netns_agent: needs root")
    small = [f"{a.prefix}s-{uuid.uuid4().hex[:6]}" for _ in range(a.small)]
    holder = None
    results: dict[str, list[dict[str, object]]] = {"this": [], "baseline": []}
    try:
        for name in small:
            subprocess.run(["ip", "netns", "add", name], check=True)
            ba.sh(name, "ip", "link", "set", "lo", "up")
        holder = subprocess.Popen([sys.executable, "-c", ba.HOLDER, ",".join(small), "50", "3600"],
                                  stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": a.src})
        assert holder.stdout is not None and holder.stdout.readline().startswith("READY")
        print(f"{a.small} namespaces of 50 listeners, load {ba.uptime_load()}")
        if a.profile:
            env = {**os.environ, "PYTHONPATH": a.src}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            print(subprocess.run(ba.isolated(small, sys.executable, "-c", PROFILE, a.profile,
                                                     *(["sampler"] if a.sampler else []), prefix="cwh1b"),
                                 capture_output=True, text=True, env=env, timeout=600).stdout)
            return 0
        for _ in range(a.rounds):
            for tree, src in (("this", a.src), ("baseline", a.baseline_src)):
                results[tree].append(run(src, small, a.samples, a.check))
        print(f"load after: {ba.uptime_load()}")
    finally:
        if holder is not None:
            holder.kill()
            holder.communicate(timeout=10)
        for name in small:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    steps = sorted({k for r in results["this"] for k in r["acc"]})  # type: ignore[attr-defined]
    print(f"{'CPU ms per cycle (median of rounds)':36s} {'this':>8s} {'baseline':>9s} {'ratio (pairs)':>20s}")
    for k in [*steps, "total"]:
        this = [r["acc"].get(k, 0.0) if k != "total" else r["total"] for r in results["this"]]  # type: ignore
        base = [r["acc"].get(k, 0.0) if k != "total" else r["total"] for r in results["baseline"]]  # type: ignore
        ratios = [x / y for x, y in zip(this, base, strict=True) if y]
        rr = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "-"
        print(f"{k:36s} {statistics.median(this):8.2f} {statistics.median(base):9.2f} {rr:>20s}")
    print("mismatches (this, baseline):", [r["mismatch"] for r in results["this"]],
          [r["mismatch"] for r in results["baseline"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
