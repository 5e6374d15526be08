"""Per-source attributes, limits, aggregation, caps, explanations and the nft rule (pure)."""

from __future__ import annotations

import ipaddress
import json
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connwatch.attributes import sources as attr
from connwatch.attributes.registry import spec
from connwatch.cli import main
from connwatch.engine import judge
from connwatch.errors import ConfigError, UsageError
from connwatch.explain import explain
from connwatch.explain.sources import nft_rule
from connwatch.findings import Finding
from connwatch.model import DestinationUsage, Process, Snapshot, SocketSummary, SourceTable, SourceUsage
from connwatch.outputs.jsonout import alert_dict
from connwatch.remedy.nftables import PerSourceLimit, render
from connwatch.reports.sources import build_report, nft_script
from connwatch.rules.config import Config, parse_config
from connwatch.rules.evaluate import evaluate
from connwatch.rules.sources import SourceSettings
from connwatch.rules.spec import Rule, default_rules

from .builders import listener, snapshot

T0 = 1_700_000_000.0
SMTP = Process(pid=777, command="smtpd", user="mail")


def usage(source: str, port: int, **states: int) -> SourceUsage:
    return SourceUsage(source=source, port=port, states=states)


def snap(at: float, usages: tuple[SourceUsage, ...], destinations: tuple[DestinationUsage, ...] = (),
         ports: tuple[int, ...] = (2525,)) -> Snapshot:
    sockets = SocketSummary(total=sum(u.total for u in usages), by_state={}, destinations=destinations,
                            sources=SourceTable.of(usages))
    return snapshot(at, tuple(listener(p, owner=SMTP) for p in ports), sockets=sockets)


def mail_pair(extra: Mapping[str, int] | None = None) -> tuple[Snapshot, Snapshot]:
    usages = (usage("127.0.0.2", 2525, ESTABLISHED=150, **(extra or {})), usage("127.0.0.3", 2525, ESTABLISHED=20))
    return snap(T0, usages), snap(T0 + 5, usages)


def findings(rules: tuple[Rule, ...] | Config, prev: Snapshot, cur: Snapshot,
             settings: SourceSettings | None = None) -> dict[tuple[str, str], Finding]:
    config = rules if isinstance(rules, Config) else Config(rules, sources=settings or SourceSettings())
    return {(f.measurement.attribute, f.measurement.resource_key): f
            for f in evaluate(config.rules, attr.measure(prev, cur, config))}


def test_issue_scenario_150_and_20_against_the_default_limit() -> None:
    got = findings(default_rules(), *mail_pair())
    heavy = got[("ConnectionsPerSource", "TCP(2525) 127.0.0.2")]
    assert heavy.breached and heavy.measurement.value == 150 and heavy.limit == 100
    assert heavy.measurement.resource == {"source": "127.0.0.2", "port": 2525}
    assert not got[("ConnectionsPerSource", "TCP(2525) 127.0.0.3")].breached


def test_a_source_held_mostly_in_close_wait_is_an_application_leak_said_first() -> None:
    """150 connections from one source, all CLOSE_WAIT: the application never closes them (issue 10)."""
    usages = (usage("127.0.0.2", 2525, CLOSE_WAIT=150),)
    result = judge(snap(T0, usages), snap(T0 + 5, usages), Config(default_rules()), None)
    [f] = [f for f in result.breached if f.measurement.attribute == "ConnectionsPerSource"]
    assert f.explanation is not None and f.explanation.explanation.startswith("Application leak: 150 of these 150")
    assert f.explanation.action.startswith("Fix the application serving port 2525")
    assert "ct count" not in f.explanation.action  # limiting the client would not help
    busy = (usage("127.0.0.2", 2525, ESTABLISHED=150, CLOSE_WAIT=10),)
    [g] = [g for g in judge(snap(T0, busy), snap(T0 + 5, busy), Config(default_rules()), None).breached
           if g.measurement.attribute == "ConnectionsPerSource"]
    assert g.explanation is not None and not g.explanation.explanation.startswith("Application leak")


