"""Benchmark: many network namespaces (containers/pods) sampled from inside each one.

    sudo python bench/bench_netns.py [--namespaces 100] [--listeners 50] [--repeat 7]

Creates N namespaces (`ip netns add`, deleted at the end) and, from this one process, L listening
sockets in each (created on a thread that entered the namespace, so they stay bound there; N*L fds,
within the 20,000 fd limit). Then, interleaved round by round, medians of:
- the listener-only poll across all namespaces (one kept sock_diag socket per namespace), with its
  default worker threads and with one thread;
- a full collect_all (enumeration, naming, every namespace sampled inside it, one owner scan);
- `for ns in ...; do ip netns exec $ns ss -tan; done` and the same with `ss -ltn`, as one shell.
No traffic is generated; the sockets only listen.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from connwatch.clock import SystemClock
from connwatch.collect import CollectOptions
from connwatch.collect_netns import NetnsListenerPoller, collect_all, discover
from connwatch.sources import netlink
from connwatch.sources.netns import open_netns, run_in_each

FD_LIMIT = 20_000


def _listen(count: int, base_port: int) -> list[socket.socket]:
    socks = []
    for i in range(count):
        s = socket.socket()
        s.bind(("0.0.0.0", base_port + i))
        s.listen(128)
        socks.append(s)
    return socks


def _ms(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def _kernel_only(socks: list[socket.socket]) -> Callable[[], object]:
    """The poll's dumps with nothing decoded: the kernel's share (it walks the host-wide listening hash
    once per namespace)."""
    def done(chunk: bytes) -> bool:
        return len(chunk) >= 20 and chunk[-16:-14] == b"\x03\x00"  # ends with NLMSG_DONE (20 bytes)

    def run() -> None:
        for sock in socks:
            netlink.dump_both_families(sock, netlink.TCPF_LISTEN, 1 << (netlink.INET_DIAG_SKMEMINFO - 1), done)
    return run


def _shell_loop(names: list[str], ss_args: str) -> Callable[[], object]:
    script = f"for ns in {' '.join(names)}; do ip netns exec $ns ss {ss_args}; done > /dev/null"
    return lambda: subprocess.run(["sh", "-c", script], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--listeners", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_netns.py: needs root (creates network namespaces)")
    if a.namespaces * a.listeners + 1000 > FD_LIMIT:
        sys.exit(f"bench_netns.py: {a.namespaces * a.listeners} sockets would exceed the {FD_LIMIT} fd limit")
    names = [f"cwbench-{os.getpid()}-{i}" for i in range(a.namespaces)]
    held: list[socket.socket] = []
    made: list[str] = []
    try:
        start = time.perf_counter()
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            made.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        found, _ = discover(CollectOptions())
        mine = [ref for ref, _ in found if ref.name in set(names)]
        fds = [open_netns(ref) for ref in mine]
        try:
            for made_here in run_in_each(fds, lambda _fd: _listen(a.listeners, 10000)):
                assert isinstance(made_here, list), made_here
                held.extend(made_here)
        finally:
            for fd in fds:
                os.close(fd)
        print(f"setup: {len(mine)} namespaces, {len(held)} listening sockets, "
              f"{(time.perf_counter() - start):.1f} s; namespaces on the host: {len(found)} (collect_all samples "
              "them all; the polls and ss loops only these)")
        poller = NetnsListenerPoller()
        refresh_ms = _ms(lambda: poller.refresh(mine))
        single = NetnsListenerPoller(workers=1)
        single.refresh(mine)
        polled = poller.poll()
        seen = sum(len(v or ()) for k, v in polled.items() if k in {r.inode for r in mine})
        assert seen == len(held), f"poll saw {seen} of {len(held)} listeners"
        snaps = collect_all(SystemClock())
        sampled = sum(len(s.listeners) for s in snaps if s.netns is not None and s.netns.name in set(names))
        assert sampled == len(held), f"collect_all saw {sampled} of {len(held)} listeners"
        fds = [open_netns(ref) for ref in mine]
        socks = [x for x in run_in_each(fds, lambda _fd: netlink.open_socket()) if isinstance(x, socket.socket)]
        for fd in fds:
            os.close(fd)
        calls: dict[str, Callable[[], object]] = {
            "poll": poller.poll,
            "poll, one thread": single.poll,
            "poll, kernel share (dumps, no decoding)": _kernel_only(socks),
            "collect_all": lambda: collect_all(SystemClock()),
            "collect_all listeners-only": lambda: collect_all(SystemClock(), CollectOptions(sockets=False,
                                                                                             owners=False)),
            "discover": lambda: discover(CollectOptions()),
            "ss -tan loop": _shell_loop([r.name for r in mine if r.name], "-tan"),
            "ss -ltn loop": _shell_loop([r.name for r in mine if r.name], "-ltn"),
        }
        runs: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(a.repeat):
            for key, call in calls.items():
                runs[key].append(_ms(call))
        poller.close()
        single.close()
        for sock in socks:
            sock.close()
        med = {k: statistics.median(v) for k, v in runs.items()}
        print(f"poller set-up (one socket made inside each of {len(mine)} namespaces): {refresh_ms:.1f} ms; "
              f"poll threads {poller.workers}; load average {os.getloadavg()[0]:.2f}")
        for key, value in med.items():
            spread = f"{min(runs[key]):.1f}-{max(runs[key]):.1f}"
            print(f"{key:40s} median {value:8.1f} ms  (range {spread})")
        pairs = {"collect_all / ss -tan loop": ("collect_all", "ss -tan loop"),
                 "poll / ss -ltn loop": ("poll", "ss -ltn loop"),
                 "poll / poll, one thread": ("poll", "poll, one thread")}
        for key, (num, den) in pairs.items():
            ratios = [a / b for a, b in zip(runs[num], runs[den], strict=True)]
            print(f"ratio {key:28s} median {statistics.median(ratios):.4f}  "
                  f"(range {min(ratios):.4f}-{max(ratios):.4f})")
        print(f"poll target < 20 ms: {'met' if med['poll'] < 20 else 'NOT met'} (median {med['poll']:.1f} ms)")
    finally:
        for s in held:
            s.close()
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


if __name__ == "__main__":
    main()
