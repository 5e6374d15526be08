"""The /metrics server: loopback by default, basic auth, TLS, 404 elsewhere, a warning for wide binds."""

from __future__ import annotations

import base64
import logging
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from connwatch.agent.server import read_credentials, serve
from connwatch.errors import ConfigError
from connwatch.outputs.prometheus import SnapshotCollector, View

from .builders import listener, snapshot


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    col = SnapshotCollector()
    lst = listener(8080, queue=3)
    col.update(View(snapshot(1.0, (lst,)), (lst,)))
    reg.register(col)
    return reg


def _get(url: str, auth: str | None = None, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.fixture
def servers() -> Iterator[list[object]]:
    made: list[object] = []
    yield made
    for httpd in made:
        httpd.shutdown()  # type: ignore[attr-defined]
        httpd.server_close()  # type: ignore[attr-defined]


def test_plain_server_paths_and_repeated_scrapes(registry: CollectorRegistry, servers: list[object]) -> None:
    httpd = serve("127.0.0.1", 0, registry)
    servers.append(httpd)
    base = f"http://127.0.0.1:{httpd.server_port}"
    status, body = _get(base + "/metrics")
    assert status == 200 and 'connwatch_listener_queue{address="0.0.0.0",family="4",port="8080"} 3.0' in body
    assert _get(base + "/nothing")[0] == 404
    # A new connection each time, like a scraper without keep-alive; every scrape gets the same
    # families (built once per sample). The rate is measured in bench/bench_agent.py, not here.
    bodies = {_get(base + "/metrics") for _ in range(200)}
    assert bodies == {(200, body)}


def test_basic_auth(registry: CollectorRegistry, servers: list[object], tmp_path: Path) -> None:
    creds = tmp_path / "auth"
    creds.write_text("# scrapers\nprom:s3cret\n")
    httpd = serve("127.0.0.1", 0, registry, auth_file=str(creds))
    servers.append(httpd)
    url = f"http://127.0.0.1:{httpd.server_port}/metrics"
    good = "Basic " + base64.b64encode(b"prom:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"prom:guess").decode()
    assert _get(url)[0] == 401 and _get(url, bad)[0] == 401
    assert _get(url, good)[0] == 200
    creds.write_text("no colon here\n")
    with pytest.raises(ConfigError, match=r"auth:1: expected `user:password`"):
        read_credentials(str(creds))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a test certificate")
def test_tls_and_wide_bind_warning(registry: CollectorRegistry, servers: list[object], tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    with caplog.at_level(logging.WARNING, "connwatch.agent"):
        httpd = serve("0.0.0.0", 0, registry, tls_cert=str(cert), tls_key=str(key))
    servers.append(httpd)
    assert "without basic auth" in caplog.text  # TLS alone on a wide bind: said once, not refused
    ctx = ssl.create_default_context(cafile=str(cert))
    status, body = _get(f"https://127.0.0.1:{httpd.server_port}/metrics", context=ctx)
    assert status == 200 and "connwatch_listener_queue" in body
    with pytest.raises(ConfigError, match="--tls-cert and --tls-key go together"):
        serve("127.0.0.1", 0, registry, tls_cert=str(cert))


def test_port_in_use_is_one_line(registry: CollectorRegistry, servers: list[object]) -> None:
    httpd = serve("127.0.0.1", 0, registry)
    servers.append(httpd)
    with pytest.raises(ConfigError, match=rf"--listen 127.0.0.1:{httpd.server_port}: cannot listen \(Address"):
        serve("127.0.0.1", httpd.server_port, registry)
