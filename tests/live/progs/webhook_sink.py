"""A webhook receiver for tests: append each POSTed JSON body (+ the client port and its Idempotency-Key)
to OUT. Bounded lifetime."""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--out", required=True)
p.add_argument("--lifetime", type=float, default=300.0)
a = p.parse_args()
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock, open(a.out, "a") as fh:
            fh.write(json.dumps({"peer": self.client_address[1], "key": self.headers.get("Idempotency-Key"),
                                 "body": body}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
srv.daemon_threads = True
threading.Timer(a.lifetime, srv.shutdown).start()
print("READY", flush=True)
srv.serve_forever()
