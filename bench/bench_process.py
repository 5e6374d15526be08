#!/usr/bin/env python3
"""Whole processes, interleaved with the peer: `connwatch snapshot --format json` against `ss -tan`
(wall and CPU), `connwatch check --interval 0.5` CPU against `ss -tan`'s, and each command's start-up
(exec to the first read of the kernel's state). Needs root: the load lives in a network namespace the
script makes and deletes (bench/twload.py; TIME_WAIT topped up between rounds, never during one).

    sudo python bench/bench_process.py [--sockets 35000] [--rounds 11] [--namespaces 100] [--startup 9]
    sudo python bench/bench_process.py --startup-only [--startup 15] [--baseline-src DIR/src]

Every round runs `ss -tan` and each connwatch variant once, in alternating order; the figures are the
medians of the per-round ratios connwatch / ss (and their range), with the machine's load average.
`--namespaces N` adds N small namespaces (lo up, 5 listeners each) for the `--netns all` rows (also measured against
`ss -tan` run in every namespace, EVERY_SS): connwatch
then samples every namespace on the host (those of other jobs too: their count is printed).
Start-up: from just before the fork to the first open of /proc/..., /run/netns or the first netlink
socket, seen by an audit hook in the process; a bare interpreter's fork-to-first-statement for scale.
Targets (issue 17): snapshot <= 1.0x ss at 35k, <= 0.6x at 300k; check CPU <= 1.5x ss's; start-up <= 60 ms.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
CONNWATCH = str(Path(sys.executable).parent / "connwatch") if (Path(sys.executable).parent / "connwatch").exists() \
    else None


# The peer of the `--netns all` rows: ss sees one namespace per run, so `ss -tan` in the host's and in each named
# one (`-N`, no `ip netns exec`: ss enters it itself). Each dump walks the kernel's host-wide socket hash, in
# every namespace, as connwatch's do.
EVERY_SS = "ss -tan, every namespace"
EVERY_SS_LOOP = 'ss -tan; for n in $(ip netns list | cut -d" " -f1); do ss -tan -N "$n"; done'
RUNQ = [math.nan]  # the last run()'s time runnable but waiting for a CPU (ms), read by rounds()


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one process run to completion, output discarded. Also RUNQ[0]: its time waiting
    on the run queue (/proc/PID/schedstat's run_delay, read once it exited and before it is reaped): on a
    shared machine, what the wall holds beyond the CPU time (measured: wall - CPU - run_delay ~0.5 ms for
    `ip netns exec NS ss -tan` and snapshot, at 35k and 300k sockets)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # (exited, not reaped: its /proc entry is left)
    wall = (time.perf_counter() - t) * 1000
    try:
        with open(f"/proc/{proc.pid}/schedstat") as f:
            RUNQ[0] = int(f.read().split()[1]) / 1e6
    except (OSError, IndexError, ValueError):
        RUNQ[0] = math.nan
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000


PROBE = """import os, sys, time
_fd, _done = int(os.environ["CW_PROBE_FD"]), []
def _hook(event, args):
    if _done:
        return
    what = args[0] if event in ("open", "os.scandir", "os.listdir") else None
    if (isinstance(what, str) and what.startswith(("/proc/", "/run/netns"))) or (
            event == "socket.__new__" and args[1] == 16):  # AF_NETLINK
        _done.append(1)
        os.write(_fd, f"{time.monotonic()} {time.process_time()}".encode())
sys.addaudithook(_hook)
from connwatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def startup_ms(args: list[str], env: dict[str, str]) -> tuple[float, float] | None:
    """Start-up: from just before the fork to the first kernel read (an open of /proc/..., /run/netns or a
    netlink socket), seen by an audit hook (sys.addaudithook: no ptrace stops, nothing traced but that);
    `python -c` then `from connwatch.cli import main` as the installed script does. (wall ms, CPU ms of the
    process until then: less sensitive than wall time to a loaded machine); None: no read."""
    read, write = os.pipe()
    try:
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", PROBE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**env, "CW_PROBE_FD": str(write)}, pass_fds=(write,), timeout=300)
        os.close(write)
        write = -1
        got = os.read(read, 64)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
    if not got:
        return None
    mono, cpu = map(float, got.split())
    return (mono - t) * 1000, cpu * 1000


