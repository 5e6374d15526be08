"""Real kernel: the agent's /metrics carries every namespace's listener and kernel series (issue 11).

Two namespaces made here, a listener on the same port in each (backlogs 5 and 9), one flooded. The agent
runs on the host with `--netns all`; the series of each namespace are found by its `ip netns` name in the
`netns` label and checked against that namespace's own kernel (ss, nstat). Other tests' namespaces may be
exported too: assertions are about these two only. Traffic only on the namespaces' own loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .netns import Netns, netns, poll

PORT = 9400


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def _value(text: str, name: str, netns: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels.get("netns") == netns and all(s.labels.get(k) == v
                                                                          for k, v in labels.items()):
                return float(s.value)
    return None


def test_the_agent_exports_each_namespace_under_its_name(tmp_path: Path, ns: Netns) -> None:
    with netns() as quiet:
        ns.python("listener.py", "--port", str(PORT), "--backlog", "5")
        quiet.python("listener.py", "--port", str(PORT), "--backlog", "9")
        with socket.socket() as probe:  # a free loopback port for the agent's /metrics
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        agent = subprocess.Popen([sys.executable, "-m", "connwatch", "run", "--netns", "all", "--interval", "1",
                                  "--listener-interval", "0.5", "--listen", f"127.0.0.1:{port}", "--legacy-metrics",
                                  "off", "--state-dir", str(tmp_path / "state")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "CONNWATCH_NETNS": "all"})
        try:
            flood = ns.python("flood.py", "--port", str(PORT), "--count", "40", "--hold", "30")
            assert poll(lambda: ns.ss_drops(PORT) >= 20, 15)
            flood.kill()
            flood.wait(10)  # the counters stop moving
            overflows = ns.nstat("TcpExtListenOverflows")
            name = "connwatch_netstat_tcpext_listen_overflows_total"
            drops = "connwatch_listener_drops_total"

            def caught_up() -> bool:  # the full sample's counters and the listener poll's drops, each after the flood
                text = _scrape(port)
                return (_value(text, name, ns.name) == overflows
                        and _value(text, drops, ns.name, port=str(PORT)) == ns.ss_drops(PORT))

            assert poll(caught_up, 30, 0.5), _scrape(port)[-3000:]
            text = _scrape(port)
            assert overflows > 0 and _value(text, name, quiet.name) == quiet.nstat("TcpExtListenOverflows") == 0
            backlog = "connwatch_listener_backlog"
            assert _value(text, backlog, ns.name, port=str(PORT)) == 5
            assert _value(text, backlog, quiet.name, port=str(PORT)) == 9
            assert _value(text, drops, ns.name, port=str(PORT)) == ns.ss_drops(PORT)
            assert _value(text, "connwatch_netns_info", ns.name, inode=str(os.stat(f"/run/netns/{ns.name}").st_ino))
            if shutil.which("promtool") is not None:
                done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                                      timeout=60)
                assert (done.returncode, done.stdout + done.stderr) == (0, "")
        finally:
            os.kill(agent.pid, signal.SIGTERM)
            _out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0 and "Traceback" not in err

