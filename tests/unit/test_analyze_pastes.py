"""Pasted captures (issue 12): prompts, command lines, grep excerpts, several commands per paste.

The corpus is real output from public sources (tests/fixtures/captures/pastes/SOURCES.md); each file's
golden findings are in tests/fixtures/golden/pastes.json (regenerate with `python -m tests.unit.paste_golden`
and review the diff). The explicit tests below pin the cases the issue names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connwatch.analyze.output import analysis_dict
from connwatch.analyze.run import run_analysis
from connwatch.analyze.segment import segment
from connwatch.rules.config import load_config
from tests.unit.paste_golden import GOLDEN, PASTES, run_paste

CASES = json.loads(GOLDEN.read_text())


def test_corpus_has_40_pastes_each_with_a_source() -> None:
    names = sorted(p.name for p in PASTES.glob("*.txt"))
    sources = (PASTES / "SOURCES.md").read_text()
    assert len(names) >= 40
    assert [n for n in names if f"`{n}`" not in sources] == []
    assert sorted(CASES) == names


@pytest.mark.parametrize("name", sorted(CASES))
def test_paste_matches_golden(name: str) -> None:
    assert run_paste(name) == CASES[name]


def _analyse(*paths: Path, interval: float | None = None) -> dict[str, Any]:
    analysis, errors = run_analysis([str(p) for p in paths], load_config(None), interval, None, None)
    assert analysis is not None, errors
    return analysis_dict(analysis)


def test_netstat_s_grep_excerpts_give_listen_overflows() -> None:
    """`netstat -s | grep -i listen` keeps only net-tools' sentences (statistics.c), no section header."""
    mongo = _analyse(PASTES / "netstat_s_grep_listen_mongodb_pr128.txt")
    assert mongo["counters"]["TcpExt.ListenOverflows"] == 189088
    assert mongo["counters"]["TcpExt.ListenDrops"] == 30140232
    assert [a["attribute"] for a in mongo["alerts"]] == ["ListenOverflows"]
    egrep = _analyse(PASTES / "netstat_s_egrep_listen_root_prompt_readitlater6647.txt")
    assert egrep["counters"]["TcpExt.ListenOverflows"] == 667399
    assert egrep["counters"]["TcpExt.ListenDrops"] == 667399  # old wording "SYNs to LISTEN sockets ignored"
    assert egrep["host"] == "server"  # from the prompt [root@server ~]#


def test_full_Lan_queue_inside_a_mixed_paste() -> None:
    """-Lan with the author's question after it: the queue 193/0/128 is read, the prose is reported skipped."""
    report = _analyse(PASTES / "freebsd_Lan_transmission1388.txt")
    (listener,) = [x for x in report["listeners"] if x["port"] == 58001]
    assert (listener["queue"], listener["backlog"]) == (193, 128)
    alert = next(a for a in report["alerts"] if a["attribute"] == "AcceptQueueFill")
    assert alert["value"] == pytest.approx(193 / 128 * 100, abs=0.1)
    skipped = report["captures"][0]["skipped_parts"]
    assert [s["lines"] for s in skipped] == [[6, 6], [7, 7]]
    tcpcb = _analyse(PASTES / "freebsd_LaAn_tcpcb_aria2_636.txt")
    assert [(x["port"], x["queue"], x["backlog"]) for x in tcpcb["listeners"]] == [(55083, 2, 1)]
    assert tcpcb["captures"][0]["files"][0]["command"] == "netstat -LaAn"


def test_several_commands_in_one_paste_each_used() -> None:
    report = _analyse(PASTES / "sockstat_netstat_ta_elided_rows_diamond217.txt")
    files = report["captures"][0]["files"]
    assert [(f["format"], f["command"]) for f in files] == [("proc-net-sockstat", "cat /proc/net/sockstat"),
                                                          ("netstat-linux", "netstat -t -a")]
    assert report["host"] == "dfvimeostatsd1"
    reasons = [s["reason"] for s in report["captures"][0]["skipped_parts"]]
    assert sum("elided" in r for r in reasons) == 4


def test_files_of_one_host_are_one_capture(tmp_path: Path) -> None:
    """ss -lnt + netstat -s excerpt + ss -tan given together: one capture, listeners and counters merged."""
    (tmp_path / "ss-ltn.txt").write_text((PASTES / "ss_ltnup_sport_filter_haproxy2519.txt").read_text())
    (tmp_path / "grep.txt").write_text((PASTES / "netstat_s_grep_listen_mongodb_pr128.txt").read_text())
    (tmp_path / "ss-tan.txt").write_text((PASTES / "ss_ant_synsent_prompt_netdata2169.txt").read_text())
    report = _analyse(tmp_path / "ss-ltn.txt", tmp_path / "grep.txt", tmp_path / "ss-tan.txt")
    assert len(report["captures"]) == 1
    assert report["counters"]["TcpExt.ListenOverflows"] == 189088
    assert {x["port"] for x in report["listeners"]} == {443}
    assert report["sockets"]["total"] == 4
    two = _analyse(tmp_path / "ss-tan.txt", tmp_path / "ss-tan.txt", interval=60)
    assert two["interval_s"] == 60  # same kind twice: only --interval tells the captures apart