EXIT_PROBE = """import os, sys
def _hook(event, args):
    what = args[0] if event in ("open", "os.scandir", "os.listdir") else None
    if (isinstance(what, str) and what.startswith(("/proc/", "/run/netns"))) or (
            event == "socket.__new__" and args[1] == 16):  # AF_NETLINK
        os._exit(0)
sys.addaudithook(_hook)
from connwatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def instructions(args: list[str], env: dict[str, str]) -> int | None:
    """User-space instructions from exec to the first kernel read (valgrind --tool=callgrind; the process
    exits there): the same count on a loaded machine as on a quiet one, ~50x slower to take."""
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                           EXIT_PROBE, *args], capture_output=True, text=True, env={**env, "PYTHONHASHSEED": "0"},
                          timeout=600)
    found = re.search(r"Collected : (\d+)", done.stderr)
    return int(found.group(1)) if found else None


def interpreter_ms(env: dict[str, str]) -> tuple[float, float]:
    """The same for an interpreter that does nothing: fork to its first statement."""
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-c", "import time; print(time.monotonic(), time.process_time())"],
                         capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    mono, cpu = map(float, out.split())
    return (mono - t) * 1000, cpu * 1000


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def small_namespaces(count: int, prefix: str = "cwproc") -> tuple[list[str], list[socket.socket]]:
    from connwatch.collect import CollectOptions
    from connwatch.collect_netns import discover
    from connwatch.sources.netns import open_netns, run_in_each

    names = [f"{prefix}-{os.getpid()}-{i}" for i in range(count)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    found, _ = discover(CollectOptions())
    fds = [open_netns(ref) for ref, _ in found if ref.name in set(names)]

    def listen(_fd: int) -> list[socket.socket]:
        socks = []
        for port in range(9001, 9006):
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen(128)
            socks.append(s)
        return socks
    held: list[socket.socket] = []
    try:
        for made in run_in_each(fds, listen):
            assert isinstance(made, list), made
            held.extend(made)
    finally:
        for fd in fds:
            os.close(fd)
    return names, held


class Load:
    def __init__(self, ns: str, target: int) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(HERE / "twload.py"),
                                      "--target", str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit(f"twload did not start: {line!r}")
        self.tw = int(line.split()[1])

    def top_up(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("top\n")
        self.proc.stdin.flush()
        self.tw = int(self.proc.stdout.readline().split()[1])
        return self.tw

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


Runs = dict[str, Callable[[], tuple[float, float]]]


def rounds(load: Load, n: int, runs: Runs, runq: dict[str, list[float]]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for i in range(n):
        load.top_up()
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for key in order:
            RUNQ[0] = math.nan
            out[key].append(runs[key]())
            runq.setdefault(key, []).append(RUNQ[0])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sockets", type=int, default=35000)
    ap.add_argument("--ns-prefix", default="cwproc",
                    help="name prefix of the namespaces made (one's own, on a shared host)")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--namespaces", type=int, default=0, help="small namespaces to add for the --netns all rows")
    ap.add_argument("--startup", type=int, default=9, help="start-up runs per command (0: skip)")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--no-snapshot", action="store_true", help="no `snapshot` rows (e.g. to time `check` alone)")
    ap.add_argument("--own-only", action="store_true", help="no `--netns all` rows (every namespace on the host)")
    ap.add_argument("--baseline-src", default=None,
                    help="another connwatch source tree (e.g. `git archive main src | tar -x -C DIR`, then DIR/src): "
                    "its rows are measured in the same rounds (PYTHONPATH)")
    ap.add_argument("--startup-only", action="store_true",
                    help="only the start-up figures (no load: start-up is measured in this namespace)")
    ap.add_argument("--instructions", action="store_true",
                    help="with --startup-only: instructions to the first kernel read per command (valgrind), "
                    "deterministic where wall and CPU times are not")
    ap.add_argument("--destinations", action="store_true",
                    help="add `destinations --interval 0` rows, text (piped) and JSON (and their baseline rows)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                    help="like --baseline-src, its `snapshot (own)` row only, labelled NAME (repeatable)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_process: needs root (network namespaces)")
    if CONNWATCH is None:
        raise SystemExit("bench_process: no connwatch script next to this interpreter (pip install -e .)")
    import connwatch

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(connwatch.__file__).parent)], check=True)
    if a.startup_only:
        state = Path(tempfile.mkdtemp(prefix="cwbench-"))
        try:
            if a.instructions:
                counted(state, a.baseline_src)
                return 0
            startup(a.startup, {**os.environ, "CONNWATCH_NETNS": "own"}, {**os.environ, "CONNWATCH_NETNS": "all"},
                    state, a.baseline_src)
        finally:
            shutil.rmtree(state, ignore_errors=True)
        return 0
    ns = f"{a.ns_prefix}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    names: list[str] = []
    held: list[socket.socket] = []
    load = None
    state = Path(tempfile.mkdtemp(prefix="cwbench-"))
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0",
                        "net.ipv4.ip_local_port_range=10000 60999",
                        f"net.ipv4.tcp_max_tw_buckets={max(262144, 2 * a.sockets)}"], check=True)
        if a.namespaces:
            names, held = small_namespaces(a.namespaces, a.ns_prefix)
        t = time.perf_counter()
        load = Load(ns, a.sockets)
        print(f"load: {load.tw} TIME_WAIT (+2,000 ESTABLISHED pairs) in {time.perf_counter() - t:.1f} s; "
              f"namespaces on the host: {len(os.listdir('/proc/self/ns')) and _host_namespaces()}")
        own = {**os.environ, "CONNWATCH_NETNS": "own"}
        every = {**os.environ, "CONNWATCH_NETNS": "all"}
        inns = ["ip", "netns", "exec", ns]
        runs: Runs = {"ss -tan": lambda: run([*inns, "ss", "-tan"], own)}
        if not a.no_snapshot:
            runs["snapshot (--netns own)"] = lambda: run([*inns, CONNWATCH, "snapshot", "--format", "json"], own)
        if not a.own_only and not a.no_snapshot:
            runs["snapshot (--netns all)"] = lambda: run([*inns, CONNWATCH, "snapshot", "--format", "json"], every)
        if not a.own_only:  # what ss needs to see the same: one `ss -tan` in each namespace on the host
            runs[EVERY_SS] = lambda: run(["sh", "-c", EVERY_SS_LOOP], own)
        check = [*inns, CONNWATCH, "check", "--interval", "0.5", "--format", "json", "--state-dir", str(state)]
        if not a.no_check:
            runs["check --interval 0.5 (own)"] = lambda: _ok(check, own)
            if not a.own_only:
                runs["check --interval 0.5 (all)"] = lambda: _ok(check, every)
        if a.baseline_src:
            b_own, b_every = {**own, "PYTHONPATH": a.baseline_src}, {**every, "PYTHONPATH": a.baseline_src}
            subprocess.run([sys.executable, "-m", "compileall", "-q", a.baseline_src], check=True)
            if not a.no_snapshot:
                runs["BASELINE snapshot (own)"] = lambda: run([*inns, CONNWATCH, "snapshot", "--format", "json"],
                                                              b_own)
            if not a.own_only and not a.no_snapshot:
                runs["BASELINE snapshot (all)"] = lambda: run([*inns, CONNWATCH, "snapshot", "--format", "json"],
                                                              b_every)
            if not a.no_check:
                b_check = [*check[:-1], str(state / "baseline")]  # its own alert store
                runs["BASELINE check (own)"] = lambda: _ok(b_check, b_own)
                if not a.own_only:
                    runs["BASELINE check (all)"] = lambda: _ok(b_check, b_every)
        if a.destinations:
            _destination_rows(runs, inns, own, a.baseline_src)
        for spec in a.variant:
            label, _, src = spec.partition("=")
            subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True)
            runs[f"{label} snapshot (own)"] = _variant(inns, {**own, "PYTHONPATH": src})
        print(f"load average before: {os.getloadavg()}")
        runq: dict[str, list[float]] = {}
        res = rounds(load, a.rounds, runs, runq)
        print(f"load average after: {os.getloadavg()}; TIME_WAIT at the end {load.tw}")
        ss = res["ss -tan"]
        print(f"`ss -tan`: wall median {statistics.median(w for w, _ in ss):.1f} ms, "
              f"CPU {statistics.median(c for _, c in ss):.1f} ms{_waits(runq['ss -tan'])}")
        for key, vals in res.items():
            if key == "ss -tan":
                continue
            wall = [v[0] / s[0] for v, s in zip(vals, ss, strict=True)]
            cpu = [v[1] / s[1] for v, s in zip(vals, ss, strict=True)]
            print(f"{key:30s} wall {statistics.median(v[0] for v in vals):7.1f} ms  "
                  f"CPU {statistics.median(v[1] for v in vals):7.1f} ms   / ss: wall {med(wall)}  CPU {med(cpu)}"
                  f"{_waits(runq.get(key, []))}")
        for key, mine in (("BASELINE snapshot (own)", "snapshot (--netns own)"),
                          ("BASELINE snapshot (all)", "snapshot (--netns all)"),
                          ("BASELINE check (own)", "check --interval 0.5 (own)"),
                          ("BASELINE check (all)", "check --interval 0.5 (all)")):
            if key in res and mine in res:
                cpu = [v[1] / b[1] for v, b in zip(res[mine], res[key], strict=True)]
                print(f"{mine:30s} / {key}: CPU pair ratios {med(cpu)}")
        for mine in ("snapshot (--netns all)", "check --interval 0.5 (all)"):
            if mine in res and EVERY_SS in res:  # against ss looking into every namespace, in the same rounds
                wall = [v[0] / b[0] for v, b in zip(res[mine], res[EVERY_SS], strict=True)]
                cpu = [v[1] / b[1] for v, b in zip(res[mine], res[EVERY_SS], strict=True)]
                print(f"{mine:30s} / {EVERY_SS}: wall {med(wall)}  CPU {med(cpu)}")
        for new, old in (("destinations text (own)", "BASELINE destinations text"),
                         ("destinations json (own)", "BASELINE destinations json")):
            if new in res and old in res:  # the same rounds: each pair interleaved
                wall = [v[0] / b[0] for v, b in zip(res[new], res[old], strict=True)]
                cpu = [v[1] / b[1] for v, b in zip(res[new], res[old], strict=True)]
                print(f"{new:30s} / baseline, pair ratios: wall {med(wall)}  CPU {med(cpu)}")
        if a.startup:
            startup(a.startup, own, every, state, a.baseline_src)
    finally:
        if load is not None:
            load.stop()
        for s in held:
            s.close()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(state, ignore_errors=True)
    return 0


def _waits(values: list[float]) -> str:
    """The run-queue waits (RUNQ) of a row's runs: median and largest, ms ('' where not measured)."""
    got = [v for v in values if not math.isnan(v)]
    return f"; waiting for a CPU: median {statistics.median(got):.1f} ms, max {max(got):.1f}" if got else ""


