"""`check --format nagios` by the monitoring-plugins guidelines: perfdata read back by a real parser (Debian's
libmonitoring-plugin-perl, Monitoring::Plugin::Performance), warn/crit from the rules in force, unique labels,
long output; `-V`, `-t`, `-w/-c`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

import pytest

from connwatch.attributes.registry import default_rules
from connwatch.cli import main
from connwatch.commands.plugin import TimedOut, deadline, override
from connwatch.engine import CheckResult, judge
from connwatch.outputs.nagios import render
from connwatch.rules.config import Config

from .builders import listener, snapshot

PARSE = r"""
use strict; use warnings; use JSON::PP; use Monitoring::Plugin::Performance use_die => 1;
my @out;
for my $p (Monitoring::Plugin::Performance->parse_perfstring(join("", <STDIN>))) {
    my $t = $p->threshold;
    push @out, {label => $p->label, value => $p->value + 0, uom => $p->uom,
                warning => ($t->warning->is_set ? $t->warning->end + 0 : undef),
                critical => ($t->critical->is_set ? $t->critical->end + 0 : undef),
                min => (defined $p->min ? $p->min + 0 : undef)};
}
print encode_json(\@out);
"""


def _perl_has_monitoring_plugin() -> bool:
    if shutil.which("perl") is None:
        return False
    return subprocess.run(["perl", "-MMonitoring::Plugin::Performance", "-e1"], capture_output=True).returncode == 0


needs_parser = pytest.mark.skipif(not _perl_has_monitoring_plugin(),
                                  reason="needs Monitoring::Plugin (Debian package libmonitoring-plugin-perl)")


def _parse(perfdata: str) -> list[dict[str, Any]]:
    done = subprocess.run(["perl", "-e", PARSE], input=perfdata, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    parsed: list[dict[str, Any]] = json.loads(done.stdout)
    return parsed


def _result(config: Config) -> CheckResult:
    """Port 8080 (backlog 5, queue full) rejected 150 requests in 5 s; port 8081 is quiet."""
    prev = snapshot(100.0, (listener(8080, 6, 5, 10), listener(8081, 0, 128, 0)),
                    {"TcpExt.ListenOverflows": 10, "TcpExt.ListenDrops": 10, "TcpExt.TCPReqQFullDrop": 0})
    cur = snapshot(105.0, (listener(8080, 6, 5, 160), listener(8081, 0, 128, 0)),
                   {"TcpExt.ListenOverflows": 160, "TcpExt.ListenDrops": 160, "TcpExt.TCPReqQFullDrop": 0})
    return judge(prev, cur, config, None)


@needs_parser
def test_a_real_parser_reads_values_and_the_thresholds_of_the_rules_in_force() -> None:
    config = Config(default_rules())
    first, *long = render(_result(config), rules=config.rules).splitlines()
    status, perf = first.split(" | ")
    assert status.startswith("CONNWATCH CRITICAL - 1 alert(s): TCP(8080) BacklogRejectsByPort High, 150 requests")
    parsed = {p["label"]: p for p in _parse(perf)}
    assert len(parsed) == perf.count("'=")  # every value parsed, no label twice
    rejects = parsed["8080 BacklogRejectsByPort"]
    assert (rejects["value"], rejects["warning"], rejects["critical"], rejects["min"]) == (150, 0, 100, 0)
    fill = parsed["8080 AcceptQueueFill"]
    assert (fill["value"], fill["uom"], fill["warning"], fill["critical"]) == (120, "%", 80, 100)
    assert (parsed["host SynQueueDrops"]["warning"], parsed["host SynQueueDrops"]["critical"]) == (0, None)
    quiet = parsed["8081 BacklogRejectsByPort"]
    assert (quiet["value"], quiet["warning"], quiet["critical"]) == (0, 0, 100)
    port_and_host = [str(k) for k in parsed if str(k).split(" ")[0].isdigit() or str(k).startswith("host ")]
    assert len(port_and_host) == 6
    assert len({label[:19] for label in port_and_host}) == len(port_and_host)  # distinct for 19-char tools
    # Long output: one line per alert after the status line (the folded full queue is not a second alert).
    assert long and long[0].startswith("TCP(8080) BacklogRejectsByPort High, 150 requests > 100 requests: ")
    assert len(long) == 1


@needs_parser
def test_w_and_c_replace_the_main_limits_and_the_verdict_follows() -> None:
    config = override(Config(default_rules()), [("BacklogRejectsByPort", 200.0)], [("BacklogRejectsByPort", 500.0)])
    result = _result(config)
    # 150 rejects are under both new limits: the full queue (120 % > 100 %) alerts on its own.
    breached = {f.measurement.attribute for f in result.breached}
    assert "BacklogRejectsByPort" not in breached and "AcceptQueueFill" in breached
    first = render(result, rules=config.rules).splitlines()[0]
    rejects = {p["label"]: p for p in _parse(first.split(" | ")[1])}["8080 BacklogRejectsByPort"]
    assert (rejects["warning"], rejects["critical"]) == (200, 500)


def test_override_keeps_port_rules_and_adds_missing_tiers() -> None:
    from connwatch.rules.rule import Rule

    rules = (Rule("SynQueueDrops", 0, severity=3), Rule("SynQueueDrops", 7, severity=3, port=25))
    done = override(Config(rules), [], [("SynQueueDrops", 9.0)]).rules
    assert Rule("SynQueueDrops", 7, severity=3, port=25) in done and Rule("SynQueueDrops", 0, severity=3) in done
    assert any(r.severity == 2 and r.high == 9.0 and r.port is None for r in done)


def test_version_timeout_and_bad_limits(capsys: pytest.CaptureFixture[str]) -> None:
    from connwatch import __version__

    assert main(["check", "-V"]) == 0 and capsys.readouterr().out == f"connwatch {__version__}\n"
    assert main(["check", "--interval", "5", "-t", "3"]) == 3
    assert "--timeout must be more than --interval" in capsys.readouterr().err
    assert main(["check", "-w", "-1"]) == 3
    assert "--warning must be N or ATTRIBUTE=N" in capsys.readouterr().err
    assert main(["check", "-c", "Nope=3"]) == 3
    assert "unknown attribute 'Nope'" in capsys.readouterr().err


def test_deadline_interrupts_a_stuck_check() -> None:
    start = time.monotonic()
    with pytest.raises(TimedOut, match=r"timed out after 0\.2 s"), deadline(0.2):
        while time.monotonic() - start < 10:  # bounded: fails the test rather than hanging
            time.sleep(0.01)
    assert time.monotonic() - start < 5
    assert TimedOut("x").exit_code == 3