def test_utf16_without_bom(tmp_path: Path) -> None:
    text = (PASTES / "windows_netstat_ano_chinese_billfeller174.txt").read_text()
    (tmp_path / "u16.txt").write_bytes(text.encode("utf-16-le"))
    assert _analyse(tmp_path / "u16.txt")["sockets"]["total"] == 2


def test_nothing_usable_is_exit_3_with_the_reason() -> None:
    assert CASES["bsd_netstat_anA_grep_unix_tmux352.txt"]["exit_code"] == 3
    assert CASES["lsof_i_port_zsh_prompt_proxyee45.txt"]["exit_code"] == 3


def test_prompts_and_command_lines_are_boundaries() -> None:
    lines = ["[root@svr ~]# netstat -s | grep -i listen", "    12178939 times the listen queue of a socket overflowed",
             "user@web-1:~$ ss -lnt", "State Recv-Q Send-Q Local Address:Port Peer Address:Port",
             "LISTEN 129 128 *:80 *:*", "{master:0}", "sysctl kern.ipc.somaxconn", "kern.ipc.somaxconn: 128",
             "$ nsenter -t 1234 -n ss -tanp", "ESTAB 0 0 10.0.0.1:80 10.0.0.2:5000", ">>> cat /proc/uptime",
             "350735.47 234388.90"]
    segs = segment(lines)
    assert [(p.start, p.end, p.kind, p.command) for p in segs.parts] == [
        (2, 2, "netstat-s-linux", "netstat -s | grep -i listen"), (4, 5, "ss", "ss -lnt"),
        (8, 8, "sysctl-a", "sysctl kern.ipc.somaxconn"), (10, 10, "ss", "nsenter -t 1234 -n ss -tanp"),
        (12, 12, "uptime", "cat /proc/uptime")]
    assert segs.hostname == "svr"


# Property: inserting prompts, blank lines or another command's output never loses the valid part's findings.
VALID = ["netstat_s_grep_listen_mongodb_pr128.txt", "freebsd_Lan_transmission1388.txt",
         "ss_ant_synsent_prompt_netdata2169.txt", "powershell_localport_5987_stored53107093937.txt",
         "nstat_za_prompt_no_header_netdata3234.txt", "conntrack_L_offload_and_script_pyroute2_1198.txt",
         "conntrack_S_four_cpus_westphal_stored2060328472.txt",
         "junos_show_system_connections_listen_stored62801933737.txt"]
NOISE = [["$ uptime"], ["[root@db1 ~]# "], ["PS C:\\> "], ["", ""], ["some words the author wrote"],
         ["$ cat /proc/uptime", "94245.37 3686026.54"], ["```"], ["..."],
         ["$ nstat -az | grep -i listen", "TcpExtListenDrops               0                  0.0"]]


def _facts(report: dict[str, Any]) -> list[str]:
    """The conntrack facts (notes), without the file name and line range that name where they were read."""
    return sorted(n.split("): ", 1)[-1] for c in report["captures"] for n in c["notes"] if "conntrack" in n)


