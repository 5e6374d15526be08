"""Benchmark: `check --netns all`'s judging and JSON for many namespaces, on two samples recorded once.

    sudo python bench/bench_judge.py [--namespaces 100] [--listeners 50] [--rounds 5] [--baseline-src DIR]

Creates N namespaces (`ip netns add`, deleted at the end) with L listeners each (held by this process),
takes check's two samples of the own namespace and these (0.5 s apart, as `check` takes them) and pickles
them; a state dir is made by judging them once (first-seen times then set an hour back). Each round runs,
per tree (this one, and `--baseline-src`'s, order alternating), a process that judges the samples against a
copy of that state dir as `check` does and writes the JSON: CPU ms of each phase (medians of 3 in the
process). The trees' JSON texts must be equal (the model must be the same in both: the samples are pickled).
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

CHILD = r"""
import argparse, hashlib, pickle, shutil, sys, tempfile, time
from connwatch.commands import check, plugin
from connwatch.commands.common import pairs
from connwatch.rules.config import load_config
from connwatch.outputs.jsonout import check_dict, dumps
before, after = pickle.load(open(sys.argv[1], "rb"))
config = plugin.override(load_config(None), [], [])
judged, written, text = [], [], ""
for _ in range(3):
    state = tempfile.mkdtemp()
    shutil.copytree(sys.argv[2], state, dirs_exist_ok=True)
    start = time.process_time()
    result = check._judge_all(argparse.Namespace(state_dir=state), pairs(before, after), config)
    mid = time.process_time()
    from io import StringIO
    import contextlib
    out = StringIO()
    with contextlib.redirect_stdout(out):
        check._print("json", result)
    judged.append(mid - start)
    written.append(time.process_time() - mid)
    text = out.getvalue()
    shutil.rmtree(state)
judged.sort(); written.sort()
print(judged[1] * 1000, written[1] * 1000, hashlib.sha256(text.encode()).hexdigest(), len(text))
"""


def _listen(count: int) -> list[socket.socket]:
    socks = []
    for i in range(count):
        s = socket.socket()
        s.bind(("0.0.0.0", 10000 + i))
        s.listen(128)
        socks.append(s)
    return socks


def _record(names: list[str], path: Path) -> None:
    from connwatch.clock import SystemClock
    from connwatch.collect import CollectOptions
    from connwatch.collect_netns import collect_all
    from connwatch.record import replace

    def mine(snaps: list) -> list:  # type: ignore[type-arg]
        return [s for s in snaps if s.netns is None or s.netns.own or s.netns.name in set(names)]

    opts = CollectOptions()
    before = mine(collect_all(SystemClock(), replace(opts, owners=False, inbound_only=True), "all"))
    time.sleep(0.5)
    after = mine(collect_all(SystemClock(), opts, "all"))
    path.write_bytes(pickle.dumps((before, after)))


def _state(samples: Path, state: Path) -> None:
    """A state dir as a check left it (first-seen times an hour old)."""
    from connwatch.commands import check, plugin
    from connwatch.commands.common import pairs
    from connwatch.rules.config import load_config

    before, after = pickle.loads(samples.read_bytes())
    check._judge_all(argparse.Namespace(state_dir=str(state)), pairs(before, after),
                     plugin.override(load_config(None), [], []))
    with sqlite3.connect(state / "connwatch.db") as db:
        db.execute("UPDATE seen SET first_seen = first_seen - 3600")


def _run(src: Path, samples: Path, state: Path) -> tuple[float, float, str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(samples), str(state)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(src)}, check=True, timeout=600).stdout.split()
    return float(out[0]), float(out[1]), out[2], int(out[3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--listeners", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline-src", type=Path, help="another tree's src/ (e.g. `git archive main src`)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_judge.py: needs root (creates network namespaces)")
    from connwatch.collect import CollectOptions
    from connwatch.collect_netns import discover
    from connwatch.sources.netns import open_netns, run_in_each

    names = [f"cwjudge-{os.getpid()}-{i}" for i in range(a.namespaces)]
    made: list[str] = []
    held: list[socket.socket] = []
    work = Path(tempfile.mkdtemp(prefix="bench_judge."))
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            made.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        found, _ = discover(CollectOptions())
        fds = [open_netns(ref) for ref, _ in found if ref.name in set(names)]
        try:
            for socks in run_in_each(fds, lambda _fd: _listen(a.listeners)):
                assert isinstance(socks, list), socks
                held.extend(socks)
        finally:
            for fd in fds:
                os.close(fd)
        samples, state = work / "samples.pickle", work / "state"
        state.mkdir()
        _record(names, samples)
        _state(samples, state)
        trees = {"this tree": SRC, **({"baseline": a.baseline_src.resolve()} if a.baseline_src else {})}
        runs: dict[str, list[tuple[float, float, str, int]]] = {k: [] for k in trees}
        for i in range(a.rounds):
            for key in (list(trees) if i % 2 == 0 else list(reversed(trees))):
                runs[key].append(_run(trees[key], samples, state))
        print(f"{len(names)} namespaces x {a.listeners} listeners (+ the own one), {a.rounds} rounds, "
              f"load average {os.getloadavg()[0]:.2f}")
        for key, got in runs.items():
            print(f"{key:10s} judging {statistics.median(x[0] for x in got):8.1f} ms  JSON "
                  f"{statistics.median(x[1] for x in got):7.1f} ms  ({got[0][3]:,} characters)")
        if len(runs) == 2:
            mine, base = runs["this tree"], runs["baseline"]
            for phase, at in (("judging", 0), ("JSON", 1)):
                ratios = [float(m[at]) / float(b[at]) for m, b in zip(mine, base, strict=True)]
                print(f"ratio {phase:8s} median {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
            same = {x[2] for x in mine} == {x[2] for x in base} and len({x[2] for x in mine}) == 1
            print(f"JSON texts equal: {same}")
    finally:
        for s in held:
            s.close()
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
