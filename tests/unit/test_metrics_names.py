"""/metrics names as the ecosystem expects them: promtool's linter on a real scrape of this host, one metric
per kernel value (node_exporter's units), process_* and connwatch_build_info, the 0.1 names kept value for value."""

from __future__ import annotations

import dataclasses
import re
import resource
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connwatch import __version__
from connwatch.agent.loop import Agent
from connwatch.agent.options import AgentOptions
from connwatch.agent.server import serve
from connwatch.attributes.registry import kernel_inputs, specs
from connwatch.clock import SystemClock
from connwatch.outputs.prom_kernel import counter_metric, snake, sockstat_metric
from connwatch.outputs.prometheus import MetricsOptions, SnapshotCollector, View
from connwatch.rules.config import load_config

from .builders import snapshot

PROMTOOL = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian package prometheus)")


def _scrape_agent(tmp_path: Path, **kw: object) -> str:
    """Two full samples of the agent on this host's kernel, then one HTTP scrape of its /metrics."""
    opts = AgentOptions(state_dir=tmp_path / "state", listen_port=0, **kw)  # type: ignore[arg-type]
    agent = Agent(opts, load_config(None), SystemClock())
    httpd = serve("127.0.0.1", 0, agent.registry)
    try:
        agent.full_sample()
        agent.full_sample()
        with urllib.request.urlopen(f"http://127.0.0.1:{httpd.server_port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())
    finally:
        httpd.shutdown()
        httpd.server_close()
        agent.keeper.close()
        agent.poller.close()


def _promtool(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)


def _values(body: str) -> dict[str, float]:
    return {f"{s.name}{sorted(s.labels.items()) if s.labels else ''}": s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


@PROMTOOL
def test_promtool_finds_nothing_in_a_real_scrape_without_the_legacy_names(tmp_path: Path) -> None:
    body = _scrape_agent(tmp_path, legacy_metrics=False, kernel_counters="all")
    assert "connwatch_netstat_tcpext_listen_overflows_total" in body and "\nprocess_cpu_seconds_total" in body
    done = _promtool(body)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@PROMTOOL
def test_with_the_legacy_names_promtool_flags_only_the_deprecated_family(tmp_path: Path) -> None:
    body = _scrape_agent(tmp_path)
    problems = [line for line in (_promtool(body).stdout + _promtool(body).stderr).splitlines() if line]
    assert problems == ["connwatch_kernel_counter_total metric name should not include type 'counter'"]


def test_new_kernel_series_equal_the_legacy_ones_value_for_value(tmp_path: Path) -> None:
    values = _values(_scrape_agent(tmp_path, kernel_counters="all"))
    legacy = {k: v for k, v in values.items() if k.startswith("connwatch_kernel_counter_total[")}
    assert len(legacy) > 50  # every Tcp/TcpExt counter of this kernel
    for key, value in legacy.items():
        counter = re.search(r"'counter', '([^']+)'", key)
        assert counter is not None
        assert values[counter_metric(counter[1]) + "_total"] == value, counter[1]
    for key, value in values.items():
        if key.startswith("connwatch_sockstat[") and not key.endswith(".mem')]"):
            name = re.search(r"'key', '([^']+)'", key)
            assert name is not None and values[sockstat_metric(name[1])[0]] == value


def test_needed_exports_what_the_attributes_read_and_nothing_else(tmp_path: Path) -> None:
    values = _values(_scrape_agent(tmp_path, legacy_metrics=False))
    netstat = {k for k in values if k.startswith("connwatch_netstat_")}
    wanted = {counter_metric(c) + "_total" for c in kernel_inputs() if c.startswith("TcpExt.")}
    assert netstat == wanted and "connwatch_netstat_tcpext_listen_overflows_total" in wanted
    sockstat = {sockstat_metric(k)[0] for k in kernel_inputs() if not k.startswith("Tcp")}
    assert {k for k in values if k.startswith("connwatch_sockstat_")} == sockstat
    assert {"connwatch_sockstat_tcp_tw", "connwatch_sockstat_tcp_orphan"} <= sockstat
    for s in specs().values():  # every native rule reads a series that is exported by default
        for name in re.findall(r"connwatch_netstat_\w+", s.promql or ""):
            assert name in values, (s.name, name)
    assert not any(k.startswith(("connwatch_kernel_counter", "connwatch_agent_process", "connwatch_source_up"))
                   for k in values)


def test_sockstat_memory_in_bytes_and_names_in_snake_case() -> None:
    assert snake("TCPReqQFullDrop") == "tcp_req_q_full_drop" and snake("ListenOverflows") == "listen_overflows"
    assert sockstat_metric("TCP.mem") == ("connwatch_sockstat_tcp_mem_bytes", resource.getpagesize())
    assert sockstat_metric("FRAG.memory") == ("connwatch_sockstat_frag_memory_bytes", 1)
    reg = CollectorRegistry()
    col = SnapshotCollector(MetricsOptions(kernel_counters="all", legacy=False))
    col.update(View(dataclasses.replace(snapshot(1.0), sockstat={"TCP.mem": 3, "TCP.tw": 7})))
    reg.register(col)
    values = _values(generate_latest(reg).decode())
    assert values["connwatch_sockstat_tcp_mem_bytes"] == 3 * resource.getpagesize()
    assert values["connwatch_sockstat_tcp_tw"] == 7


def test_samples_total_and_build_info_exist_before_the_first_sample() -> None:
    reg = CollectorRegistry()
    reg.register(SnapshotCollector())
    values = _values(generate_latest(reg).decode())
    assert values["connwatch_samples_total[('kind', 'full')]"] == 0
    assert values["connwatch_samples_total[('kind', 'listeners')]"] == 0
    assert values[f"connwatch_build_info[('version', '{__version__}')]"] == 1
