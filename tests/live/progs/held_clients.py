"""COUNT clients from SOURCE to HOST:PORT whose handshakes the test holds open, driven over stdin.

Connects without blocking and waits (bounded) until the client side of every handshake is
established, prints "READY connected=N", then reads commands on stdin, one a line:
  send    -- send one byte on every connection (its ACK-carrying data reaches the listener);
  report  -- print "RESULT reset=R open=O other=X": per connection, whether recv() gives ECONNRESET,
             would block (still open) or anything else;
  quit.
Bounded: at most 1000 clients; exits after --lifetime seconds without a command.
"""

import argparse
import contextlib
import errno
import select
import socket
import sys

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--source", required=True)
p.add_argument("--count", type=int, default=4)
p.add_argument("--lifetime", type=float, default=120.0)
a = p.parse_args()
assert 0 < a.count <= 1000

socks = []
for _ in range(a.count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind((a.source, 0))
    s.connect_ex((a.host, a.port))
    socks.append(s)
pending = list(socks)
while pending:
    writable = select.select([], pending, [], 10.0)[1]
    if not writable:
        break
    pending = [s for s in pending if s not in writable]
connected = sum(s not in pending and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in socks)
print(f"READY connected={connected}", flush=True)


def report() -> str:
    reset = still = other = 0
    for s in socks:
        try:
            s.recv(1)  # data or end of stream: neither is expected here
            other += 1
        except BlockingIOError:
            still += 1
        except OSError as exc:
            reset += exc.errno == errno.ECONNRESET
            other += exc.errno != errno.ECONNRESET
    return f"RESULT reset={reset} open={still} other={other}"


while True:
    ready = select.select([sys.stdin], [], [], a.lifetime)[0]
    line = sys.stdin.readline().strip() if ready else "quit"
    if line == "send":
        for s in socks:
            with contextlib.suppress(OSError):
                s.send(b"x")
        print("SENT", flush=True)
    elif line == "report":
        print(report(), flush=True)
    else:
        break
