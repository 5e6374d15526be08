"""The /metrics HTTP server: prometheus_client's WSGI app, threaded, optional TLS and basic auth.

Binds 127.0.0.1 by default. For a wider bind give --tls-cert/--tls-key and --basic-auth-file
(lines of `user:password`); without them the agent logs a warning that anyone who can reach the
port can read the host's listeners and connections.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from connwatch.errors import ConfigError

log = logging.getLogger("connwatch.agent")
StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log (100 scrapes/s would flood the journal)."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # 100 scrapes/s must not overflow our own accept queue
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def read_credentials(path: str) -> dict[str, str]:
    """user -> password from a file of `user:password` lines (# comments allowed)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read basic-auth file ({exc.strerror})") from exc
    creds = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"{path}:{number}: expected `user:password`")
        creds[user] = password
    if not creds:
        raise ConfigError(f"{path}: no `user:password` line")
    return creds


def _authorized(header: str, creds: dict[str, str]) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    expected = creds.get(user, "")
    return hmac.compare_digest(password.encode(), expected.encode()) and user in creds


def make_app(registry: CollectorRegistry, creds: dict[str, str] | None) -> App:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        if creds is not None and not _authorized(environ.get("HTTP_AUTHORIZATION", ""), creds):
            start("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="connwatch"'),
                                       ("Content-Type", "text/plain")])
            return [b"401 Unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start)  # type: ignore[no-any-return]
        if path in ("/", "/-/healthy"):
            start("200 OK", [("Content-Type", "text/plain")])
            return [b"connwatch agent: metrics at /metrics\n"]
        start("404 Not Found", [("Content-Type", "text/plain")])
        return [b"404 Not Found: metrics are at /metrics\n"]

    return app


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(host: str, port: int, registry: CollectorRegistry, tls_cert: str | None = None,
          tls_key: str | None = None, auth_file: str | None = None) -> WSGIServer:
    """Start the server in a daemon thread; ConfigError (one line) when it cannot listen."""
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    creds = read_credentials(auth_file) if auth_file else None
    cls = _Server6 if ":" in host else _Server
    try:
        httpd = make_server(host, port, make_app(registry, creds), cls, handler_class=_Quiet)
    except OSError as exc:
        raise ConfigError(f"--listen {host}:{port}: cannot listen ({exc.strerror or exc})") from exc
    if tls_cert and tls_key:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as exc:
            httpd.server_close()
            raise ConfigError(f"--tls-cert {tls_cert} / --tls-key {tls_key}: cannot load ({exc})") from exc
        # Handshake in the request thread, not in accept(): a slow client cannot stall the server.
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    if not _is_loopback(host) and not (tls_cert and creds):
        log.warning("/metrics listens on %s:%d without %s: anyone who can reach it reads this host's "
                    "listeners and connections", host, port,
                    " and ".join(w for w, on in (("TLS", not tls_cert), ("basic auth", creds is None)) if on))
    threading.Thread(target=httpd.serve_forever, name="connwatch-metrics", daemon=True).start()
    return httpd
