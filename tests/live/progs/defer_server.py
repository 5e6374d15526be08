"""A server with TCP_DEFER_ACCEPT (nginx `listen ... deferred`): accepts and answers every request.

Each accepted connection gets one read (the request) and one reply, then is closed. With --stuck it
never accepts (a hung deferred-accept server). Bounded lifetime.
"""

import argparse
import socket
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--backlog", type=int, default=128)
p.add_argument("--defer", type=int, default=5, help="TCP_DEFER_ACCEPT seconds")
p.add_argument("--lifetime", type=float, default=300.0)
p.add_argument("--stuck", action="store_true", help="never accept")
a = p.parse_args()

srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, a.defer)
srv.bind((a.host, a.port))
srv.listen(a.backlog)


def serve() -> None:
    while True:
        conn, _ = srv.accept()
        conn.settimeout(5)
        try:
            if conn.recv(1024):
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass
        conn.close()


if not a.stuck:
    threading.Thread(target=serve, daemon=True).start()
print("READY", flush=True)
time.sleep(a.lifetime)
sys.exit(0)
