"""The /metrics HTTP server: prometheus_client's WSGI app, optional TLS and basic auth.

Binds 127.0.0.1 by default. For a wider bind give --tls-cert/--tls-key and --basic-auth-file
(lines of `user:password`); without them the agent logs a warning that anyone who can reach the
port can read the host's listeners and connections. Threads, idle time and request time are
bounded (agent/httpd.py): idle connections never make /metrics unreachable.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import os
import socket
import ssl
import stat
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler

from prometheus_client import CollectorRegistry, make_wsgi_app

from connwatch.agent.httpd import BoundedWSGIServer, Limits, ProblemLog
from connwatch.agent.metrics_cache import MetricsCache
from connwatch.errors import ConfigError
from connwatch.rules.configfile import decode_utf8, read_small_file

log = logging.getLogger("connwatch.agent")
StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log (100 scrapes/s would flood the journal)."""


class _Server6(BoundedWSGIServer):
    address_family = socket.AF_INET6


def read_credentials(path: str) -> dict[str, str]:
    """user -> password from a file of `user:password` lines (# comments allowed). Warns when the
    file is readable by group or others (the passwords are in clear)."""
    what = "basic-auth file"
    lines = decode_utf8(read_small_file(path, what, 64 * 1024), path, what).splitlines()
    try:
        mode = os.stat(path).st_mode
    except OSError:  # removed since it was read: what was read counts
        mode = 0
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("basic-auth file %s is readable by %s (mode %04o): chmod 600 it", path,
                    " and ".join(w for w, bit in (("its group", stat.S_IRGRP), ("others", stat.S_IROTH))
                                 if mode & bit), stat.S_IMODE(mode))
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


def _head(app: App, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
    """HEAD: the GET response's status and headers (Content-Length included), no body."""
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app({**environ, "REQUEST_METHOD": "GET"}, lambda status, headers, *_: seen.append(
        (status, list(headers)))))
    status, headers = seen[0]
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start(status, [*headers, ("Content-Length", str(len(body)))])
    return []


def make_app(registry: CollectorRegistry, creds: dict[str, str] | None, cache: MetricsCache | None = None) -> App:
    """The WSGI app. With a cache, /metrics is rendered once per sample (a `name[]` filter still
    renders per request)."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "HEAD":
            return _head(app, environ, start)
        if method != "GET":
            start("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"405 Method Not Allowed: use GET or HEAD\n"]
        if creds is not None and not _authorized(environ.get("HTTP_AUTHORIZATION", ""), creds):
            start("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="connwatch"'),
                                       ("Content-Type", "text/plain")])
            return [b"401 Unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics" and cache is not None and "name[]" not in environ.get("QUERY_STRING", ""):
            headers, body = cache.response(environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"))
            start("200 OK", headers)
            return [body]
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
          tls_key: str | None = None, auth_file: str | None = None,
          limits: Limits | None = None, cache: MetricsCache | None = None) -> BoundedWSGIServer:
    """Start the server in a daemon thread; ConfigError (one line) when it cannot listen."""
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    creds = read_credentials(auth_file) if auth_file else None
    cls = _Server6 if ":" in host else BoundedWSGIServer
    try:
        httpd = cls((host, port), _Quiet, limits or Limits(), ProblemLog(log))
    except OSError as exc:
        raise ConfigError(f"--listen {host}:{port}: cannot listen ({exc.strerror or exc})") from exc
    httpd.set_app(make_app(registry, creds, cache))
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
