#!/usr/bin/env python3
"""Where the agent's CPU goes per full sample: user and system CPU seconds of each step, measured with
getrusage(RUSAGE_THREAD) around the functions the agent calls (wrapped in this process only).

    sudo python bench/profile_agent.py [--size 100000] [--samples 12] [--netns own|all] [--small 0]

Builds bench_agent.py's load (`--tw-share` TIME_WAIT kept steady by a churn, the rest held ESTABLISHED) in
a namespace of its own, waits one TIME_WAIT lifetime, then runs an Agent in process inside that namespace:
a full sample every 5 s, a listener poll every 1 s, one /metrics rendering per sample (what one scrape
each 5 s costs). `--small N` adds N small namespaces (50 listeners each) sampled with `--netns all`.
Each step's time includes the steps it calls (a dump's system time is the kernel's walk and copying;
its user time is mostly decoding). Bounded: helpers have lifetimes, namespaces are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_agent as ba

INNER = r"""
import json, resource, sys, time, functools
from collections import defaultdict
from pathlib import Path
samples, netns, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
import os; PROFILE = os.environ.get("CW_CPROFILE")  # (bench only: cProfile of the main thread's measured samples)
acc = defaultdict(lambda: [0.0, 0.0, 0])
def ru():
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime, r.ru_stime
depth = {}
def wrap(mod, name, label=None, key=None):
    fn = getattr(mod, name)
    @functools.wraps(fn)
    def inner(*a, **k):
        lab = key(a, k) if key else (label or name)
        if depth.get(lab):  # recursion/nesting of the same label: count once
            return fn(*a, **k)
        depth[lab] = 1
        u, s = ru()
        try:
            return fn(*a, **k)
        finally:
            u2, s2 = ru()
            e = acc[lab]; e[0] += u2 - u; e[1] += s2 - s; e[2] += 1
            depth[lab] = 0
    setattr(mod, name, inner)
import connwatch.collect as C, connwatch.agent.loop as L, connwatch.collect_netns as CN
from connwatch.sources import netlink, diag_filter, processes, procfs, netns as NS
STATES = {netlink.TCPF_ALL_BUT_LISTEN: "dump: every state but LISTEN", netlink.TCPF_ALL_BUT_LISTEN & ~(1 << 6):
          "dump: every state but LISTEN and TIME_WAIT", 1 << 6: "dump: TIME_WAIT", netlink.TCPF_LISTEN: "dump: LISTEN"}
def states_of(a, k):
    st = a[2] if len(a) > 2 else k.get("states")
    return STATES.get(st, f"dump: states {st:#x}")
wrap(netlink, "dump", key=lambda a, k: states_of((None, None, a[2]), {}) + " (one family)")
wrap(netlink, "dump_both_families", key=lambda a, k: states_of((None, None, a[1]), {}) + " (both families)")
wrap(diag_filter, "dump_filtered", "dump: inbound TIME_WAIT (port filter)")
for name in ("read_counters", "read_sockstat", "read_sysctls", "read_host"):
    wrap(C, name, "proc: " + name)
wrap(C, "read_host_limits", "proc: read_host_limits")
wrap(C, "attach_owners", "owner scan (attach_owners)")
wrap(CN, "attach_owners", "owner scan (attach_owners)")
import connwatch.agent.netns_sample as NSS
wrap(NSS, "attach_owners", "owner scan (attach_owners)")
wrap(CN, "discover", "netns discovery")
wrap(NSS, "discover", "netns discovery")
wrap(CN, "collect_many", "netns: collect_many")
wrap(L, "judge", "judge (attributes, rules, alerts, store)")
wrap(L, "collect", "collect (own namespace)")
wrap(L, "log_lines", "log lines")
from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.clock import SystemClock
from connwatch.rules.config import load_config
agent = Agent(AgentOptions(state_dir=Path(tmp), listen_port=0, netns=netns), load_config(None), SystemClock())
for name in ("full_sample", "listener_poll", "_collect", "_plan_time_wait"):
    wrap(agent, name, "agent." + name)