def _findings(report: dict[str, Any]) -> tuple[object, ...]:
    return (_facts(report), sorted((x["port"], x["queue"], x["backlog"]) for x in report["listeners"]),
            report["sockets"] and report["sockets"]["total"],
            {k: v for k, v in report["counters"].items() if k == "TcpExt.ListenOverflows"},
            sorted((a["attribute"], a["value"]) for a in report["alerts"] if a["attribute"] != "ListenDrops"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(VALID), st.lists(st.tuples(st.sampled_from(NOISE), st.booleans()), max_size=3),
       st.lists(st.integers(min_value=0, max_value=40), max_size=4))
def test_noise_around_a_capture_keeps_its_findings(tmp_path_factory: pytest.TempPathFactory, name: str,
                                                   noise: list[tuple[list[str], bool]], blanks: list[int]) -> None:
    valid = (PASTES / name).read_text().splitlines()
    lines = list(valid)
    for at in blanks:  # blank lines anywhere
        lines.insert(min(at, len(lines)), "")
    for block, before in noise:  # prompts, prose and other commands' output before or after the capture
        lines = [*block, *lines] if before else [*lines, *block]
    path = tmp_path_factory.mktemp("p") / "paste.txt"
    path.write_text("\n".join(lines) + "\n")
    assert _findings(_analyse(path)) == _findings(_analyse(PASTES / name))


def test_zos_unix_netstat_conn_report() -> None:
    """z/OS UNIX `netstat` (COnn report, wide form) after an `IBMUSER:/bin: >` prompt: listeners named by job."""
    report = _analyse(PASTES / "zos_unix_netstat_conn_wmlz_stored32387107182.txt")
    assert report["platform"] == "zos"
    assert report["captures"][0]["files"][0]["command"] == "./netstat"
    listeners = {x["port"]: x["owner"]["command"] for x in report["listeners"]}
    assert listeners[21] == "FTPD1" and listeners[5045] == "DBDGDIST" and len(listeners) == 13
    assert report["sockets"]["by_state"] == {"ESTABLISHED": 11}
    assert any("TCPIPSERVICE BACKLOG" in x for x in report["advice"])
    assert any("1024–65535" in x for x in report["limitations"])  # TCPCONFIG EPHEMERALPORTS default, said as such


def test_lsof_one_row_per_socket_and_names_need_n_P() -> None:
    shared = _analyse(PASTES / "lsof_i_P_grep_listen_shared_socket_stored8318958668.txt")
    assert [(x["port"], x["owner"]["command"]) for x in shared["listeners"]] == [(4000, "ruby"), (8080, "nginx")]
    assert shared["captures"][0]["files"][0]["records"] == 2  # two nginx workers, one socket (same DEVICE)
    tcp = _analyse(PASTES / "lsof_nP_iTCP_macos_stored57145463648.txt")
    assert tcp["sockets"] == {"total": 4, "by_state": {"ESTABLISHED": 4}}
    named = CASES["lsof_i_port_zsh_prompt_proxyee45.txt"]  # lsof without -P prints service names
    assert named["exit_code"] == 3 and "-n -P" in named["error"]


def test_snmpwalk_tcp_connection_state() -> None:
    report = _analyse(PASTES / "snmpwalk_tcpConnectionState_fusioninventory1698.txt")
    assert report["sockets"] == {"total": 6, "by_state": {"ESTABLISHED": 6}}


def test_conntrack_statistics_are_reported_as_facts() -> None:
    report = _analyse(PASTES / "conntrack_statistics_vyos_pr1489.txt")
    assert report["host"] == "r14"  # vyos@r14:~$
    (note,) = [x for x in report["captures"][0]["notes"] if "conntrack statistics over 4 CPUs" in x]
    assert "drop 0, early_drop 0, insert_failed 0" in note and "table full" not in note


GERMAN = PASTES / "windows_german_netstat_tn_and_s_banners_stored35027392819.txt"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "cp1252", "cp850"])
def test_german_windows_netstat_in_every_encoding(tmp_path: Path, encoding: str) -> None:
    """Banner-separated German `netstat -tn` + `netstat -s`, re-encoded as Windows writes it (console
    cp850, ANSI cp1252, PowerShell UTF-16 with and without BOM): same findings."""
    path = tmp_path / "de.txt"
    path.write_bytes(GERMAN.read_text(encoding="utf-8").encode(encoding))
    report = _analyse(path)
    files = report["captures"][0]["files"]
    assert [(f["format"], f["command"]) for f in files] == [("netstat-windows", "netstat -tn"),
                                                          ("netstat-s-windows", "netstat -s")]
    assert report["sockets"]["by_state"] == {"ESTABLISHED": 25, "FIN_WAIT2": 1, "TIME_WAIT": 30, "CLOSE_WAIT": 1}
    assert report["counters"]["Tcp.ActiveOpens"] == 40587 + 5798  # IPv4 + IPv6 sections
    assert report["counters"]["Tcp.AttemptFails"] == 1404 + 66


def test_powershell_list_form_and_table_of_the_same_connection() -> None:
    """Format-List record and table of one session: the connection is counted once, Bound is no connection."""
    report = _analyse(PASTES / "powershell_list_and_table_korean_stored36326979193.txt")
    formats = [f["format"] for f in report["captures"][0]["files"]]
    assert formats == ["powershell-nettcpconnection-list", "powershell-nettcpconnection"]
    assert report["sockets"] == {"total": 1, "by_state": {"ESTABLISHED": 1}}
    assert any("several connection listings" in x for x in report["captures"][0]["notes"])