def test_counted_states_are_established_and_close_wait_only() -> None:
    prev, cur = mail_pair({"CLOSE_WAIT": 7, "TIME_WAIT": 300, "FIN_WAIT2": 9, "LAST_ACK": 4, "SYN_RECV": 60})
    got = findings(default_rules(), prev, cur)
    heavy = got[("ConnectionsPerSource", "TCP(2525) 127.0.0.2")]
    assert heavy.measurement.value == 157
    half = got[("HalfOpenPerSource", "TCP(2525) 127.0.0.2")]
    assert half.measurement.value == 60 and half.breached and half.limit == 50
    words = explain(heavy)
    assert "7 of them are CLOSE_WAIT" in words.explanation and "60 are half-open" in words.explanation


def _rules(toml: str) -> Config:
    import tomllib

    return parse_config(tomllib.loads(toml), "test.toml")


@pytest.mark.parametrize(("toml", "breached"), [
    ("", True),
    ('[[rules]]\nattribute = "ConnectionsPerSource"\nport = 2525\nhigh = 200\n', False),
    ('[[rules]]\nattribute = "ConnectionsPerSource"\nport = 2525\nhigh = "unlimited"\n', None),
    ('[[rules]]\nattribute = "ConnectionsPerSource"\nport = 25\nhigh = 200\n', True),  # another port
    ("[sources]\nlimit = 200\n", False),
    ('[sources]\nlimit = "unlimited"\n', None),
    ('[sources]\nlimit = "unlimited"\n[[rules]]\nattribute = "ConnectionsPerSource"\nport = 2525\nhigh = 120\n',
     True),
    ('[[rules]]\nattribute = "ConnectionsPerSource"\nhigh = 200\n', False),  # generic rule replaces default
    ('[[rules]]\nattribute = "ConnectionsPerSource"\naddress = "127.0.0.2"\nhigh = 1000\n', False),
])
def test_limits_global_per_port_and_unlimited(toml: str, breached: bool | None) -> None:
    got = findings(_rules(toml), *mail_pair())
    heavy = got.get(("ConnectionsPerSource", "TCP(2525) 127.0.0.2"))
    assert (None if heavy is None else heavy.breached) is breached