wrap(agent.collector, "update", "metrics: collector.update")
wrap(agent.collector, "update_listeners", "metrics: collector.update_listeners")
wrap(agent.metrics_cache, "response", "metrics: render (one scrape per sample)")
import connwatch.outputs.prometheus as P
for name in ("measurement_families", "kernel_families", "listener_families", "_listener_key"):
    wrap(P, name, "metrics: " + name)
import connwatch.collect_quiet as Q
wrap(Q, "sample_quietly", "netns: one namespace's sample (quiet gate)")
wrap(NS, "run_in_each", "netns: run_in_each (threads entering namespaces)")
import connwatch.agent.steady as ST
why_judged = defaultdict(int)
FIELDS = ("host", "counters", "sockstat", "sysctls", "listeners", "sockets", "sources", "netns", "conntrack",
          "conntrack_stats")
_reusable = ST.reusable
def reusable(steady, prev, cur):
    got = _reusable(steady, prev, cur)
    if got is None and cur.netns is not None and not cur.netns.own:
        now = ST.content(cur)
        if steady is None:
            why_judged["not steady after its last judgement"] += 1
        else:
            for name, a, b in zip(FIELDS, steady.content, now or ()):
                if a != b:
                    why_judged["changed: " + name] += 1
    return got
L.reusable = reusable
_after = ST.steady_after
def steady_after(prev, cur, result):
    got = _after(prev, cur, result)
    if got is None and cur.netns is not None and not cur.netns.own:
        st = result.step
        a, b = ST.content(prev), ST.content(cur)
        for name, x, y in zip(FIELDS, a or (), b or ()):
            if x != y:
                why_judged["not steady: samples differ in " + name] += 1
        if st.raised or st.updated or st.still_active_clean or st.cleared:
            changed = (*st.raised, *st.updated, *st.still_active_clean, *st.cleared)
            why_judged["not steady: alerts " + ",".join(sorted({x.attribute for x in changed}))] += 1
        if result.store_error:
            why_judged["not steady: store error " + result.store_error[:80]] += 1
    return got
L.steady_after = steady_after
start_ru = ru(); t0 = time.monotonic()
warm = 2
for i in range(samples + warm):
    if i == warm:
        acc.clear(); start_ru = ru(); t0 = time.monotonic()
        if PROFILE:
            import cProfile; prof = cProfile.Profile(); prof.enable()
    nxt = time.monotonic() + 5
    agent.full_sample()
    agent.metrics_cache.response("", "")
    for _ in range(4):
        time.sleep(max(0.0, nxt - 4 + _ - time.monotonic()))
        agent.listener_poll()
    time.sleep(max(0.0, nxt - time.monotonic()))
u, s = ru()
if PROFILE:
    prof.disable(); prof.dump_stats(PROFILE)
tw = agent.time_wait.caches if agent.time_wait else {}
print(json.dumps({"acc": {k: v for k, v in acc.items()}, "total": [u - start_ru[0], s - start_ru[1]],
                  "wall": time.monotonic() - t0, "samples": samples,
                  "tw": {str(k): [c.dumps, c.reuses, c.reason] for k, c in tw.items()},
                  "process": list(resource.getrusage(resource.RUSAGE_SELF)[:2]), "why_judged": why_judged}))
"""


WALKS = r"""
import contextlib, json, resource, socket, sys
from connwatch.sources import netlink
from connwatch.parsers.sock_diag import SocketAggregator
states = netlink.TCPF_ALL_BUT_LISTEN & ~(1 << 6)
# the load's listening ports, as a sample knows them (without them the 5,000 server-side held sockets decode as
# outbound toward 5,000 destinations, ~10 us each: not what the agent pays)
PORTS = frozenset(json.loads(sys.argv[2]))
def ru():
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime, r.ru_stime
def one():
    with contextlib.closing(netlink.open_socket()) as s:
        netlink.dump_both_families(s, states, 0, SocketAggregator(PORTS))
