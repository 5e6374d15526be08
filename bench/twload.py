"""Socket load for the whole-process benchmarks, run inside a network namespace the caller made.

    ip netns exec NS python bench/twload.py --target 35000 [--workers 2] [--held 2000]

Listeners on 127.0.0.{1..W}:7001-7008 (one worker process per address, each accepting and closing on a
thread), HELD ESTABLISHED connections (the server side closes them: FIN_WAIT2 + CLOSE_WAIT), and
connect+close churn until the namespace holds TARGET TIME_WAIT sockets (its own /proc/net/sockstat
`tw`). TIME_WAIT lives 60 s, so the load is topped up on request, between measurements (never during
one): a line `top` on stdin makes the workers churn the deficit and answers `ok TW`; `quit` (or EOF)
ends. Prints `READY TW` once built. Only loopback addresses inside the caller's namespace are used.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import sys
import threading
import time

PORTS = range(7001, 7009)


def time_wait() -> int:
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("tw") + 1])
    return 0


def _drain(srv: socket.socket) -> None:
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        conn.close()


def worker(index: int, held: int, conn: mp.connection.Connection) -> None:
    host = f"127.0.0.{index + 1}"
    servers = []
    for port in PORTS:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(4096)
        servers.append(s)
        threading.Thread(target=_drain, args=(s,), daemon=True).start()
    keep = [socket.create_connection((host, PORTS[i % len(PORTS)])) for i in range(held)]
    conn.send("up")
    i = 0
    while True:
        try:
            count = conn.recv()
        except EOFError:
            break
        if count is None:
            break
        deadline = time.monotonic() + 120
        for _ in range(count):
            c = socket.socket()
            c.connect((host, PORTS[i % len(PORTS)]))
            c.close()
            i += 1
            if time.monotonic() > deadline:
                break
        conn.send("done")
    del keep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=int, default=35000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--held", type=int, default=2000, help="ESTABLISHED connections (all workers together)")
    a = ap.parse_args()
    pipes, procs = [], []
    for w in range(a.workers):
        mine, theirs = mp.Pipe()
        p = mp.Process(target=worker, args=(w, a.held // a.workers, theirs), daemon=True)
        p.start()
        pipes.append(mine)
        procs.append(p)
    for pipe in pipes:
        pipe.recv()

    def top_up() -> int:
        for _ in range(3):  # what churned in the last rounds may still be closing: look again
            short = a.target - time_wait()
            if short <= a.target // 100:
                break
            for pipe in pipes:
                pipe.send(short // len(pipes) + 1)
            for pipe in pipes:
                pipe.recv()
            time.sleep(0.05)
        return time_wait()

    print("READY", top_up(), flush=True)
    for line in sys.stdin:
        if line.strip() != "top":
            break
        print("ok", top_up(), flush=True)
    for pipe in pipes:
        pipe.send(None)
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()


if __name__ == "__main__":
    main()
