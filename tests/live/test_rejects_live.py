"""Real kernel (issue 10): what the backlog really turned away, per listener, one alert per problem.

Every scenario is made to happen for real in a fresh namespace and connwatch's value is compared with
the namespace's OWN counters (nstat, `ss -ltnm` d). The check runs through progs/gated_check.py:
connwatch's own `check --format json`, held after its first sample until the test has made the
traffic happen and read the counters before and after it. Where clients would keep retrying
(SYN retries, data retransmits), an nft rule inside the namespace holds their packets back before
the "after" read, so the counters stand still until the second sample and the comparison is exact.

Half-open handshakes without outside traffic: 198.18.0.1/15 (RFC 2544 benchmark range) is put on
the namespace's lo, so the whole /15 is local to the namespace; raw SYNs come from 198.19.x.y and an
nft rule drops the SYN-ACKs toward 198.19.0.0/16 where they arrive (input hook), so the handshakes
stay SYN_RECV (6 entries on a backlog of 5, for ~7 s: the kernel then prunes old entries of a queue
this full).
Nothing leaves the namespace.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from .netns import PROGS, Netns, poll

DEFER, ACK_TIME, ABORT, SYNQ, COOKIES, STUCK, CLOSED, RETRY = 8080, 8081, 8082, 8083, 8084, 8085, 8086, 8087
STUCK_A, STUCK_B, DEFER_STUCK, COOKIE_ACK = 8088, 8089, 8090, 8091
EPHEMERAL = 8470
BENCH_NET, BENCH_ADDR, SYN_SOURCES = "198.18.0.1/15", "198.18.0.1", "198.19.0.0/16"
HELD_SOURCE = "127.0.0.3"  # the clients whose handshake ACKs the test holds back
COUNTERS = ("TcpExtListenDrops", "TcpExtListenOverflows", "TcpExtTCPReqQFullDrop", "TcpExtTCPReqQFullDoCookies",
            "TcpExtSyncookiesSent", "TcpExtSyncookiesRecv", "TcpExtTCPDeferAcceptDrop", "TcpExtEmbryonicRsts")


# --- the kernel's side -------------------------------------------------------------------------

def _kernel(ns: Netns, port: int) -> dict[str, int]:
    """The namespace's own counters (one nstat call) and the port's listener drops (`ss -ltnm` d)."""
    out = ns.run(["nstat", "-az", *COUNTERS]).stdout
    values = {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)", out, re.M)}
    return {**{c: values.get(c, 0) for c in COUNTERS}, "d": ns.ss_drops(port)}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    moved = {k: after[k] - before[k] for k in before}
    print("kernel moved:", {k: v for k, v in moved.items() if v})  # shown with -s / -rA: the measured numbers
    return moved


def _settled(ns: Netns, port: int, deadline_s: float = 5) -> dict[str, int]:
    """The counters once two reads 0.3 s apart agree (the traffic has been held back or has ended)."""
    last = [_kernel(ns, port)]

    def still() -> bool:
        now = _kernel(ns, port)
        same, last[0] = now == last[0], now
        return same

    assert poll(still, deadline_s, step_s=0.3), f"the counters kept moving: {last[0]}"
    return last[0]


def _nft(ns: Netns, ruleset: str) -> None:
    subprocess.run(ns.cmd(["nft", "-f", "-"]), input=ruleset, text=True, check=True, capture_output=True,
                   timeout=30)


def _nft_drop(ns: Netns, table: str, match: str, hook: str = "output") -> None:
    """Drop matching packets inside the namespace (a table of its own, deleted to release)."""
    _nft(ns, f"table ip {table} {{\n chain c {{\n  type filter hook {hook} priority 0;\n  {match} drop\n }}\n}}\n")


def _nft_release(ns: Netns, table: str) -> None:
    ns.run(["nft", "delete", "table", "ip", table])


def _queue(ns: Netns, port: int) -> int:
    """Accept-queue length of the port's listener (`ss -ltn` Recv-Q)."""
    rows = ns.run(["ss", "-ltnH", f"sport = :{port}"]).stdout.split()
    return int(rows[1]) if rows else -1


def _syn_recv(ns: Netns, port: int) -> int:
    return len(ns.run(["ss", "-tanH", "state", "syn-recv", f"sport = :{port}"]).stdout.splitlines())


def _half_open_setup(ns: Netns, syncookies: int, port: int, backlog: int = 5) -> None:
    ns.sysctl("net.ipv4.tcp_syncookies", str(syncookies))
    ns.run(["ip", "addr", "add", BENCH_NET, "dev", "lo"])
    # Lost on the way back (input hook): a SYN-ACK refused on output would make the kernel drop the
    # request at its first retransmit (reqsk_timer_handler), which no real flood does.
    _nft_drop(ns, "lost_synacks", f"ip daddr {SYN_SOURCES} tcp flags & (syn|ack) == syn|ack", hook="input")
    ns.python("listener.py", "--host", BENCH_ADDR, "--port", str(port), "--backlog", str(backlog))


