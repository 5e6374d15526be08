"""Listen on several ports of HOST at once (never accepting: connections wait in the queues). Bounded."""

import argparse
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--ports", type=int, nargs="+", required=True)
p.add_argument("--lifetime", type=float, default=120.0)
a = p.parse_args()
held = []
for port in a.ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.host, port))
    s.listen(128)
    held.append(s)
print("READY", flush=True)
time.sleep(a.lifetime)