def _destination_rows(runs: Runs, inns: list[str], own: dict[str, str], baseline: str | None) -> None:
    """`destinations --interval 0` (one sample: no interval to wait) as text to a pipe and as JSON."""
    assert CONNWATCH is not None
    text = [*inns, CONNWATCH, "destinations", "--interval", "0"]
    json_ = [*text, "--format", "json"]
    runs["destinations text (own)"] = lambda: run(text, own)
    runs["destinations json (own)"] = lambda: run(json_, own)
    if baseline:
        b_own = {**own, "PYTHONPATH": baseline}
        runs["BASELINE destinations text"] = lambda: run(text, b_own)
        runs["BASELINE destinations json"] = lambda: run(json_, b_own)


def _variant(inns: list[str], env: dict[str, str]) -> Callable[[], tuple[float, float]]:
    assert CONNWATCH is not None
    argv = [*inns, CONNWATCH, "snapshot", "--format", "json"]
    return lambda: run(argv, env)


def _ok(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """check exits 0/1/2 by verdict: any of them is a completed run."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=300, text=True)
    wall = (time.perf_counter() - t) * 1000
    if done.returncode not in (0, 1, 2):
        raise SystemExit(f"{argv}: exit {done.returncode}: {done.stderr[-500:]}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000


def _host_namespaces() -> int:
    from connwatch.collect import CollectOptions
    from connwatch.collect_netns import discover

    return len(discover(CollectOptions())[0])


def counted(state: Path, baseline: str | None) -> None:
    """instructions() of each command (and of the baseline tree's), and of a bare interpreter's `pass`."""
    own = {**os.environ, "CONNWATCH_NETNS": "own"}
    if baseline:
        subprocess.run([sys.executable, "-m", "compileall", "-q", baseline], check=True)
    bare = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                           "pass"], capture_output=True, text=True, env={**own, "PYTHONHASHSEED": "0"}, timeout=600)
    found = re.search(r"Collected : (\d+)", bare.stderr)
    print(f"instructions to the first kernel read (callgrind; python -c pass: {found.group(1) if found else '?'}):")
    for key, argv in (("snapshot", ["snapshot"]), ("listeners", ["listeners"]),
                      ("check", ["check", "--interval", "0.1", "--state-dir", str(state)]),
                      ("destinations", ["destinations", "--interval", "0"]),
                      ("sources", ["sources", "--interval", "0"]),
                      ("top --batch", ["top", "--batch", "-n", "1"])):
        now = instructions(argv, own)
        line = f"  {key:14s} {now or 0:>12,}"
        if baseline:
            old = instructions([str(state / "b") if x == str(state) else x for x in argv],
                               {**own, "PYTHONPATH": baseline})
            line += f"   baseline {old or 0:>12,}   now / baseline {(now or 0) / (old or 1):.3f}"
        print(line, flush=True)


def startup(n: int, own: dict[str, str], every: dict[str, str], state: Path, baseline: str | None) -> None:
    """Start-up per command, interleaved with a bare interpreter (in this, the host's, namespace)."""
    cmds: dict[str, tuple[list[str], dict[str, str]]] = {
        "snapshot": (["snapshot"], own),
        "snapshot --netns all": (["snapshot"], every),
        "listeners": (["listeners"], own),
        "check": (["check", "--interval", "0.1", "--state-dir", str(state)], own),
        "destinations": (["destinations", "--interval", "0"], own),
        "sources": (["sources", "--interval", "0"], own),
        "top --batch": (["top", "--batch", "-n", "1"], own),
        "run": (["run", "--interval", "0.1", "--listen", "127.0.0.1:0", "--state-dir", str(state), "--help"], own),
    }
    del cmds["run"]  # (a long-running agent: not a one-shot start-up)
    if baseline:
        for key in ("snapshot", "listeners", "check", "destinations", "sources", "top --batch"):
            argv, env = cmds[key]
            cmds[f"BASELINE {key}"] = ([str(state / "baseline") if x == str(state) else x for x in argv],
                                       {**env, "PYTHONPATH": baseline})
    got: dict[str, list[tuple[float, float]]] = {"python -c (first statement)": [], **{k: [] for k in cmds}}
    for i in range(n):
        got["python -c (first statement)"].append(interpreter_ms(own))
        for key in (cmds if i % 2 == 0 else reversed(list(cmds))):
            argv, env = cmds[key]
            ms = startup_ms(argv, env)
            if ms is not None:
                got[key].append(ms)
    print(f"start-up, fork to the first kernel read (audit hook, median of {n}, load {os.getloadavg()[0]:.1f}):")
    for key, vals in got.items():
        if vals:
            wall, cpu = [v[0] for v in vals], [v[1] for v in vals]
            print(f"  {key:28s} wall {statistics.median(wall):6.1f} ms (range {min(wall):.1f}-{max(wall):.1f}), "
                  f"CPU {statistics.median(cpu):6.1f} ms (range {min(cpu):.1f}-{max(cpu):.1f})")
    for key in [k for k in cmds if k.startswith("BASELINE ")]:
        new, old = got[key.removeprefix("BASELINE ")], got[key]
        if len(new) == len(old) == n:  # (same rounds: the pairs are interleaved)
            wall = [a[0] / b[0] for a, b in zip(new, old, strict=True)]
            cpu = [a[1] / b[1] for a, b in zip(new, old, strict=True)]
            print(f"  {key.removeprefix('BASELINE '):28s} / baseline, pair ratios: wall {med(wall)}, CPU {med(cpu)}")

if __name__ == "__main__":
    sys.exit(main())