def _syn_flood(ns: Netns, port: int, count: int) -> None:
    out = ns.run([sys.executable, str(PROGS / "syn_flood.py"), "--dst", BENCH_ADDR, "--port", str(port),
                  "--src-net", SYN_SOURCES, "--count", str(count)], timeout=60).stdout
    assert out.strip() == f"READY sent={count}", out


# --- connwatch's side --------------------------------------------------------------------------

class GatedCheck:
    """`connwatch check --interval 1 --format json --netns own`, held after its first sample until finish()."""

    def __init__(self, ns: Netns, state_dir: Any, netns: str = "own", interval: str = "1") -> None:
        # --netns own: as root the default is every namespace on the host, other tests' included.
        args = [sys.executable, str(PROGS / "gated_check.py"), "--interval", interval, "--format", "json",
                "--netns", netns, "--state-dir", str(state_dir)]
        if netns == "own":
            self.proc = ns.popen(args, stdin=subprocess.PIPE)
        else:  # from the host's namespace, entering the one `--netns` names (collect_netns)
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
            ns.procs.append(self.proc)
        assert self.proc.stderr is not None
        fd, seen, end = self.proc.stderr.fileno(), b"", time.monotonic() + 60
        while b"SAMPLED 1\n" not in seen:
            ready, _, _ = select.select([fd], [], [], max(end - time.monotonic(), 0))
            chunk = os.read(fd, 4096) if ready else b""
            assert chunk, f"the check took no first sample within 60 s: {seen!r}"
            seen += chunk

    def finish(self) -> tuple[int, dict[str, Any]]:
        out, err = self.proc.communicate("go\n", timeout=90)
        assert out, err
        return self.proc.returncode, json.loads(out)


def _alerts(report: dict[str, Any], attribute: str, port: int | None = None) -> list[dict[str, Any]]:
    return [a for a in report["alerts"] if a["attribute"] == attribute and (port is None or a["port"] == port)]


def _measured(report: dict[str, Any], attribute: str, port: int | None) -> dict[str, Any]:
    found: list[dict[str, Any]] = [m for m in report["measurements"]
                                   if m["attribute"] == attribute and m.get("port") == port]
    assert len(found) == 1, (attribute, port, report["measurements"])
    return found[0]


