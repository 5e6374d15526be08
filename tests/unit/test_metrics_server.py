"""The /metrics server: loopback by default, basic auth, TLS, 404 elsewhere, a warning for wide binds."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from connwatch.agent.httpd import Limits
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


@pytest.fixture
def cert_key(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_and_wide_bind_warning(registry: CollectorRegistry, servers: list[object], cert_key: tuple[Path, Path],
                                   caplog: pytest.LogCaptureFixture) -> None:
    cert, key = cert_key
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


def _poll(check: Callable[[], bool], deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_200_idle_connections_leave_metrics_reachable_with_8_threads(registry: CollectorRegistry,
                                                                    servers: list[object],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    # Regression (issue 14.5): one thread per connection and no idle timeout; under the unit's
    # TasksMax 100 idle connections made /metrics unreachable. Now idle connections cost no thread.
    threads_before = threading.active_count()
    httpd = serve("127.0.0.1", 0, registry, limits=Limits(workers=8, idle_s=60))
    servers.append(httpd)
    idle = [socket.create_connection(("127.0.0.1", httpd.server_port), timeout=5) for _ in range(200)]
    try:
        start = time.perf_counter()
        status, body = _get(f"http://127.0.0.1:{httpd.server_port}/metrics")
        took = time.perf_counter() - start
        assert status == 200 and "connwatch_listener_queue" in body
        assert took < 2.0, f"scrape took {took:.3f} s under 200 idle connections"
        print(f"scrape under 200 idle connections: {took * 1000:.1f} ms")
        # 8 workers + the accepting thread, whatever the number of connections
        assert threading.active_count() - threads_before <= 9
        for conn in idle[:5]:  # still open: the server did not have to drop them to answer
            conn.setblocking(False)
            with pytest.raises(BlockingIOError):
                conn.recv(1)
    finally:
        for conn in idle:
            conn.close()
    # 200 clients going away at once is not 200 requests: no worker is woken, nothing is logged.
    with caplog.at_level(logging.INFO, "connwatch.agent"):
        assert _poll(lambda: httpd.hung_up == 200, 5)
    assert httpd.dispatched == 1 and not caplog.records


def test_idle_silent_and_trickling_clients_are_closed_and_free_their_worker(
        registry: CollectorRegistry, servers: list[object], caplog: pytest.LogCaptureFixture) -> None:
    httpd = serve("127.0.0.1", 0, registry, limits=Limits(workers=1, idle_s=0.5, request_s=1.0))
    servers.append(httpd)
    addr = ("127.0.0.1", httpd.server_port)
    url = f"http://{addr[0]}:{addr[1]}/metrics"
    with caplog.at_level(logging.INFO, "connwatch.agent"):
        with socket.create_connection(addr, timeout=5) as idle, socket.create_connection(addr, timeout=5) as stall:
            stall.sendall(b"GET /metrics HTTP/1.1\r\n")  # then nothing: holds the only worker
            assert _poll(lambda: httpd.busy_count() == 1, 5)
            start = time.perf_counter()
            assert _get(url)[0] == 200
            assert time.perf_counter() - start < 4.0  # freed after request_s (1 s), not at the client's whim
            assert idle.recv(1) == b"" and stall.recv(1) == b""  # both closed by the server
        # A client trickling one header byte every 0.2 s never trips the per-read timeout; the
        # request's own deadline (1 s) still frees the worker.
        with socket.create_connection(addr, timeout=5) as trickle:
            trickle.sendall(b"GET /metrics HTTP/1.1\r\n")
            assert _poll(lambda: httpd.busy_count() == 1, 5)
            start = time.perf_counter()
            try:
                for _ in range(50):  # at most 10 s
                    trickle.sendall(b"X")
                    time.sleep(0.2)
            except OSError:
                pass
            assert time.perf_counter() - start < 4.0
            assert _get(url)[0] == 200
    messages = [r.getMessage() for r in caplog.records]
    assert any("sent its request too slowly: closed after 1 s" in m for m in messages), messages
    assert any("took longer than 1 s" in m for m in messages), messages
    assert any("sent nothing in 0.5 s" in m for m in messages), messages
    assert all(r.exc_info is None for r in caplog.records)


def test_plain_http_to_the_tls_port_is_one_line(registry: CollectorRegistry, servers: list[object],
                                                cert_key: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    cert, key = cert_key
    httpd = serve("127.0.0.1", 0, registry, tls_cert=str(cert), tls_key=str(key))
    servers.append(httpd)
    with caplog.at_level(logging.DEBUG, "connwatch.agent"):
        for _ in range(5):
            conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=5)
            with pytest.raises((http.client.HTTPException, OSError)):
                conn.request("GET", "/metrics")
                conn.getresponse().read()
            conn.close()
        assert _poll(lambda: httpd.busy_count() == 0 and any("plain-HTTP" in r.getMessage()
                                                             for r in caplog.records), 5)
        ctx = ssl.create_default_context(cafile=str(cert))
        assert _get(f"https://127.0.0.1:{httpd.server_port}/metrics", context=ctx)[0] == 200
    plain = [r for r in caplog.records if "plain-HTTP" in r.getMessage()]
    assert len(plain) == 1 and plain[0].exc_info is None and "\n" not in plain[0].getMessage()
    assert "Traceback" not in capfd.readouterr().err


def test_head_and_other_methods(registry: CollectorRegistry, servers: list[object], tmp_path: Path) -> None:
    creds = tmp_path / "auth"
    creds.write_text("prom:s3cret\n")
    creds.chmod(0o600)
    httpd = serve("127.0.0.1", 0, registry, auth_file=str(creds))
    servers.append(httpd)
    auth = {"Authorization": "Basic " + base64.b64encode(b"prom:s3cret").decode()}
    answers = {}
    for method in ("GET", "HEAD", "POST"):
        conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=5)
        conn.request(method, "/metrics", headers=auth)
        resp = conn.getresponse()
        answers[method] = (resp.status, resp.getheader("Content-Length"), resp.read())
        conn.close()
    assert answers["GET"][0] == 200 and answers["GET"][2]
    assert answers["HEAD"] == (200, str(len(answers["GET"][2])), b"")
    assert answers["POST"][0] == 405
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=5)
    conn.request("HEAD", "/metrics")  # no credentials: HEAD is guarded like GET
    assert conn.getresponse().status == 401
    conn.close()


def test_auth_file_readable_by_others_warns_and_non_utf8_is_one_line(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    creds = tmp_path / "auth"
    creds.write_text("prom:s3cret\n")
    creds.chmod(0o644)
    with caplog.at_level(logging.WARNING, "connwatch.agent"):
        assert read_credentials(str(creds)) == {"prom": "s3cret"}
    [warning] = [r.getMessage() for r in caplog.records]
    assert "readable by its group and others (mode 0644)" in warning and "chmod 600" in warning
    caplog.clear()
    creds.chmod(0o600)
    with caplog.at_level(logging.WARNING, "connwatch.agent"):
        read_credentials(str(creds))
    assert not caplog.records
    creds.write_bytes(b"prom:caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"auth:1: basic-auth file is not UTF-8 text \(byte 0xe9\)"):
        read_credentials(str(creds))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="a FIFO, not a regular file"):
        read_credentials(str(fifo))  # refused at once, no wait for a writer


def test_run_with_a_non_utf8_auth_file_exits_3_in_one_line(tmp_path: Path) -> None:
    creds = tmp_path / "auth"
    creds.write_bytes(b"\xff\xfeprom:x\n")
    creds.chmod(0o600)
    proc_root = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "connwatch", "run", "--proc-root", proc_root, "--no-netlink",
                           "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "s"),
                           "--basic-auth-file", str(creds)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 3, done.stderr
    assert done.stderr == f"connwatch: {creds}:1: basic-auth file is not UTF-8 text (byte 0xff)\n"