PIECES = st.sampled_from(["$ ss -lnt", "# netstat -s", "{master:0}", "```", "...", "=== netstat -an ===",
                          "Tcp:", "TcpExt:", "#kernel", "State Recv-Q Send-Q Local Address:Port Peer Address:Port",
                          "LISTEN 0 128 0.0.0.0:80 0.0.0.0:*", "  TCP    0.0.0.0:135  0.0.0.0:0  LISTENING  1",
                          "tcp4  193/0/128  *.80", "LocalAddress   : ::", "State          : Listen",
                          "12 times the listen queue of a socket overflowed", "cpu=0 drop=1", "Total: 5",
                          "MVS TCP/IP NETSTAT CS V2R5", "AVZS     000000A2 0.0.0.0..12010  0.0.0.0..0  Listen"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(PIECES, st.text(max_size=60)), max_size=25))
def test_any_paste_gives_a_report_or_one_line_errors(tmp_path_factory: pytest.TempPathFactory,
                                                    lines: list[str]) -> None:
    """Fuzz (synthetic input): pieces of every format in any order never raise, only report or errors."""
    path = tmp_path_factory.mktemp("f") / "paste.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    analysis, errors = run_analysis([str(path)], load_config(None), None, None, None)
    assert analysis is not None or errors
    assert all("\n" not in e for e in errors)


def test_conntrack_list_entries_are_facts_not_sockets() -> None:
    """conntrack -L entries are flows of the tracking table: counted by state and source in a note, never
    taken as this host's sockets; the summary line (stderr) survives `| grep` and is said as a lower bound."""
    report = _analyse(PASTES / "conntrack_L_offload_and_script_pyroute2_1198.txt")
    assert report["host"] == "r4" and report["sockets"] is None and report["listeners"] == []
    (note,) = _facts(report)
    assert "6 entries of the connection tracking table" in note and "it listed 6" in note
    assert "TCP by state: ESTABLISHED 3, TIME_WAIT 1" in note and "100.64.0.5 (4)" in note
    assert "2 offloaded to a flowtable" in note
    grep = _facts(_analyse(PASTES / "conntrack_L_vyos_offload_grep_stored54377393368.txt"))
    assert grep and "1 entry of the connection" in grep[0] and "it listed 5 (before any `| grep`" in grep[0]
    twice = _analyse(PASTES / "conntrack_L_twice_slb_prompt_stored60846591970.txt")
    assert [f["records"] for f in twice["captures"][0]["files"]] == [0, 2]  # an empty table, then two entries
    unreplied = _facts(_analyse(PASTES / "conntrack_L_unreplied_westphal_stored2060328472.txt"))
    assert "ESTABLISHED 1, SYN_SENT 1" in unreplied[0] and "2 never answered ([UNREPLIED])" in unreplied[0]


def test_junos_prompt_is_not_json_and_show_system_connections_is_read() -> None:
    shell = CASES["junos_master0_prompt_start_shell_stored14034719674.txt"]
    assert shell["exit_code"] == 3 and "JSON" not in shell["error"]
    report = _analyse(PASTES / "junos_show_system_connections_listen_stored62801933737.txt")
    assert report["host"] == "R1"
    assert sorted({x["port"] for x in report["listeners"]}) == [21, 22, 23]


def test_many_parts_are_read_in_linear_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """100 parts of 300 lines: each part is read from the byte mark before it, not from line 1 (that was
    1,515,000 line reads here, over the 4-per-line budget of 120,000; now 42,488)."""
    from connwatch.analyze import paste
    monkeypatch.setattr(paste, "WORK_LINES", 0)
    header = "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
    path = tmp_path / "session.txt"
    path.write_text("".join(f"$ ss -tan\n{header}" + "".join(f"ESTAB 0 0 10.0.0.1:{1024 + j} 10.0.{i}.2:80\n"
                                                                for j in range(298)) for i in range(100)))
    analysis, errors = run_analysis([str(path)], load_config(None), None, None, None)
    assert errors == [] and analysis is not None
    files = analysis_dict(analysis)["captures"][0]["files"]
    assert len(files) == 100 and files[-1]["lines"] == [29702, 30000] and files[-1]["records"] == 298


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1252", "utf-16"])
def test_parts_after_the_first_marks_read_the_same_in_every_encoding(tmp_path: Path, encoding: str) -> None:
    """Byte marks are offsets into the file as written (after a BOM; UTF-16 reads from line 1): the parts
    beyond line 256 give the same rows and line ranges as the first."""
    header = "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
    text = "".join(f"[root@hôte ~]# ss -tan\n{header}" + "".join(f"ESTAB 0 0 10.0.0.1:{1024 + j} 10.0.{i}.2:80\n"
                                                              for j in range(298)) for i in range(4))
    path = tmp_path / "session.txt"
    path.write_bytes(text.encode(encoding))
    files = _analyse(path)["captures"][0]["files"]
    assert [(f["lines"], f["records"]) for f in files] == [([2 + 300 * i, 300 * (i + 1)], 298) for i in range(4)]
