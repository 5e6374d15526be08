"""A TCP listener for tests: listen(BACKLOG) on HOST:PORT, accept or never accept. Bounded lifetime."""

import argparse
import socket
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--backlog", type=int, default=5)
p.add_argument("--accept", action="store_true", help="accept and keep connections (healthy server)")
p.add_argument("--max-fds", type=int, default=0,
               help="lower RLIMIT_NOFILE to this and use every fd up, so accept() fails with EMFILE")
p.add_argument("--nofile", type=int, default=0, help="set the soft RLIMIT_NOFILE to this (a value to find)")
p.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds")
a = p.parse_args()

fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
srv = socket.socket(fam, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((a.host, a.port))
srv.listen(a.backlog)
held: list[object] = []  # accepted sockets and spare files, kept open until exit


def accept_loop() -> None:
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:  # EMFILE: the queue cannot drain
            time.sleep(0.05)
            continue
        held.append(conn)


if a.nofile:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (a.nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

if a.max_fds:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (a.max_fds, a.max_fds))
    try:
        while True:
            held.append(open("/dev/null"))  # noqa: SIM115 - held on purpose until exit
    except OSError:
        pass


if a.accept:
    threading.Thread(target=accept_loop, daemon=True).start()
print("READY", flush=True)
time.sleep(a.lifetime)
sys.exit(0)
