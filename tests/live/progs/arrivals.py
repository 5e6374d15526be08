"""Connection requests arriving at a chosen rate: non-blocking connects to HOST:PORT with exponential
gaps of mean 1/RATE s (a Poisson process, fixed seed) for DURATION s, each held until the end. Bounded."""

import argparse
import random
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--rate", type=float, required=True)
p.add_argument("--duration", type=float, required=True)
p.add_argument("--count", type=int, default=0, help="connect this many at once instead (a burst)")
p.add_argument("--seed", type=int, default=2)
p.add_argument("--hold", type=float, default=5.0, help="seconds to hold the connections after the last")
a = p.parse_args()
assert a.rate * a.duration <= 10000 and a.count <= 10000

rng = random.Random(a.seed)
socks: list[socket.socket] = []


def connect() -> None:
    s = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((a.host, a.port))
    socks.append(s)


print("READY", flush=True)
for _ in range(a.count):
    connect()
end = time.monotonic() + a.duration
nxt = time.monotonic()
while a.rate and nxt < end:
    nxt += rng.expovariate(a.rate)
    time.sleep(max(nxt - time.monotonic(), 0))
    connect()
time.sleep(a.hold)