def two():
    with contextlib.closing(netlink.open_socket()) as s:
        for fam in (socket.AF_INET, socket.AF_INET6):
            netlink.dump(s, fam, states, 0, SocketAggregator(PORTS))
def walk():  # SYN_SENT only (none here): the kernel's walk of its socket hashes, nearly nothing copied
    with contextlib.closing(netlink.open_socket()) as s:
        netlink.dump_both_families(s, 1 << 2, 0, SocketAggregator(frozenset()))
out = {"one": [], "two": [], "walk": []}
for _ in range(int(sys.argv[1])):
    for name, fn in (("one", one), ("two", two), ("walk", walk)):
        a = ru(); fn(); b = ru()
        out[name].append([b[0] - a[0], b[1] - a[1]])
print(json.dumps(out))
"""


def walks(ns: str, reps: int) -> None:
    """One legacy dump of both families against one dump per family (every state but LISTEN and
    TIME_WAIT), and the walk alone, interleaved: CPU and system seconds of each, medians and the pair ratios."""
    import statistics

    ports = json.dumps(sorted({ba.HOLD_PORT, *(port for _host, port in ba.DESTS)}))
    r = json.loads(ba.sh(ns, sys.executable, "-c", WALKS, str(reps), ports).strip().splitlines()[-1])
    ratios = [a[0] / b[0] for a, b in zip(r["one"], r["two"], strict=True) if b[0] > 0]
    for k in ("one", "two"):
        print(f"non-TIME_WAIT dump, {k} walk(s): CPU median {statistics.median(x[0] for x in r[k]) * 1000:.1f} ms, "
              f"system {statistics.median(x[1] for x in r[k]) * 1000:.1f} ms")
    print(f"the walk alone (a SYN_SENT-only dump, nothing to copy): CPU median "
          f"{statistics.median(x[0] for x in r['walk']) * 1000:.1f} ms, "
          f"system {statistics.median(x[1] for x in r['walk']) * 1000:.1f} ms")
    print(f"one walk / two walks CPU: median {statistics.median(ratios):.2f} "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}), load {ba.uptime_load()}")
    ss_walks(ns, reps, statistics.median(x[0] for x in r["walk"]))


def _child_cpu(args: list[str]) -> float:
    """CPU seconds (user + system) of one child process, from wait4's rusage."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"profile_agent: {' '.join(args)} exited {proc.returncode}")
    return ru.ru_utime + ru.ru_stime


