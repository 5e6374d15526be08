"""Outbound connection churn toward HOST:PORT: hold some connections, then connect()+close() cycles.

Bounded: at most --cycles cycles and --duration seconds. --rate paces the cycles on an absolute
schedule (steady rate). Stops at the first connect() error and reports its errno name.
Prints one line "READY held=H cycles=N error=NAME|none at=SECONDS" when the cycles are done (or at
the start with --background, then "DONE ..." at the end), then keeps held connections for --lifetime.
"""

import argparse
import errno
import socket
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--hold", type=int, default=0, help="connections opened first and kept")
p.add_argument("--cycles", type=int, default=0, help="connect+close cycles (at most)")
p.add_argument("--rate", type=float, default=0.0, help="cycles per second (0: as fast as possible)")
p.add_argument("--duration", type=float, default=120.0, help="stop cycling after this many seconds")
p.add_argument("--background", action="store_true", help="print READY before cycling")
p.add_argument("--lifetime", type=float, default=0.0, help="keep running (and holding) this long after")
a = p.parse_args()
assert a.hold + a.cycles <= 20000 and a.duration <= 300

fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
held = []
for _ in range(a.hold):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.connect((a.host, a.port))
    held.append(s)


def cycles() -> str:
    start = time.monotonic()
    done, error, at = 0, "none", 0.0
    while done < a.cycles:
        now = time.monotonic()
        if now - start > a.duration:
            break
        if a.rate > 0:
            due = start + done / a.rate
            if due > now:
                time.sleep(due - now)
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.connect((a.host, a.port))
        except OSError as exc:
            error, at = errno.errorcode.get(exc.errno or 0, str(exc.errno)), time.monotonic() - start
            s.close()
            break
        s.close()
        done += 1
    return f"held={len(held)} cycles={done} error={error} at={at:.2f}"


if a.background:
    print("READY", flush=True)
    print("DONE " + cycles(), flush=True)
else:
    print("READY " + cycles(), flush=True)
sys.stdout.flush()
time.sleep(a.lifetime)
