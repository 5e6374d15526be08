#!/usr/bin/env python3
"""Agent cost at 10,000 and 100,000 sockets: `connwatch run` (TIME_WAIT dumped when due, the default),
`connwatch run --time-wait every-sample` (every state dumped every full sample, as before) and
node_exporter (default collectors + tcpstat) run AT THE SAME TIME in one network namespace on the same
sockets, each scraped every 5 s like Prometheus would; CPU (% of one core) of each process over
consecutive windows, and the pair ratios per window. Needs root (a namespace of its own; traffic on its
loopback only). Bounded: every helper process has a lifetime, the namespace is deleted at the end.

    sudo python bench/bench_agent.py [--sizes 10000,100000] [--windows 4] [--window 30]
    sudo python bench/bench_agent.py --sizes 100000 --solo --window 60 [--no-every-sample]

`--solo` measures each process alone, in turn (the others stopped meanwhile: rotate()), where the default
runs them all at once: four monitors walking one socket hash on a 2-core VM take each other's CPU and
caches, and a host runs one.

The load: `--tw-share` (0.9) of the sockets are TIME_WAIT, kept at that level by a steady churn
(connect+close, the server closes after the client's FIN) of sockets/60 per second over 16
destinations (4 loopback addresses x 4 ports, each well below any ephemeral-port threshold); the rest
are held ESTABLISHED connections (both ends in the namespace). Also /metrics scrape latency from one
client at 100+ scrapes/s (rendered once per sample, not per scrape) and `ss -tan` for scale.

With `--small N` (README: 100), also `connwatch run --netns all` from the host's namespace, sampling the
host's, the load's and N small namespaces with `--listeners` listeners each (held by one process whose
threads entered them), scraped every 5 s too. It runs in a pid and mount namespace of its own where
/run/netns shows only this benchmark's namespaces, so other jobs' namespaces on the machine are not
sampled (their processes are not visible either: the owner scan sees only the agent's own).

Targets (issue 17): the agent at 100k sockets and a 5 s interval <= 1 % of a core (node_exporter was
measured at 3.4 %).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
HOLD_PORT, METRICS_DUE, METRICS_EVERY, NODE, METRICS_ALL, METRICS_BEFORE = 7000, 19816, 19817, 19818, 19819, 19820
METRICS_ALL_BEFORE = 19821
DESTS = [(f"127.0.0.{a}", 7101 + p) for a in range(1, 5) for p in range(4)]
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")

SERVER = """import selectors, socket, sys, time
dests, hold_port, life = eval(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
for host, port in [*dests, ("127.0.0.1", hold_port)]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(4096); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, "hold" if port == hold_port else "tw")
held = []
print("READY", flush=True)
end = time.monotonic() + life
while time.monotonic() < end:
    for key, _ in sel.select(0.5):
        if key.data in ("hold", "tw"):
            while True:
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    break
                if key.data == "hold":
                    held.append(conn)
                else:
                    conn.setblocking(False); sel.register(conn, selectors.EVENT_READ, "conn")
        else:
            try:
                data = key.fileobj.recv(64)
            except OSError:
                data = b""
            if not data:  # the client's FIN: close second, the client keeps TIME_WAIT
                sel.unregister(key.fileobj); key.fileobj.close()
"""

CLIENT = """import socket, sys, time
dests, hold_port, hold = eval(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rate, life = float(sys.argv[4]), float(sys.argv[5])
held = [socket.create_connection(("127.0.0.1", hold_port)) for _ in range(hold)]
print("READY", flush=True)
start = time.monotonic(); done = 0
while time.monotonic() - start < life:
    due = start + done / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    s = socket.socket()
    try:
        s.connect(dests[done % len(dests)])
    except OSError as exc:
        print("ERROR", exc, flush=True); break
    s.close(); done += 1
"""

SCRAPER = """import sys, time, urllib.request
urls, every, life = sys.argv[1].split(","), float(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + life; nxt = time.monotonic()
while time.monotonic() < end:
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
        except OSError:
            pass
    nxt += every
    time.sleep(max(nxt - time.monotonic(), 0))
"""

LATENCY = """import json, sys, time, urllib.request
url = sys.argv[1]; lat = []
end = time.monotonic() + 2.0
while time.monotonic() < end or len(lat) < 200:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read()
    lat.append(time.perf_counter() - t)
print(json.dumps({"lat": lat, "bytes": len(body)}))
"""


HOLDER = """import os, socket, sys, time
from connwatch.sources.netns import run_in_each
names, count, life = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3])
fds = [os.open(f"/run/netns/{n}", os.O_RDONLY) for n in names]
def listen(_fd):
    out = []
    for i in range(count):
        s = socket.socket(); s.bind(("127.0.0.1", 8000 + i)); s.listen(128); out.append(s)
    return out
