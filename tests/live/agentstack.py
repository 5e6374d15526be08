"""The agent, Alertmanager and Prometheus inside one test namespace, on its loopback.

Each process gets a temp data dir, a log file and a bounded lifetime; the namespace fixture kills
them by PID (Netns.stop_all) whatever happens. Queries run inside the namespace too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from connwatch.outputs.promrules import inhibit_rules

from .netns import Netns, poll

AGENT_PORT, AM_PORT, PROM_PORT, SINK_PORT = 19815, 19093, 19090, 19080
INSTANCE = "cwtest"
AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROM_BIN = shutil.which("prometheus")

AM_CONFIG = """route:
  receiver: sink
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: sink
inhibit_rules: """ + json.dumps(inhibit_rules()) + "\n"  # as `connwatch rules --format prometheus` prints them

PROM_CONFIG = f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['127.0.0.1:{AM_PORT}']}}]
scrape_configs:
  - job_name: connwatch
    static_configs: [{{targets: ['127.0.0.1:{AGENT_PORT}']}}]
    relabel_configs: [{{target_label: instance, replacement: '{INSTANCE}:{AGENT_PORT}'}}]  # scraped by host name
"""

_GET = """import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.stdout.write(r.read().decode())
except OSError as e:
    sys.stdout.write("ERROR " + str(e))
"""


class Stack:
    def __init__(self, ns: Netns, tmp: Path) -> None:
        self.ns, self.tmp = ns, tmp
        self.state = tmp / "state"
        self.sink_file = tmp / "webhook.jsonl"
        self.agent: subprocess.Popen[str] | None = None
        self.am: subprocess.Popen[str] | None = None
        self.agent_log = tmp / "agent.log"

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[str]:
        log = open(self.tmp / f"{name}.log", "a")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(self.ns.cmd(args), stdout=log, stderr=subprocess.STDOUT, text=True,
                                cwd=self.tmp)
        log.close()
        self.ns.procs.append(proc)
        return proc

    def get(self, url: str) -> str:
        return self.ns.run([sys.executable, "-c", _GET, url], timeout=30).stdout

    def get_json(self, url: str) -> Any:
        text = self.get(url)
        return None if text.startswith("ERROR") else json.loads(text)

    # -- the agent ---------------------------------------------------------------

    def start_agent(self, *extra: str, interval: str = "1", alertmanager: bool = True,
                    webhook: bool = True) -> subprocess.Popen[str]:
        args = [sys.executable, "-m", "connwatch", "run", "--interval", interval, "--listener-interval", "0.2",
                "--listen", f"127.0.0.1:{AGENT_PORT}", "--state-dir", str(self.state), "--instance", INSTANCE,
                "--retry-max", "2", "--resend-interval", "5", "--netns", "own"]
        if alertmanager:
            args += ["--alertmanager", f"http://127.0.0.1:{AM_PORT}"]
        if webhook:
            args += ["--webhook", f"http://127.0.0.1:{SINK_PORT}/hook"]
        self.agent = self._start("agent", [*args, *extra])
        # started = its first full sample taken: the baseline of the kernel's counters (/metrics answers before)
        assert poll(lambda: re.search(r'^connwatch_samples_total\{kind="full"\} [1-9]', self.get(self.metrics_url),
                                      re.M) is not None, 20), self.log()
        return self.agent

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{AGENT_PORT}/metrics"

    def log(self) -> str:
        return self.agent_log.read_text() if self.agent_log.exists() else ""

    def kill_agent(self) -> None:
        assert self.agent is not None
        os.kill(self.agent.pid, signal.SIGKILL)
        self.agent.wait(timeout=10)

    def connwatch(self, *args: str) -> Any:
        done = self.ns.connwatch(*args, "--format", "json", "--state-dir", str(self.state))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    # -- Alertmanager, Prometheus, the webhook sink ---------------------------------

    def start_alertmanager(self) -> None:
        assert AM_BIN is not None
        (self.tmp / "am.yml").write_text(AM_CONFIG)
        self.am = self._start("alertmanager", [
            AM_BIN, "--config.file=am.yml", f"--storage.path={self.tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{AM_PORT}", "--cluster.listen-address=",
            "--data.retention=1h"])
        ready = f"http://127.0.0.1:{AM_PORT}/-/ready"
        assert poll(lambda: not self.get(ready).startswith("ERROR"), 30, 0.2), self.read("alertmanager.log")

    def stop_alertmanager(self) -> None:
        assert self.am is not None
        os.kill(self.am.pid, signal.SIGTERM)
        self.am.wait(timeout=20)

    def am_alerts(self, alertname: str | None = None, **labels: str) -> list[dict[str, Any]]:
        found = self.get_json(f"http://127.0.0.1:{AM_PORT}/api/v2/alerts") or []
        return [a for a in found if (alertname is None or a["labels"]["alertname"] == alertname)
                and all(a["labels"].get(k) == v for k, v in labels.items())]

    def start_prometheus(self, rules: str) -> None:
        assert PROM_BIN is not None
        (self.tmp / "rules.yml").write_text(rules)
        (self.tmp / "prometheus.yml").write_text(PROM_CONFIG)
        self._start("prometheus", [
            PROM_BIN, "--config.file=prometheus.yml", f"--storage.tsdb.path={self.tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{PROM_PORT}", "--storage.tsdb.retention.time=1h"])
        ready = f"http://127.0.0.1:{PROM_PORT}/-/ready"
        assert poll(lambda: not self.get(ready).startswith("ERROR"), 40, 0.2), self.read("prometheus.log")

    def prom_alerts(self, alertname: str) -> list[dict[str, Any]]:
        data = self.get_json(f"http://127.0.0.1:{PROM_PORT}/api/v1/alerts") or {"data": {"alerts": []}}
        return [a for a in data["data"]["alerts"] if a["labels"]["alertname"] == alertname]

    def start_sink(self) -> None:
        self.ns.python("webhook_sink.py", "--port", str(SINK_PORT), "--out", str(self.sink_file),
                       "--lifetime", "240")

    def sink_events(self) -> list[dict[str, Any]]:
        if not self.sink_file.exists():
            return []
        return [json.loads(line)["body"] for line in self.sink_file.read_text().splitlines() if line]

    def sink_peers(self) -> set[int]:
        return {json.loads(line)["peer"] for line in self.sink_file.read_text().splitlines() if line}

    def read(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text()[-3000:] if path.exists() else ""
