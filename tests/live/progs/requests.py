"""COUNT sequential requests to HOST:PORT: connect, wait PAUSE seconds (a bare ACK only), send, read.

Bounded in count and in time (each socket has a 5 s timeout). Prints "READY ok=N failed=M".
"""

import argparse
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--count", type=int, default=300)
p.add_argument("--pause", type=float, default=0.005)
a = p.parse_args()
assert a.count <= 5000 and a.pause <= 1

ok = failed = 0
for _ in range(a.count):
    try:
        with socket.create_connection((a.host, a.port), timeout=5) as s:
            time.sleep(a.pause)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = s.recv(1024)
            ok += reply.startswith(b"HTTP/1.0 200")
            failed += not reply.startswith(b"HTTP/1.0 200")
    except OSError:
        failed += 1
print(f"READY ok={ok} failed={failed}", flush=True)