held = run_in_each(fds, listen)
print("READY", flush=True)
time.sleep(life)
"""

ISOLATED = """set -e
d=$(mktemp -d "/tmp/${PREFIX:-cwbench}-netns.XXXXXX")
for n in $NAMES; do touch "$d/$n"; mount --bind "/run/netns/$n" "$d/$n"; done
mount --rbind "$d" /run/netns
exec "$@"
"""


def isolated(names: list[str], *args: str, prefix: str = "cwbench") -> list[str]:
    """args in a pid and mount namespace of their own where /run/netns lists only `names` (bind mounts in
    /tmp/<prefix>-netns.*)."""
    return ["unshare", "--pid", "--fork", "--kill-child=SIGTERM", "--mount-proc", "--mount", "--propagation", "private",
            "env", f"NAMES={' '.join(names)}", f"PREFIX={prefix}", "sh", "-c", ISOLATED, "sh", *args]


def child_pid(pid: int, deadline_s: float = 10) -> int:
    """The (single) child of `unshare --fork`: the measured program."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise SystemExit("the isolated agent did not start")


def cmd(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def sh(ns: str, *args: str, timeout: float = 120) -> str:
    return subprocess.run(cmd(ns, *args), capture_output=True, text=True, check=True, timeout=timeout).stdout


def start(ns: str, *args: str, ready: bool = False, log: Path | None = None) -> subprocess.Popen[str]:
    err = log.open("w") if log is not None else subprocess.PIPE
    proc = subprocess.Popen(cmd(ns, *args), stdout=subprocess.PIPE, stderr=err, text=True)
    if ready:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit(f"helper did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def leaf(proc: subprocess.Popen[str]) -> int:
    """The pid of the measured program: `ip netns exec` and `env` exec it, so the same pid; `unshare --fork`
    forks it."""
    return child_pid(proc.pid) if proc.args[0] == "unshare" else proc.pid  # type: ignore[index]


def count(ns: str) -> tuple[int, int]:
    text = sh(ns, "ss", "-tanH")
    rows = text.splitlines()
    return len(rows), sum(1 for r in rows if r.startswith("TIME-WAIT"))


def uptime_load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[0]


def rotate(pids: dict[str, int], scrapers: dict[str, subprocess.Popen[str]], windows: int, window: float,
           settle: float) -> dict[str, list[float]]:
    """`--solo`: each window measures one process while the others (and their scrapers) are stopped
    (SIGSTOP), in turn, `windows` rounds: no other monitor walks the socket hash or takes the CPU meanwhile.
    A resumed agent first catches up (its first sample after a stop dumps TIME_WAIT and refreshes owners,
    60 s having passed): `settle` seconds run unmeasured, so a 60 s window then holds one due TIME_WAIT
    dump, as a steadily running agent does."""
    cpu: dict[str, list[float]] = {k: [] for k in pids}
    everyone = [*pids.values(), *(p.pid for p in scrapers.values())]
    try:
        for _ in range(windows):
            for name, pid in pids.items():
                for other in everyone:
                    os.kill(other, signal.SIGSTOP)
                for one in (pid, scrapers[name].pid):
                    os.kill(one, signal.SIGCONT)
                time.sleep(settle)
                c0, t0 = cpu_seconds(pid), time.monotonic()
                time.sleep(window)
                cpu[name].append((cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100)
    finally:
        for other in everyone:
            os.kill(other, signal.SIGCONT)
    return cpu


def measure(ns: str, size: int, tw_share: float, windows: int, window: float, tmp: Path,
            a_fill: float = 60.0, small: list[str] | None = None, listeners: int = 50,
            before: str | None = None, prefix: str = "cwbench", solo: bool = False,
            every_sample: bool = True, settle: float = 5.0) -> dict[str, object]:
    tw_target = int(size * tw_share)
    rate = tw_target / 60.0
    hold = max((size - tw_target) // 2, 0)
    count_agents = (1 + every_sample + bool(before) + bool(NODE_EXPORTER) + (1 + bool(before)) * bool(small))
    life = 60 + 30 + windows * (window + settle) * (count_agents if solo else 1) + 60
    procs: list[subprocess.Popen[str]] = []
    agents: dict[str, subprocess.Popen[str]] = {}
    stop_pid: dict[int, int] = {}  # the process to signal instead of a Popen's own
    try:
        procs.append(start(ns, sys.executable, "-c", SERVER, repr(DESTS), str(HOLD_PORT), str(life), ready=True))
        procs.append(start(ns, sys.executable, "-c", CLIENT, repr(DESTS), str(HOLD_PORT), str(hold), str(rate),
                           str(life), ready=True))
        if small:
            procs.append(subprocess.Popen([sys.executable, "-c", HOLDER, ",".join(small), str(listeners), str(life)],
                                          stdout=subprocess.PIPE, text=True))
            assert procs[-1].stdout is not None and procs[-1].stdout.readline().startswith("READY")
        time.sleep(a_fill)  # one TIME_WAIT lifetime: the population reaches its steady level
        total, tw = count(ns)
        print(f"{size} target: {total} sockets ({tw} TIME_WAIT, churn {rate:.0f}/s, {hold} held connections)")
        kinds = [("when-due", METRICS_DUE, ["--log-level", "debug"]),
                 ("every-sample", METRICS_EVERY, ["--time-wait", "every-sample"])][:2 if every_sample else 1]
        for name, port, extra in kinds:
            agents[name] = start(ns, sys.executable, "-m", "connwatch", "run", "--interval", "5", "--netns", "own",
                                 "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp / f"state-{size}-{name}"),
                                 *extra, log=tmp / f"{name}-{size}.log")
            procs.append(agents[name])
        urls = [f"http://127.0.0.1:{METRICS_DUE}/metrics", f"http://127.0.0.1:{METRICS_EVERY}/metrics"][:len(kinds)]
        if before:  # an older tree's `run` (its src/ first on the path), when-due too, in the same windows
            agents["before"] = start(ns, "env", f"PYTHONPATH={before}", sys.executable, "-m", "connwatch", "run",
                                     "--interval", "5", "--netns", "own", "--listen", f"127.0.0.1:{METRICS_BEFORE}",
                                     "--state-dir", str(tmp / f"state-{size}-before"), log=tmp / f"before-{size}.log")
            procs.append(agents["before"])
            urls.append(f"http://127.0.0.1:{METRICS_BEFORE}/metrics")
        if NODE_EXPORTER:
            agents["node_exporter"] = start(ns, NODE_EXPORTER, "--collector.tcpstat",
                                            f"--web.listen-address=127.0.0.1:{NODE}")
            procs.append(agents["node_exporter"])
            urls.append(f"http://127.0.0.1:{NODE}/metrics")
        if small:
            log = (tmp / f"all-{size}.log").open("w")
            agents["netns-all"] = subprocess.Popen(
                isolated([ns, *small], sys.executable, "-m", "connwatch", "run", "--interval", "5", "--netns", "all",
                         "--listen", f"127.0.0.1:{METRICS_ALL}", "--state-dir", str(tmp / f"state-{size}-all"),
                         prefix=prefix),
                stdout=subprocess.PIPE, stderr=log, text=True)
            procs.append(agents["netns-all"])
            stop_pid[agents["netns-all"].pid] = child_pid(agents["netns-all"].pid)  # unshare ignores SIGTERM
            url = f"http://127.0.0.1:{METRICS_ALL}/metrics"
            if before:  # the older tree's `--netns all` too, over the same namespaces in the same windows
                agents["netns-all-before"] = subprocess.Popen(
                    isolated([ns, *small], "env", f"PYTHONPATH={before}", sys.executable, "-m", "connwatch", "run",
                             "--interval", "5", "--netns", "all", "--listen", f"127.0.0.1:{METRICS_ALL_BEFORE}",
                             "--state-dir", str(tmp / f"state-{size}-all-before"), prefix=prefix),
                    stdout=subprocess.PIPE, stderr=(tmp / f"all-before-{size}.log").open("w"), text=True)
                procs.append(agents["netns-all-before"])
                stop_pid[agents["netns-all-before"].pid] = child_pid(agents["netns-all-before"].pid)
                url += f",http://127.0.0.1:{METRICS_ALL_BEFORE}/metrics"
            if not solo:
                procs.append(subprocess.Popen([sys.executable, "-c", SCRAPER, url, "5", str(windows * window + 60)]))
        time.sleep(15)  # imports, first samples
        for name, proc in agents.items():
            if proc.poll() is not None:
                log = tmp / f"{name}-{size}.log"
                raise SystemExit(f"{name} exited: {log.read_text()[-2000:] if log.exists() else ''}")
        pids = {k: leaf(p) for k, p in agents.items()}
        loads = []
        if solo:  # one scraper per process, stopped with it (bench_agent.rotate)
            scrapers = {k: _scraper(ns, k, life) for k in agents}
            procs.extend(scrapers.values())
            cpu = rotate(pids, scrapers, windows, window, settle)
            loads.append(uptime_load())
        else:
            procs.append(start(ns, sys.executable, "-c", SCRAPER, ",".join(urls), "5", str(windows * window + 30)))
            cpu = {k: [] for k in agents}
            for _ in range(windows):
                c0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
                t0 = time.monotonic()
                time.sleep(window)
                dt = time.monotonic() - t0
                for k, pid in pids.items():
                    cpu[k].append((cpu_seconds(pid) - c0[k]) / dt * 100)
                loads.append(uptime_load())
        rss = {k: rss_mb(pid) for k, pid in pids.items()}
        sampled = "?"
        if small:
            text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_ALL}/metrics", timeout=10).read().decode()
            sampled = str(sum(1 for line in text.splitlines() if line.startswith("connwatch_netns_info{")))
            kinds = {line.split('"')[1]: line.split()[-1] for line in text.splitlines()
                     if line.startswith("connwatch_samples_total{kind=")}  # (full, netns_served_again, ...)
            sampled += f" (its samples: {kinds})"
        total2, tw2 = count(ns)
        lat = json.loads(sh(ns, sys.executable, "-c", LATENCY, urls[0]))
        ss = []
        for _ in range(5):
            t = time.perf_counter()
            sh(ns, "ss", "-tan")
            ss.append((time.perf_counter() - t) * 1000)
        samples = sh(ns, sys.executable, "-c", "import sys, urllib.request; print(urllib.request.urlopen("
                     f"'{urls[0]}').read().decode())")
        tw_dumps = next((line.split()[-1] for line in samples.splitlines()
                         if line.startswith('connwatch_samples_total{kind="time_wait"}')), "?")
        full = next((line.split()[-1] for line in samples.splitlines()
                     if line.startswith('connwatch_samples_total{kind="full"}')), "?")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(stop_pid.get(proc.pid, proc.pid), signal.SIGTERM if proc in agents.values() else signal.SIGKILL)
        for proc in procs:
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(stop_pid.get(proc.pid, proc.pid), signal.SIGKILL)
                proc.communicate(timeout=10)
    due_log = (tmp / f"when-due-{size}.log").read_text()
    reasons = Counter(re.sub(r"[0-9.]+", "N", m)
                      for m in re.findall(r"TIME_WAIT of netns key \d+: (.*) \(sockstat", due_log))
    sorted_lat = sorted(lat["lat"])
    return {"size": size, "sockets": (total, total2), "time_wait": (tw, tw2), "cpu": cpu, "rss": rss, "loads": loads,
            "scrape_p50_ms": statistics.median(sorted_lat) * 1000,
            "scrape_p99_ms": sorted_lat[int(len(sorted_lat) * 0.99) - 1] * 1000, "scrapes": len(sorted_lat),
            "scrapes_per_s": len(sorted_lat) / sum(sorted_lat), "metrics_bytes": lat["bytes"],
            "ss_tan_ms": statistics.median(ss), "tw_dumps": tw_dumps, "full_samples": full,
            "reasons": dict(reasons), "netns_labels": sampled}


def _scraper(ns: str, name: str, life: float) -> subprocess.Popen[str]:
    """The scraper of one measured process (`--solo`): every 5 s, from the load's namespace, or from the
    host's for the `--netns all` agents (they run there)."""
    port = {"when-due": METRICS_DUE, "every-sample": METRICS_EVERY, "before": METRICS_BEFORE, "node_exporter": NODE,
            "netns-all": METRICS_ALL, "netns-all-before": METRICS_ALL_BEFORE}[name]
    url = f"http://127.0.0.1:{port}/metrics"
    args = [sys.executable, "-c", SCRAPER, url, "5", str(life)]
    return subprocess.Popen(args, text=True) if name.startswith("netns-all") else start(ns, *args)


def report(r: dict[str, object]) -> None:
    cpu = r["cpu"]
    assert isinstance(cpu, dict)
    print(f"\n== {r['size']} sockets: {r['sockets'][0]}..{r['sockets'][1]} in the namespace "  # type: ignore[index]
          f"({r['time_wait'][0]}..{r['time_wait'][1]} TIME_WAIT); load avg per window {r['loads']}")  # type: ignore[index]
    for k, v in cpu.items():
        print(f"  {k:14s} CPU % of a core per window: {', '.join(f'{x:.2f}' for x in v)}; median "
              f"{statistics.median(v):.2f}; RSS {r['rss'][k]:.1f} MB")  # type: ignore[index]
    due = cpu["when-due"]
    if "netns-all" in cpu:
        due_all = cpu["netns-all"]
        for peer in ("when-due", "node_exporter", "netns-all-before"):
            if peer in cpu:
                ratios = [a / b for a, b in zip(due_all, cpu[peer], strict=True) if b > 0]
                print(f"  netns-all / {peer}: median {statistics.median(ratios):.2f} "
                      f"(range {min(ratios):.2f}-{max(ratios):.2f}); "
                      f"{r['netns_labels']} namespaces on its /metrics (connwatch_netns_info)")
    for peer in ("every-sample", "node_exporter", "before"):
        if peer in cpu:
            ratios = [a / b for a, b in zip(due, cpu[peer], strict=True) if b > 0]
            if ratios:
                print(f"  when-due / {peer}: median {statistics.median(ratios):.2f} "
                      f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"  when-due agent: {r['tw_dumps']} of {r['full_samples']} full samples dumped TIME_WAIT; "
          f"/metrics {r['scrapes']} scrapes at {r['scrapes_per_s']:.0f}/s, p50 {r['scrape_p50_ms']:.2f} ms, "
          f"p99 {r['scrape_p99_ms']:.2f} ms, {r['metrics_bytes']} bytes; ss -tan {r['ss_tan_ms']:.0f} ms")
    print(f"  when-due agent, why each full sample dumped TIME_WAIT or not: {r['reasons']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--tw-share", type=float, default=0.9)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--fill", type=float, default=60.0, help="seconds of churn before measuring (one TIME_WAIT life)")
    p.add_argument("--small", type=int, default=0, help="also `run --netns all` over this many small namespaces")
    p.add_argument("--listeners", type=int, default=50, help="listeners in each small namespace")
    p.add_argument("--before", help="the src/ directory of an older connwatch: its `run` (when-due) is measured "
                                    "in the same windows, as \"before\" (and its `run --netns all` with --small)")
    p.add_argument("--prefix", default="cwbench", help="start of the names of the namespaces made here")
    p.add_argument("--solo", action="store_true",
                   help="measure each process alone: the others (and their scrapers) stopped during its window, "
                        "in turn (see rotate); --window 60 suits it (one due TIME_WAIT dump per window)")
    p.add_argument("--no-every-sample", action="store_true", help="leave out `run --time-wait every-sample`")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_agent: needs root for a network namespace")
    if a.before and not Path(a.before, "connwatch", "__init__.py").is_file():  # (else PYTHONPATH would miss and
        # "before" would run this tree: a commit name was once passed here)
        raise SystemExit(f"bench_agent: --before {a.before}: not a src/ directory holding connwatch/ "
                         "(e.g. git archive REV | tar -x -C /tmp/before, then --before /tmp/before/src)")
    if not NODE_EXPORTER:
        print("node_exporter not found (prometheus-node-exporter): measured without it")
    for size in (int(x) for x in a.sizes.split(",")):
        ns = f"{a.prefix}-{uuid.uuid4().hex[:6]}"
        small = [f"{ns}-s{i}" for i in range(a.small)]
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            for name in small:
                subprocess.run(["ip", "netns", "add", name], check=True)
                sh(name, "ip", "link", "set", "lo", "up")
            sh(ns, "ip", "link", "set", "lo", "up")
            sh(ns, "sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0")  # TIME_WAIT stays: the load is what it says
            tmp = Path(f"/tmp/{ns}")
            tmp.mkdir()
            report(measure(ns, size, a.tw_share, a.windows, a.window, tmp, a.fill, small, a.listeners, a.before,
                           a.prefix, a.solo, not a.no_every_sample))
        finally:
            for name in (ns, *small):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            for left in Path("/tmp").glob(f"{a.prefix}-netns.*"):
                shutil.rmtree(left, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
