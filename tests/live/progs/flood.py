"""Open COUNT non-blocking connects to HOST:PORT and hold them for HOLD seconds (bounded)."""

import argparse
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--count", type=int, default=50)
p.add_argument("--hold", type=float, default=30.0)
p.add_argument("--source", default=None, help="bind this local address first")
a = p.parse_args()
assert a.count <= 20000

fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
socks = []
for _ in range(a.count):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setblocking(False)
    if a.source:
        s.bind((a.source, 0))
    s.connect_ex((a.host, a.port))
    socks.append(s)
print("READY", len(socks), flush=True)
time.sleep(a.hold)
