"""A listener that accepts at a chosen pace: listen(BACKLOG), accept up to COUNT connections (then stop
accepting, alive and sleeping), each accept followed by an exponential "service" pause of mean 1/RATE s
(RATE 0: no pause). Accepted connections are held open (or closed with --close). Bounded lifetime."""

import argparse
import random
import socket
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--backlog", type=int, default=5)
p.add_argument("--count", type=int, default=1_000_000, help="stop accepting after this many")
p.add_argument("--rate", type=float, default=0.0, help="mean accepts per second (exponential pauses)")
p.add_argument("--close", action="store_true", help="close each accepted connection at once")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--lifetime", type=float, default=120.0)
a = p.parse_args()

srv = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((a.host, a.port))
srv.listen(a.backlog)
held: list[socket.socket] = []
rng = random.Random(a.seed)


def loop() -> None:
    for _ in range(a.count):
        conn, _addr = srv.accept()
        if a.close:
            conn.close()
        else:
            held.append(conn)
        if a.rate:
            time.sleep(rng.expovariate(a.rate))


threading.Thread(target=loop, daemon=True).start()
print("READY", flush=True)
time.sleep(a.lifetime)
sys.exit(0)
