"""/metrics rendered once per sample, not per scrape (agent/metrics_cache.py): a real Agent on a
captured /proc, its real HTTP server on loopback."""

from __future__ import annotations

import gzip
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.agent.server import serve
from connwatch.clock import SystemClock
from connwatch.rules.config import load_config

PROC = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")


def _agent(tmp_path: Path) -> Agent:
    opts = AgentOptions(state_dir=tmp_path / "state", listen_port=0, proc_root=PROC, use_netlink=False)
    return Agent(opts, load_config(None), SystemClock())


def _get(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return dict(r.headers), r.read()


def _without_process(body: bytes) -> list[bytes]:
    """The body less the process_* series (the scrape-time CPU/RSS of the uncached render)."""
    return [line for line in body.splitlines() if b"process_" not in line]


def test_scrapes_between_samples_render_once_and_a_sample_renders_again(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent.full_sample()
    httpd = serve("127.0.0.1", 0, agent.registry, cache=agent.metrics_cache)
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/metrics"
        first = _get(url)[1]
        assert b"connwatch_samples_total" in first
        assert all(_get(url)[1] == first for _ in range(20))
        assert agent.metrics_cache.renders == 1
        assert _without_process(first) == _without_process(generate_latest(agent.registry))
        agent.listener_poll()  # the series change: the next scrape renders them anew
        second = _get(url)[1]
        assert agent.metrics_cache.renders == 2 and second != first
        assert b'connwatch_samples_total{kind="listeners"} 1.0' in second
        # each format and encoding is its own cached body, as prometheus_client would answer it
        headers, zipped = _get(url, **{"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip"
        assert _without_process(gzip.decompress(zipped)) == _without_process(second)
        headers, om = _get(url, Accept=OPENMETRICS)
        assert headers["Content-Type"].startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")
        assert agent.metrics_cache.renders == 4
        _get(url, Accept=OPENMETRICS)
        assert agent.metrics_cache.renders == 4
        # a name[] filter is answered per request by prometheus_client's own app, uncached
        _get(url + "?name[]=connwatch_build_info")
        assert agent.metrics_cache.renders == 4
    finally:
        httpd.shutdown()
        httpd.server_close()
        agent.keeper.close()