@pytest.mark.parametrize(("toml", "message"), [
    ("[sources]\nlimit = 0\n", "[sources]: limit: 0 is out of range (1–10000, or \"unlimited\")"),
    ("[sources]\nlimit = 10001\n", "out of range (1–10000"),
    ('[sources]\nlimit = "lots"\n', "must be a number or \"unlimited\", got 'lots'"),
    ("[sources]\nlimit = 1.5\n", "limit must be a whole number"),
    ("[sources]\nhalf_open_limit = -3\n", "half_open_limit: -3 is out of range"),
    ("[sources]\nports = 3\n", "unknown key(s) ['ports']"),
    ('[sources]\naggregate = "yes"\n', "aggregate must be true or false"),
    ("[sources]\nipv4_prefix = 33\n", "ipv4_prefix: must be a whole number from 1 to 32"),
    ("[sources]\ntop = 0\n", "top: must be a whole number from 1 to 1000"),
    ("sources = 3\n", "[sources]: must be a table"),
    ('[[rules]]\nattribute = "ConnectionsPerSource"\nhigh = 0\n',
     "ConnectionsPerSource limit must be a whole number from 1 to 10000, or \"unlimited\", got 0"),
    ('[[rules]]\nattribute = "ConnectionsPerSource"\nport = 25\nhigh = 20000\n', "got 20000"),
    ('[[rules]]\nattribute = "ConnectionsPerSource"\nhigh = 5\nmode = "rate"\n', "mode must be 'value'"),
    ("[other]\n", "expected [settings], [[rules]], [sources]"),
])
def test_invalid_limits_and_settings_are_one_clear_error(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _rules(toml)
    assert message in str(err.value) and str(err.value).startswith("test.toml: ")


def test_backlog_rules_are_untouched_by_sources_settings() -> None:
    backlog = [r for r in _rules('[sources]\nlimit = "unlimited"\n').rules if r.attribute == "BacklogRejectsByPort"]
    assert backlog == [r for r in default_rules() if r.attribute == "BacklogRejectsByPort"]


@given(st.ip_addresses(), st.integers(min_value=1, max_value=128))
def test_prefix_matches_ipaddress(address: ipaddress.IPv4Address | ipaddress.IPv6Address, plen: int) -> None:
    v4 = address.version == 4
    s = SourceSettings(aggregate=True, ipv4_prefix=min(plen, 32), ipv6_prefix=plen)
    net = ipaddress.ip_network((address, min(plen, 32) if v4 else plen), strict=False)
    assert ipaddress.ip_network(attr.prefix_of(str(address), s)) == net  # text may differ (::ffff:0.0.0.0)
    assert attr.prefix_of(str(address), SourceSettings()) == str(address)


def test_aggregation_by_prefix_sees_a_subnet_as_one_source() -> None:
    usages = tuple(usage(f"10.1.2.{i}", 2525, ESTABLISHED=30) for i in range(1, 5))
    usages += (usage("2001:db8:1:1::5", 2525, ESTABLISHED=60), usage("2001:db8:1:1::6", 2525, ESTABLISHED=60),
               usage("10.1.3.1", 2525, ESTABLISHED=30))
    prev, cur = snap(T0, usages), snap(T0 + 5, usages)
    plain = findings(default_rules(), prev, cur)
    assert not any(f.breached for f in plain.values())
    merged = findings(default_rules(), prev, cur, SourceSettings(aggregate=True))
    subnet = merged[("ConnectionsPerSource", "TCP(2525) 10.1.2.0/24")]
    assert subnet.breached and subnet.measurement.value == 120
    assert subnet.measurement.detail["member_count"] == 4
    assert merged[("ConnectionsPerSource", "TCP(2525) 2001:db8:1:1::/64")].measurement.value == 120
    assert not merged[("ConnectionsPerSource", "TCP(2525) 10.1.3.0/24")].breached
    words = explain(subnet)
    assert "4 addresses counted as one" in words.explanation
    assert "ip saddr and 255.255.255.0 ct count over 100" in nft_rule(subnet.measurement.facts, subnet.limit)
    assert "`connwatch sources --port 2525 --nft --limit 100`" in words.action  # the command, never the script
    assert "per /24 (IPv4)" in words.action and "table inet" in words.action
    assert "add rule" not in words.action


def _crowd(n: int, conns: int = 3) -> tuple[SourceUsage, ...]:
    return tuple(usage(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 2525, ESTABLISHED=conns + (i == 7) * 500)
                 for i in range(n))


def test_alerts_are_capped_per_port_and_the_rest_summarised(tmp_path: Path) -> None:
    usages = _crowd(5000)
    prev, cur = snap(T0, usages), snap(T0 + 5, usages)
    rules = _rules("[sources]\nlimit = 2\nmax_alerts_per_port = 10\n")
    result = judge(prev, cur, rules, None)
    per_source = [f for f in result.breached if f.measurement.attribute == "ConnectionsPerSource"]
    assert len(per_source) == 10
    top = max(per_source, key=lambda f: f.measurement.value)
    assert top.measurement.resource["source"] == "10.0.0.7" and top.measurement.value == 503
    assert "5000 sources are over the limit on this port; connwatch alerts on the 10 heaviest only" \
        in top.explanation.explanation  # type: ignore[union-attr]
    report = build_report(prev, cur, rules.rules, rules.sources, None, 10)
    assert len(report["sources"]) == 10 and report["ports"][0]["sources"] == 5000
    assert report["ports"][0]["over_limit"] == 5000 and report["ports"][0]["connections"] == 15500


def test_measure_cost_is_bounded_with_100000_sources() -> None:
    usages = _crowd(100_000, 1)
    prev, cur = snap(T0, usages), snap(T0 + 5, usages)
    tracemalloc.start()
    out = attr.measure(prev, cur, Config((), sources=SourceSettings()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(out) <= 2 * 10 + 10  # top N per port and attribute, plus top N PortsPerSource
    assert peak < 60 * 1024 * 1024, peak  # transient rows only, nothing per source kept


def test_ports_per_source_is_the_union_over_both_samples() -> None:
    probes = tuple(usage("192.0.2.9", p, SYN_RECV=1) for p in (21, 22, 23))
    prev = snap(T0, (*probes, usage("192.0.2.1", 80, ESTABLISHED=1)), ports=(21, 22, 23, 80, 443))
    cur = snap(T0 + 5, (usage("192.0.2.9", 23, TIME_WAIT=1), usage("192.0.2.9", 443, ESTABLISHED=1),
                        usage("192.0.2.1", 443, ESTABLISHED=1)), ports=(21, 22, 23, 80, 443))
    got = findings(_rules("[sources]\nports_limit = 3\n"), prev, cur)
    scan = got[("PortsPerSource", "TCP(*) 192.0.2.9")]
    assert scan.breached and scan.measurement.value == 4 and scan.measurement.detail["ports"] == [21, 22, 23, 443]
    assert not got[("PortsPerSource", "TCP(*) 192.0.2.1")].breached
    words = explain(scan)
    assert "probes of closed ports" in words.explanation and "ip saddr 192.0.2.9 drop" in words.action


def test_local_sources_and_owner_are_named() -> None:
    here = DestinationUsage(local_address="192.0.2.50", remote_address="192.0.2.50", remote_port=2525,
                            states={"ESTABLISHED": 150})
    usages = (usage("192.0.2.50", 2525, ESTABLISHED=150), usage("198.51.100.7", 2525, ESTABLISHED=150))
    got = findings(default_rules(), snap(T0, usages, (here,)), snap(T0 + 5, usages, (here,)))
    local = explain(got[("ConnectionsPerSource", "TCP(2525) 192.0.2.50")])
    remote = explain(got[("ConnectionsPerSource", "TCP(2525) 198.51.100.7")])
    assert "is this host itself" in local.explanation and "src 192.0.2.50 and dst :2525" in local.explanation
    assert "the client is remote" in remote.explanation
    assert "pid 777 (smtpd, user mail) on 0.0.0.0:2525" in remote.explanation and "smtpd" in remote.owner
    for phrase in ("MaxInboundConnectionPerSource 100", "limit_conn perip 100", "sc_conn_cur(0) gt 100",
                   "ct count over 100", "nft -f"):
        assert phrase in remote.action


def test_alert_json_keys(tmp_path: Path) -> None:
    result = judge(*mail_pair(), Config(default_rules()), None)
    [alert] = [a for a in result.step.raised if a.attribute == "ConnectionsPerSource"]
    d = alert_dict(alert)
    assert (d["source"], d["port"], d["value"], d["limit"]) == ("127.0.0.2", 2525, 150.0, 100.0)
    assert d["description"] == "TCP(2525) 127.0.0.2 ConnectionsPerSource High, 150 conns > 100 conns"


def test_nft_rule_text() -> None:
    text = render(PerSourceLimit(2525, 100))
    assert "tcp dport 2525 ct state new add @src4_p2525 { ip saddr ct count over 100 }" in text
    assert "add @src6_p2525 { ip6 saddr ct count over 100 } counter reject with tcp reset" in text
    assert "flush chain inet connwatch limit_p2525" in text
    wide = render(PerSourceLimit(25, 7, ipv4_prefix=16, ipv6_prefix=48))
    assert "ip saddr and 255.255.0.0 ct count over 7" in wide and "ip6 saddr and ffff:ffff:ffff:: ct" in wide
    with pytest.raises(ValueError):
        PerSourceLimit(25, 0)
    assert "ct count over 200" in nft_script(2525, None, _rules(
        '[[rules]]\nattribute = "ConnectionsPerSource"\nport = 2525\nhigh = 200\n').rules, SourceSettings())
    with pytest.raises(UsageError, match="unlimited"):
        nft_script(2525, None, _rules('[sources]\nlimit = "unlimited"\n').rules, SourceSettings())


def test_cli_nft_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sources", "--port", "2525", "--nft", "--limit", "150"]) == 0
    assert "ct count over 150" in capsys.readouterr().out
    for args, message in ((["--nft"], "--nft needs --port"), (["--port", "2525", "--nft", "--limit", "0"],
                                                               "--limit must be from 1 to 10000"),
                          (["--top", "0"], "--top must be from 1 to 1000")):
        assert main(["sources", *args]) == 3
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[sources]\nlimit = 0\n")
    assert main(["sources", "--config", str(bad)]) == 3
    assert "limit: 0 is out of range" in capsys.readouterr().err


def _tcp_line(n: int, local: str, remote: str, state: str) -> str:
    return (f"{n:4}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000     0        0 "
            f"{1000 + n} 1 0000000000000000 100 0 0 10 0")


def test_cli_reads_the_proc_fallback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """/proc/net/tcp (little-endian hex addresses, state 01 ESTABLISHED, 03 SYN_RECV, 0A LISTEN) feeds the
    same per-source aggregates: 3 ESTABLISHED + 1 SYN_RECV from 127.0.0.2 to port 2525 (09DD)."""
    import shutil

    proc = tmp_path / "proc"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x", proc)
    lines = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
             _tcp_line(0, "0100007F:09DD", "00000000:0000", "0A")]
    lines += [_tcp_line(i, "0100007F:09DD", f"0200007F:{40000 + i:04X}", "01") for i in (1, 2, 3)]
    lines += [_tcp_line(4, "0100007F:09DD", "0200007F:A000", "03"),
              _tcp_line(5, "0200007F:A001", "0100007F:09DD", "01")]  # the client's own end: outbound
    (proc / "net" / "tcp").write_text("\n".join(lines) + "\n")
    assert main(["sources", "--format", "json", "--proc-root", str(proc), "--no-netlink"]) == 0
    data = json.loads(capsys.readouterr().out)
    [row] = [r for r in data["sources"] if r["port"] == 2525]
    assert (row["source"], row["value"], row["half_open"], row["limit"]) == ("127.0.0.2", 3, 1, 100.0)
    assert row["local"] is True and data["ports"][0]["sources"] == 1


CONTEXT_KEYS = ["interval_s", "aggregate", "prefix", "max_alerts_per_port", "tcp_syncookies", "tcp_max_syn_backlog"]
PER_PORT_KEYS = [*CONTEXT_KEYS, "port", "owners", "port_sources", "port_connections", "port_half_open", "histogram",
                 "source", "states", "connections", "half_open", "rank", "members", "member_count", "local",
                 "counted_states"]
DETAIL_KEYS = {"ConnectionsPerSource": PER_PORT_KEYS, "HalfOpenPerSource": PER_PORT_KEYS,
               "PortsPerSource": [*CONTEXT_KEYS, "source", "ports", "rank", "sources_total", "histogram", "local"]}


@pytest.mark.parametrize("aggregate", [False, True])
def test_facts_are_the_specs_type_and_the_detail_keeps_its_key_order(aggregate: bool) -> None:
    usages = (usage("192.0.2.7", 2525, ESTABLISHED=30, SYN_RECV=8), usage("192.0.2.7", 25, ESTABLISHED=2),
              usage("192.0.2.8", 2525, ESTABLISHED=3))
    prev, cur = snap(T0, usages, ports=(25, 2525)), snap(T0 + 5, usages, ports=(25, 2525))
    ms = attr.measure(prev, cur, Config((), sources=SourceSettings(aggregate=aggregate)))
    assert {m.attribute for m in ms} == set(DETAIL_KEYS)
    for m in ms:
        s = spec(m.attribute)
        assert s is not None and type(m.facts) is s.facts  # the type its explainer is checked against
        assert list(m.detail) == DETAIL_KEYS[m.attribute]
    heavy = next(m for m in ms if m.attribute == "ConnectionsPerSource" and m.resource["port"] == 2525)
    d = heavy.detail
    assert d["prefix"] == ({"ipv4": 24, "ipv6": 64} if aggregate else None)
    assert d["owners"] == [{"endpoint": "0.0.0.0:2525",
                            "owner": {"pid": 777, "command": "smtpd", "cmdline": "", "user": "mail"}}]
    assert d["counted_states"] == ["ESTABLISHED", "CLOSE_WAIT"]
    assert (d["source"], d["histogram"], d["members"]) == (
        ("192.0.2.0/24", [[33, 1]], ["192.0.2.7", "192.0.2.8"]) if aggregate else ("192.0.2.7", [[30, 1], [3, 1]], []))
    assert d["owners"] == attr.owners(cur, 2525)
