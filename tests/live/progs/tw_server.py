"""A server that lets the client close first: accepts, and closes each connection after the client's
FIN (recv() == b""), so the CLIENT side ends in TIME_WAIT. Connections the client holds stay open.
Single-threaded (selectors), bounded lifetime."""

import argparse
import selectors
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--lifetime", type=float, default=200.0, help="exit after this many seconds")
a = p.parse_args()

fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
srv = socket.socket(fam, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((a.host, a.port))
srv.listen(4096)
srv.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
print("READY", flush=True)
end = time.monotonic() + a.lifetime
while time.monotonic() < end:
    for key, _ in sel.select(timeout=0.5):
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        if sock is srv:
            while True:
                try:
                    conn, _addr = srv.accept()
                except BlockingIOError:
                    break
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
            continue
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(sock)
            sock.close()