def ss_walks(ns: str, reps: int, ours: float) -> None:
    """The same walk paid by `ss`: `ss -tanH state syn-sent` (nothing to print; one dump per family, so two walks)
    against `ss -tanH -4 state syn-sent` (one walk), interleaved; the difference is one walk of the kernel's socket
    hash as ss asks for it. (Not against an empty namespace: the hash is host-wide, a dump there walks it too.)"""
    import statistics

    both, four = [], []
    for _ in range(reps):
        both.append(_child_cpu(ba.cmd(ns, "ss", "-tanH", "state", "syn-sent")))
        four.append(_child_cpu(ba.cmd(ns, "ss", "-tanH", "-4", "state", "syn-sent")))
    walk = statistics.median(b - f for b, f in zip(both, four, strict=True))
    print(f"`ss -tanH state syn-sent`: CPU median {statistics.median(both) * 1000:.1f} ms (two walks), with -4 "
          f"{statistics.median(four) * 1000:.1f} ms (one): one walk {walk * 1000:.1f} ms"
          + (f"; connwatch's walk alone / ss's: {ours / walk:.2f}" if walk > 0 else ""))
    print(f"the walk alone every 5 s: connwatch {ours / 5 * 100:.2f} % of a core, ss {walk / 5 * 100:.2f} %")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=100_000)
    p.add_argument("--tw-share", type=float, default=0.9)
    p.add_argument("--samples", type=int, default=12)
    p.add_argument("--netns", default="own")
    p.add_argument("--small", type=int, default=0,
                   help="small namespaces (50 listeners each) besides the load's: the agent then samples them all "
                        "(`--netns all` from the host's namespace, other jobs' namespaces hidden)")
    p.add_argument("--fill", type=float, default=60.0)
    p.add_argument("--walks", type=int, default=0, help="also time N interleaved pairs: one walk vs one per family")
    p.add_argument("--prefix", default="cwprof", help="start of the names of the namespaces made here")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("profile_agent: needs root for a network namespace")
    ns = f"{a.prefix}-{uuid.uuid4().hex[:6]}"
    small = [f"{a.prefix}s-{uuid.uuid4().hex[:6]}" for _ in range(a.small)]
    procs: list[subprocess.Popen[str]] = []
    life = a.fill + a.samples * 5 + 60
    try:
        for name in (ns, *small):
            subprocess.run(["ip", "netns", "add", name], check=True)
            ba.sh(name, "ip", "link", "set", "lo", "up")
        ba.sh(ns, "sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0")
        if small:  # 50 listeners in each, held by one process whose threads entered them
            procs.append(subprocess.Popen([sys.executable, "-c", ba.HOLDER, ",".join(small), "50", str(life)],
                                          stdout=subprocess.PIPE, text=True))
            assert procs[-1].stdout is not None and procs[-1].stdout.readline().startswith("READY")
        tw_target = int(a.size * a.tw_share)
        hold = max((a.size - tw_target) // 2, 0)
        procs.append(ba.start(ns, sys.executable, "-c", ba.SERVER, repr(ba.DESTS), str(ba.HOLD_PORT), str(life),
                              ready=True))
        procs.append(ba.start(ns, sys.executable, "-c", ba.CLIENT, repr(ba.DESTS), str(ba.HOLD_PORT), str(hold),
                              str(tw_target / 60.0), str(life), ready=True))
        time.sleep(a.fill)
        total, tw = ba.count(ns)
        print(f"{total} sockets ({tw} TIME_WAIT), {a.small} small namespaces, load {ba.uptime_load()}")
        if a.walks:
            walks(ns, a.walks)
        with tempfile.TemporaryDirectory() as tmp:
            if small:  # from the host's namespace, seeing only this run's namespaces (bench_agent.isolated)
                out = subprocess.run(ba.isolated([ns, *small], sys.executable, "-c", INNER, str(a.samples), "all", tmp),
                                     capture_output=True, text=True, check=True, timeout=a.samples * 5 + 300).stdout
            else:
                run = subprocess.run(ba.cmd(ns, sys.executable, "-c", INNER, str(a.samples), a.netns, tmp),
                                     capture_output=True, text=True, timeout=a.samples * 5 + 120)
                if run.returncode:
                    raise SystemExit(f"profile_agent: the agent failed: {run.stderr[-3000:]}")
                out = run.stdout
        print(f"load after: {ba.uptime_load()}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        for name in (ns, *small):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    r = json.loads(out.strip().splitlines()[-1])
    n = r["samples"]
    rows = defaultdict(list)
    for k, (u, s, calls) in r["acc"].items():
        rows[k] = [u / n * 1000, s / n * 1000, calls / n]
    u, s = r["total"]
    print(f"main thread per 5 s sample: user {u / n * 1000:.1f} ms, system {s / n * 1000:.1f} ms "
          f"= {(u + s) / r['wall'] * 100:.2f} % of a core (wall {r['wall']:.0f} s)")
    print(f"{'step (inclusive)':58s} {'user ms':>8s} {'sys ms':>8s} {'calls':>6s}   per 5 s sample")
    for k, (um, sm, c) in sorted(rows.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
        print(f"{k:58s} {um:8.2f} {sm:8.2f} {c:6.1f}")
    print("other namespaces judged again, why (all samples):", r["why_judged"])
    print("TIME_WAIT caches (dumps, reuses, last reason):", r["tw"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