def _reject_split(alert: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """detail.rejects and detail.not_rejections, checked for the contract's keys and their sums."""
    detail = alert["detail"]
    rejects, not_rejections = detail["rejects"], detail["not_rejections"]
    assert set(rejects) >= {"accept_queue_overflows", "syn_queue_drops", "syn_time", "ack_time"}, rejects
    assert set(not_rejections) >= {"deferred_accept", "double_counted", "other"}, not_rejections
    assert alert["value"] == rejects["accept_queue_overflows"] + rejects["syn_queue_drops"], detail
    assert rejects["syn_time"] + rejects["ack_time"] == rejects["accept_queue_overflows"], rejects
    # Every drop the listener counted is either a rejected request or named as not one.
    assert detail["listener_drops"] == (rejects["accept_queue_overflows"] + rejects["syn_queue_drops"]
                                        + sum(not_rejections.values())), detail
    return rejects, not_rejections


# --- 1. deferred accept -------------------------------------------------------------------------

def test_deferred_accept_server_under_load_raises_nothing(ns: Netns, tmp_path: Any) -> None:
    """A healthy TCP_DEFER_ACCEPT server (nginx `listen ... deferred`) serving 300 requests.

    Measured here (kernel 6.18): d +300, TCPDeferAcceptDrop +300, ListenDrops +0, ListenOverflows +0
    (each bare handshake ACK is discarded while the server waits for data; all 300 were served).
    """
    ns.python("defer_server.py", "--port", str(DEFER), "--defer", "5")
    check = GatedCheck(ns, tmp_path)
    before = _kernel(ns, DEFER)
    done = ns.run([sys.executable, str(PROGS / "requests.py"), "--port", str(DEFER), "--count", "300"], timeout=60)
    assert done.stdout.strip() == "READY ok=300 failed=0", done.stdout
    moved = _delta(before, _settled(ns, DEFER))
    code, report = check.finish()

    assert moved["TcpExtTCPDeferAcceptDrop"] > 0 and moved["d"] == moved["TcpExtTCPDeferAcceptDrop"], moved
    assert moved["TcpExtListenDrops"] == moved["TcpExtListenOverflows"] == moved["TcpExtTCPReqQFullDrop"] == 0

    assert report["alerts"] == [] and code == 0, report["alerts"]
    rejects = _measured(report, "BacklogRejectsByPort", DEFER)
    assert rejects["value"] == 0 and rejects["breached"] is False
    assert rejects["unit"] == "requests"
    rec = report["reconciliation"]
    assert rec["host_deferred_accept_drops"] == moved["TcpExtTCPDeferAcceptDrop"]
    assert rec["listener_drops"] == moved["d"]
    assert rec["host_listen_drops"] == rec["host_listen_overflows"] == rec["host_syn_queue_drops"] == 0
    assert rec["attributed"] == 0 and rec["unattributed"] == 0
    # Measurements carry no detail in the JSON: detail.not_rejections.deferred_accept is checked on an
    # alert in test_stuck_deferred_accept_server_counts_only_the_overflows.


def test_stuck_deferred_accept_server_counts_only_the_overflows(ns: Netns, tmp_path: Any) -> None:
    """A TCP_DEFER_ACCEPT server that never accepts (backlog 5): 6 clients send a request after their
    bare ACK was discarded and fill the queue, then 10 more clients' SYNs meet the full queue.

    Measured here (kernel 6.18): TCPDeferAcceptDrop +6, ListenOverflows +10 (SYN time), ListenDrops +10,
    d +16 (= 6 deferred-accept discards + 10 overflows).
    """
    ns.python("defer_server.py", "--port", str(DEFER_STUCK), "--defer", "5", "--backlog", "5", "--stuck")
    check = GatedCheck(ns, tmp_path)
    before = _kernel(ns, DEFER_STUCK)
    held = ns.popen([sys.executable, str(PROGS / "held_clients.py"), "--port", str(DEFER_STUCK), "--source",
                     "127.0.0.1", "--count", "6"], stdin=subprocess.PIPE)
    assert held.stdout is not None and held.stdin is not None
    assert held.stdout.readline().strip() == "READY connected=6"
    assert poll(lambda: _kernel(ns, DEFER_STUCK)["TcpExtTCPDeferAcceptDrop"] - before["TcpExtTCPDeferAcceptDrop"] == 6,
                5)
    held.stdin.write("send\n")
    held.stdin.flush()
    assert held.stdout.readline().strip() == "SENT"
    assert poll(lambda: _queue(ns, DEFER_STUCK) == 6, 5), "the requests did not fill the accept queue"
    syns = f"tcp dport {DEFER_STUCK} tcp flags & (syn|ack) == syn"
    ns.python("flood.py", "--port", str(DEFER_STUCK), "--count", "10", "--hold", "120")
    assert poll(lambda: _kernel(ns, DEFER_STUCK)["TcpExtListenOverflows"] - before["TcpExtListenOverflows"] >= 10, 5)
    _nft_drop(ns, "held_syns", syns)  # their SYN retries would overflow again
    moved = _delta(before, _settled(ns, DEFER_STUCK))
    _, report = check.finish()

    deferred, overflows = moved["TcpExtTCPDeferAcceptDrop"], moved["TcpExtListenOverflows"]
    assert deferred == 6 and overflows >= 10 and moved["d"] == deferred + overflows, moved
    assert moved["TcpExtListenDrops"] == overflows and moved["TcpExtTCPReqQFullDrop"] == 0, moved

    [alert] = _alerts(report, "BacklogRejectsByPort", DEFER_STUCK)
    assert alert["value"] == overflows != moved["d"]
    rejects, not_rejections = _reject_split(alert)
    assert rejects["syn_time"] == overflows and rejects["ack_time"] == 0, rejects
    assert not_rejections["deferred_accept"] == deferred and not_rejections["double_counted"] == 0, not_rejections
    assert alert["detail"]["listener_drops"] == moved["d"]
    rec = report["reconciliation"]
    assert rec["host_deferred_accept_drops"] == deferred and rec["unattributed"] == 0, rec


# --- 2./3. ACK-time overflow ----------------------------------------------------------------------

def _ack_time_overflow(ns: Netns, tmp_path: Any, port: int, abort: int) -> tuple[dict[str, int], dict[str, Any], str]:
    """Handshakes that complete into a full accept queue, between the check's two samples.

    Four clients from 127.0.0.3 get a SYN_RECV entry while their final ACKs are held back by nft; six
    clients from 127.0.0.1 then fill the accept queue (backlog 5 holds 6) through the free SYN-queue
    slots; the check takes its first sample; the hold is released and the four send data, which
    reaches the listener as the handshake's ACK and overflows the full queue; then held again.
    """
    ns.sysctl("net.ipv4.tcp_abort_on_overflow", str(abort))
    ns.python("listener.py", "--port", str(port), "--backlog", "5")
    hold = f"ip saddr {HELD_SOURCE} tcp dport {port} tcp flags & syn != syn"
    _nft_drop(ns, "held_acks", hold)
    held = ns.popen([sys.executable, str(PROGS / "held_clients.py"), "--port", str(port), "--source", HELD_SOURCE,
                     "--count", "4"], stdin=subprocess.PIPE)
    assert held.stdout is not None and held.stdin is not None
    assert held.stdout.readline().strip() == "READY connected=4"
    assert poll(lambda: _syn_recv(ns, port) == 4, 5), ns.run(["ss", "-tanH"]).stdout
    ns.python("flood.py", "--port", str(port), "--count", "6", "--hold", "120")
    assert poll(lambda: _queue(ns, port) == 6, 5), "the six clients did not fill the accept queue"

    check = GatedCheck(ns, tmp_path)
    before = _kernel(ns, port)
    _nft_release(ns, "held_acks")
    held.stdin.write("send\n")
    held.stdin.flush()
    assert held.stdout.readline().strip() == "SENT"
    assert poll(lambda: _kernel(ns, port)["TcpExtListenOverflows"] - before["TcpExtListenOverflows"] >= 4, 5)
    _nft_drop(ns, "held_acks", hold)  # data retransmits and SYN-ACK answers overflow again: hold them
    moved = _delta(before, _settled(ns, port))
    held.stdin.write("report\n")
    held.stdin.flush()
    clients = held.stdout.readline().strip()
    code, report = check.finish()
    assert code in (1, 2), report
    print("explanation:", [a["explanation"] for a in report["alerts"]])
    return moved, report, clients


def test_ack_time_overflow_is_counted_once(ns: Netns, tmp_path: Any) -> None:
    """ACK-time overflows count once as requests, although the listener's d counts each twice.

    Measured here (kernel 6.18, abort_on_overflow=0): ListenOverflows +4, ListenDrops +4, d +8; in
    another run +8/+8/+16 (each client overflowed once more on a data retransmit before the hold was
    back). TCPReqQFullDrop +0; the clients stay ESTABLISHED, their entries SYN-RECV.
    """
    moved, report, clients = _ack_time_overflow(ns, tmp_path, ACK_TIME, abort=0)
    overflows = moved["TcpExtListenOverflows"]
    assert overflows >= 4 and moved["d"] == 2 * overflows, moved  # tcp_listendrop + sk_drops_add
    assert moved["TcpExtListenDrops"] == overflows and moved["TcpExtTCPReqQFullDrop"] == 0, moved
    assert clients == "RESULT reset=0 open=4 other=0", clients

    [alert] = _alerts(report, "BacklogRejectsByPort", ACK_TIME)
    assert alert["value"] == overflows != moved["d"], (alert["value"], moved)
    assert alert["unit"] == "requests"
    rejects, not_rejections = _reject_split(alert)
    assert rejects["ack_time"] > 0 and rejects["syn_queue_drops"] == 0
    assert not_rejections["double_counted"] == rejects["ack_time"]  # each ACK-time overflow once too many
    assert alert["detail"]["listener_drops"] == moved["d"]
    assert alert["detail"]["rate_per_s"] > 0
    rec = report["reconciliation"]
    assert rec["host_listen_overflows"] == rec["attributed"] == overflows and rec["unattributed"] == 0, rec
    assert rec["listener_drops"] == moved["d"]


def test_abort_on_overflow_is_said_as_resets(ns: Netns, tmp_path: Any) -> None:
    """tcp_abort_on_overflow=1: an ACK-time overflow answers the client with a RST.

    Measured here (kernel 6.18): ListenOverflows +4, ListenDrops +4, d +8, EmbryonicRsts +4 (also
    OutRsts +4, EstabResets +4); all 4 clients' recv() gave ECONNRESET.
    """
    moved, report, clients = _ack_time_overflow(ns, tmp_path, ABORT, abort=1)
    overflows = moved["TcpExtListenOverflows"]
    assert overflows == 4 and moved["TcpExtEmbryonicRsts"] == 4 and moved["d"] == 8, moved
    assert clients == "RESULT reset=4 open=0 other=0", clients

    [alert] = _alerts(report, "BacklogRejectsByPort", ABORT)
    assert alert["value"] == overflows
    assert "reset" in alert["explanation"] and "ECONNRESET" in alert["explanation"], alert["explanation"]
    assert "Clients are not refused" not in alert["explanation"]
    _reject_split(alert)


def test_cookie_connections_overflowing_at_ack_time_are_not_syn_time(ns: Netns, tmp_path: Any) -> None:
    """The kernel-facts run: backlog 5, 20 clients whose final ACKs are held back: 6 get a SYN_RECV
    entry, 14 a syncookie. Released between the samples, the 6 fill the accept queue and the 14 cookie
    ACKs (with data) overflow it on the cookie path: the clients are ESTABLISHED and their data is
    dropped silently. That path counts each overflow ONCE in d, like a SYN-time overflow.

    Measured here (kernel 6.18): ListenOverflows +14, ListenDrops +14, d +14, SyncookiesRecv +14;
    afterwards 6 queued, no SYN_RECV left.
    """
    ns.python("listener.py", "--port", str(COOKIE_ACK), "--backlog", "5")
    hold = f"ip saddr {HELD_SOURCE} tcp dport {COOKIE_ACK} tcp flags & syn != syn"
    _nft_drop(ns, "held_acks", hold)
    held = ns.popen([sys.executable, str(PROGS / "held_clients.py"), "--port", str(COOKIE_ACK), "--source",
                     HELD_SOURCE, "--count", "20"], stdin=subprocess.PIPE)
    assert held.stdout is not None and held.stdin is not None
    assert held.stdout.readline().strip() == "READY connected=20"
    assert _syn_recv(ns, COOKIE_ACK) == 6
    check = GatedCheck(ns, tmp_path)
    before = _kernel(ns, COOKIE_ACK)
    _nft_release(ns, "held_acks")
    held.stdin.write("send\n")
    held.stdin.flush()
    assert held.stdout.readline().strip() == "SENT"
    assert poll(lambda: _kernel(ns, COOKIE_ACK)["TcpExtListenOverflows"] - before["TcpExtListenOverflows"] >= 14, 5)
    _nft_drop(ns, "held_acks", hold)  # their data retransmits would overflow again
    moved = _delta(before, _settled(ns, COOKIE_ACK))
    _, report = check.finish()

    overflows = moved["TcpExtListenOverflows"]
    assert overflows >= 14 and moved["d"] == moved["TcpExtSyncookiesRecv"] == overflows, moved
    assert _queue(ns, COOKIE_ACK) == 6 and _syn_recv(ns, COOKIE_ACK) == 0

    [alert] = _alerts(report, "BacklogRejectsByPort", COOKIE_ACK)
    assert alert["value"] == overflows
    rejects = alert["detail"]["rejects"]
    assert rejects["syn_time"] in (0, None) and rejects["ack_time"] in (overflows, None), rejects
    assert "Clients are not refused, they wait" not in alert["explanation"]


# --- 4./5. half-open handshakes -------------------------------------------------------------------

def test_full_syn_queue_without_syncookies_is_named(ns: Netns, tmp_path: Any) -> None:
    """tcp_syncookies=0, 200 SYNs whose SYN-ACKs are lost, on a listener with backlog 5.

    Measured here (kernel 6.18): 6 entries stay SYN-RECV (for ~7 s); TCPReqQFullDrop +194, ListenDrops +194,
    d +194, ListenOverflows +0 (50 SYNs gave +44: always all but 6).
    """
    _half_open_setup(ns, 0, SYNQ)
    check = GatedCheck(ns, tmp_path)
    before = _kernel(ns, SYNQ)
    _syn_flood(ns, SYNQ, 200)
    moved = _delta(before, _settled(ns, SYNQ))
    half_open = _syn_recv(ns, SYNQ)
    code, report = check.finish()

    full = moved["TcpExtTCPReqQFullDrop"]
    assert full > 0 and moved["TcpExtListenDrops"] == moved["d"] == full, moved
    assert moved["TcpExtListenOverflows"] == 0 and moved["TcpExtTCPReqQFullDoCookies"] == 0, moved
    assert half_open + full == 200, (half_open, moved)

    [alert] = _alerts(report, "BacklogRejectsByPort", SYNQ)
    assert alert["value"] == full and alert["unit"] == "requests"
    rejects, _ = _reject_split(alert)
    assert rejects["syn_queue_drops"] == full and rejects["accept_queue_overflows"] == 0
    assert "SYN queue" in alert["explanation"] and "the burst has passed" not in alert["explanation"]
    assert not _alerts(report, "SynQueueDrops") and not _alerts(report, "ListenOverflows")  # facts, not alerts
    rec = report["reconciliation"]
    assert rec["host_syn_queue_drops"] == rec["attributed"] == full and rec["unattributed"] == 0, rec
    assert code in (1, 2)


def test_syn_flood_answered_with_syncookies_is_its_own_finding(ns: Netns, tmp_path: Any) -> None:
    """tcp_syncookies=1, the same 200 lost-SYN-ACK handshakes: answered with cookies, nothing dropped.

    Measured here (kernel 6.18): 6 entries SYN-RECV; TCPReqQFullDoCookies +194, SyncookiesSent +194,
    ListenDrops +0, ListenOverflows +0, TCPReqQFullDrop +0, d +0.
    """
    _half_open_setup(ns, 1, COOKIES)
    check = GatedCheck(ns, tmp_path)
    before = _kernel(ns, COOKIES)
    _syn_flood(ns, COOKIES, 200)
    moved = _delta(before, _settled(ns, COOKIES))
    _, report = check.finish()

    cookies = moved["TcpExtTCPReqQFullDoCookies"]
    assert cookies > 0 and moved["TcpExtSyncookiesSent"] == cookies, moved
    assert moved["TcpExtListenDrops"] == moved["TcpExtTCPReqQFullDrop"] == moved["d"] == 0, moved

    [alert] = _alerts(report, "SynCookiesSent")
    assert alert["value"] == cookies
    assert alert["port"] == COOKIES and alert["resource"] == f"TCP({COOKIES})"  # its SYN queue is the full one
    assert alert["severity"] == 4
    assert "SYN cookies" in alert["explanation"]
    assert not _alerts(report, "BacklogRejectsByPort")
    assert _measured(report, "BacklogRejectsByPort", COOKIES)["value"] == 0


# --- 6. one stuck listener ----------------------------------------------------------------------

class _Round:
    """One retry round let into listeners that never accept, between the two samples of a check."""

    def __init__(self, check: GatedCheck, moved: dict[str, int], per_port: dict[int, int]) -> None:
        self.check, self.moved, self.per_port = check, moved, per_port


def _stuck_round(ns: Netns, tmp_path: Any, ports: tuple[int, ...], clients: int, expect: int,
                 between: Callable[[dict[int, subprocess.Popen[str]]], None] | None = None) -> _Round:
    """Listeners with backlog 5 that never accept, `clients` waiting on each (progs/flood.py retrying
    their SYNs). Each queue is full (6 of 5) before the check's first sample; the SYN retries are held
    back by nft except for one retry round between the samples (>= expect overflows, polled), then held
    again; `between(listeners)` runs after that (e.g. to kill one). The counters are read once settled."""
    listeners: dict[int, subprocess.Popen[str]] = {}
    for port in ports:
        listeners[port] = ns.python("listener.py", "--port", str(port), "--backlog", "5")
        ns.python("flood.py", "--port", str(port), "--count", str(clients), "--hold", "120")
        assert poll(lambda: _queue(ns, port) == 6 and ns.ss_drops(port) > 0, 10)  # noqa: B023 - called now
    syns = f"tcp dport {{ {', '.join(map(str, ports))} }} tcp flags & (syn|ack) == syn"
    _nft_drop(ns, "held_syns", syns)
    check = GatedCheck(ns, tmp_path)
    before = _settled(ns, ports[0])
    d_before = {p: ns.ss_drops(p) for p in ports}
    _nft_release(ns, "held_syns")
    def overflowed() -> int:
        return _kernel(ns, ports[0])["TcpExtListenOverflows"] - before["TcpExtListenOverflows"]

    assert poll(lambda: overflowed() >= expect, 10), overflowed()
    _nft_drop(ns, "held_syns", syns)
    if between is not None:
        between(listeners)
    moved = _delta(before, _settled(ns, ports[0]))
    return _Round(check, moved, {p: ns.ss_drops(p) - d_before[p] for p in ports})


def test_one_stuck_listener_one_alert(ns: Netns, tmp_path: Any) -> None:
    """A listener with backlog 5 that never accepts, 60 clients retrying their SYNs (one round of 54
    between the samples). Measured here (kernel 6.18): ListenOverflows == ListenDrops == d (SYN-time
    overflows count once), TCPReqQFullDrop +0.
    """
    round_ = _stuck_round(ns, tmp_path, (STUCK,), 60, 54)
    moved = round_.moved
    code, report = round_.check.finish()

    overflows = moved["TcpExtListenOverflows"]
    assert overflows >= 54 and moved["TcpExtListenDrops"] == moved["d"] == overflows, moved
    assert moved["TcpExtTCPReqQFullDrop"] == 0

    assert len(report["alerts"]) == 1, [(a["attribute"], a["resource"]) for a in report["alerts"]]
    [alert] = _alerts(report, "BacklogRejectsByPort", STUCK)
    assert alert["value"] == overflows and alert["unit"] == "requests"
    rejects, not_rejections = _reject_split(alert)
    assert rejects["syn_time"] == overflows and rejects["ack_time"] == 0 == not_rejections["double_counted"]
    [listener] = alert["detail"]["listeners"]
    assert listener["queue"] == 6 and listener["backlog"] == 5 and listener["fill"] == 120.0
    assert alert["detail"]["reconciliation"]["host_listen_overflows"] == overflows
    assert alert["detail"]["rate_per_s"] == pytest.approx(overflows / report["interval_s"], rel=0.01)
    # The queue fill and the host counter stay measured (contract), but are facts of the one alert.
    assert _measured(report, "AcceptQueueFill", STUCK)["value"] == 120.0
    assert _measured(report, "ListenOverflows", None)["value"] == overflows
    assert code == 2


def test_two_separately_stuck_listeners_are_two_problems(ns: Netns, tmp_path: Any) -> None:
    """Two applications (two processes), each with backlog 5, never accepting, 30 waiting clients each.

    Measured here (kernel 6.18): ListenOverflows == ListenDrops == the sum of both listeners' d, split
    by the kernel per listener (+24/+24 in one retry round each).
    """
    round_ = _stuck_round(ns, tmp_path, (STUCK_A, STUCK_B), 30, 48)
    moved, per_port = round_.moved, round_.per_port
    _, report = round_.check.finish()
    print("per listener d:", per_port)

    assert moved["TcpExtListenOverflows"] == moved["TcpExtListenDrops"] == sum(per_port.values()), (moved, per_port)
    assert all(n > 0 for n in per_port.values())

    assert sorted(a["port"] for a in report["alerts"]) == [STUCK_A, STUCK_B], report["alerts"]
    for port in (STUCK_A, STUCK_B):
        [alert] = _alerts(report, "BacklogRejectsByPort", port)
        assert alert["value"] == per_port[port]  # SYN-time overflows: the listener counts each once
        assert "host-wide cause is likelier" not in alert["explanation"], alert["explanation"]


def test_drops_of_a_listener_that_closed_stay_a_host_alert(ns: Netns, tmp_path: Any) -> None:
    """The flooded listener drops SYNs after the first sample, then its process is killed (by PID).

    No live listener explains those drops: the reconciliation says so (attributed 0, not null, all
    unattributed) and the host-wide ListenOverflows alert carries them. Measured here (kernel 6.18):
    ListenOverflows == ListenDrops +54 (one retry round of 54 waiting clients), TCPReqQFullDrop +0.
    """
    def kill(listeners: dict[int, subprocess.Popen[str]]) -> None:
        os.kill(listeners[CLOSED].pid, signal.SIGKILL)
        listeners[CLOSED].wait(timeout=10)
        assert poll(lambda: _queue(ns, CLOSED) == -1, 5), "the listener did not close"

    round_ = _stuck_round(ns, tmp_path, (CLOSED,), 60, 54, between=kill)
    moved = round_.moved
    _, report = round_.check.finish()

    overflows = moved["TcpExtListenOverflows"]
    assert overflows >= 54 and moved["TcpExtListenDrops"] == overflows and moved["TcpExtTCPReqQFullDrop"] == 0

    rec = report["reconciliation"]
    assert rec["host_listen_overflows"] == rec["host_listen_drops"] == overflows, rec
    assert rec["attributed"] == 0 and rec["unattributed"] == overflows, rec
    assert not _alerts(report, "BacklogRejectsByPort")
    [host] = _alerts(report, "ListenOverflows")
    assert host["value"] == overflows and host["resource"] == "TCP(host)"


_BLOCKING_CONNECT = f"""
import errno, socket, time
start = time.monotonic()
try:
    socket.create_connection(("127.0.0.1", {RETRY}), timeout=60)
    print("CONNECTED", 0)
except OSError as exc:
    print(errno.errorcode.get(exc.errno or 0, "timeout"), round(time.monotonic() - start, 2))
"""


def test_client_retry_schedule_follows_the_kernel(ns: Netns, tmp_path: Any) -> None:
    """tcp_syn_retries=2 (tcp_syn_linear_timeouts 4): one blocking connect() to a full queue, timed.

    Measured here (kernel 6.18): its SYN met the full queue at 0, 1, 2, 3, 4, 5 s (ListenOverflows +6)
    and connect() failed with ETIMEDOUT after 7.1 s; with tcp_syn_retries=3: +8 SYNs, 19.6 s; with the
    default 6: 11 SYNs, 135 s (kernel-facts). tcp_syn_retries bounds the TIME, as if the timeout doubled
    from 1 s ((2^(n+1) - 1) s: 7, 15, 127 s), and the linear timeouts fit more re-sends into it.
    """
    ns.sysctl("net.ipv4.tcp_syn_retries", "2")
    ns.python("listener.py", "--port", str(RETRY), "--backlog", "0")
    ns.python("flood.py", "--port", str(RETRY), "--count", "1", "--hold", "120")
    assert poll(lambda: _queue(ns, RETRY) == 1, 5), "backlog 0 did not hold its one connection"
    check = GatedCheck(ns, tmp_path)
    before = _kernel(ns, RETRY)
    client = ns.popen([sys.executable, "-c", _BLOCKING_CONNECT])
    start, seen, last = time.monotonic(), [], before["TcpExtListenOverflows"]
    while client.poll() is None and time.monotonic() - start < 60:  # bounded: the connect gives up first
        now = ns.nstat("TcpExtListenOverflows")
        seen += [round(time.monotonic() - start, 2)] * (now - last)
        last = now
    out = client.communicate(timeout=10)[0].split()
    moved = _delta(before, _settled(ns, RETRY))
    _, report = check.finish()

    assert out[0] == "ETIMEDOUT" and len(seen) == moved["TcpExtListenOverflows"] >= 3, (out, seen, moved)
    gave_up, resent = float(out[1]), [round(t - seen[0], 1) for t in seen[1:]]
    print("SYNs met the full queue at", seen, "gave up after", gave_up)

    [alert] = _alerts(report, "BacklogRejectsByPort", RETRY)
    assert alert["value"] == moved["TcpExtListenOverflows"]
    said = alert["detail"]["syn_retry_times"]
    assert len(said) == len(resent) and all(abs(a - b) <= 0.5 for a, b in zip(said, resent, strict=True)), (
        said, resent)
    m = re.search(r"ETIMEDOUT after about ([\d.]+) s", alert["explanation"])
    assert m and abs(float(m.group(1)) - gave_up) <= 0.25 * gave_up, (m and m.group(0), gave_up)


# --- 7. ephemeral exhaustion --------------------------------------------------------------------

def _connwatch_check(ns: Netns, tmp_path: Any) -> dict[str, Any]:
    done = ns.connwatch("check", "--interval", "1", "--format", "json", "--state-dir", str(tmp_path))
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _for(report: dict[str, Any], key: str, destination: str) -> list[dict[str, Any]]:
    return [a for a in report[key] if a.get("destination") == destination]


def _measured_dest(report: dict[str, Any], attribute: str, destination: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [m for m in report["measurements"]
                                   if m["attribute"] == attribute and m.get("destination") == destination]
    assert len(found) == 1, (attribute, destination, report["measurements"])
    return found[0]


def _churn(ns: Netns, *args: str) -> dict[str, str]:
    out = ns.run([sys.executable, str(PROGS / "churn.py"), "--port", str(EPHEMERAL), *args], timeout=60).stdout
    return dict(kv.split("=") for kv in out.split()[1:])


def test_ephemeral_exhaustion_keeps_its_verdict_while_connect_fails(ns: Netns, tmp_path: Any) -> None:
    """100 ports (40000-40099), tcp_tw_reuse=0: 10 held + connect/close at 15/s until EADDRNOTAVAIL.

    A first check sees the churn (ActiveOpens ~15/s, Exhaustion forecast far above 100 %). Then every
    port is taken (10 ESTABLISHED + 90 TIME_WAIT for 60 s), connect() fails with EADDRNOTAVAIL and
    ActiveOpens stops rising: the kernel counts no failed connect. Two more checks must keep the
    verdict (active, neither clearing nor cleared) and say the demand cannot be measured.
    """
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    ns.python("tw_server.py", "--port", str(EPHEMERAL))
    dest = f"127.0.0.1:{EPHEMERAL}"
    churn = ns.python("churn.py", "--port", str(EPHEMERAL), "--hold", "10", "--cycles", "500", "--rate", "15",
                      "--duration", "30", "--background", "--lifetime", "60")
    ramp = _connwatch_check(ns, tmp_path)
    assert ramp["alerts"] and _for(ramp, "alerts", dest), "the first check saw no churn toward the destination"
    assert churn.stdout is not None
    done = dict(kv.split("=") for kv in churn.stdout.readline().split()[1:])  # bounded: --duration 30
    assert done["error"] == "EADDRNOTAVAIL", done

    for _ in range(2):
        report = _connwatch_check(ns, tmp_path)
        assert _churn(ns, "--cycles", "1")["error"] == "EADDRNOTAVAIL"  # still failing after the check
        taken = ns.run(["ss", "-tanH", "dst", dest]).stdout.split()
        assert taken.count("ESTAB") == 10 and taken.count("TIME-WAIT") == 90, taken  # the kernel's own table
        assert _measured_dest(report, "EphemeralPortUsage", dest)["value"] == 100.0
        active = _for(report, "alerts", dest)
        assert active and all(a["state"] == "active" for a in active), active
        assert not _for(report, "clearing", dest) and not _for(report, "cleared", dest), (
            [(a["attribute"], a["value"]) for a in _for(report, "clearing", dest) + _for(report, "cleared", dest)])
        forecasts = [a["detail"]["forecast"] for a in active if a["detail"].get("forecast")]
        assert forecasts, active
        for fc in forecasts:
            words = json.dumps(fc) + " ".join(a["explanation"] for a in active)
            assert re.search(r"cannot be measured", words, re.I), fc
            assert "settles below 100" not in words, words  # the "0/s ... settles below 100 %"
            assert fc.get("steady_percent") is None or fc["steady_percent"] >= 100, fc  # never "settles below"
    # One problem, one alert (issue 10 part 2): usage, reuse and forecast in one alert per destination.
    assert len(_for(report, "alerts", dest)) == 1, [a["attribute"] for a in _for(report, "alerts", dest)]


@pytest.fixture(autouse=True)
def _timed(request: pytest.FixtureRequest) -> Any:
    """Print each scenario's duration (the file is kept under ~2 minutes)."""
    start = time.monotonic()
    yield
    print(f"\n{request.node.name}: {time.monotonic() - start:.1f} s")
