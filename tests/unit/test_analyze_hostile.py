"""`connwatch analyze` on hostile input (issue 14 items 8 and 9): every input ends in a report or one
line `FILE[:LINE]: reason` per bad file (exit 3), never an internal error, a hang or unbounded memory."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from connwatch.analyze import archive, paste
from connwatch.analyze import run as analyze_run
from connwatch.analyze.output import render_text
from connwatch.analyze.report import Analysis
from connwatch.analyze.run import run_analysis
from connwatch.rules.config import load_config

CAP = Path(__file__).resolve().parents[1] / "fixtures" / "captures"
HEADER = "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
BIG = "9" * 5000  # beyond Python's int-from-str limit (4,300 digits)


def analyse(*paths: Path | str, special: bool = False) -> tuple[Analysis | None, list[str]]:
    return run_analysis([str(p) for p in paths], load_config(None), None, None, None, special)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connwatch", "analyze", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_errors(errors: list[str], path: Path, expect: str) -> None:
    assert errors, "expected an error line"
    assert all("\n" not in e for e in errors), errors
    assert errors[0].startswith(str(path)) and expect in errors[0], errors


HUGE_NUMBER_CASES = {
    "ss.txt": (HEADER + f"LISTEN 0 {BIG} 0.0.0.0:80 0.0.0.0:*\n", ":2: Recv-Q/Send-Q: not a number"),
    "nstat.txt": (f"#kernel\nTcpExtListenOverflows {BIG} 0.0\n", ":2: not a number"),
    "netstat.txt": ("Active Internet connections (servers and established)\n"
                    "Proto Recv-Q Send-Q Local Address Foreign Address State PID/Program name\n"
                    f"tcp 0 0 0.0.0.0:22 0.0.0.0:* LISTEN {BIG}/sshd\n", ":3: not a number"),
    "conntrack.txt": (f"cpu=0 found=0 invalid=0 insert=0 insert_failed=0 drop={BIG} early_drop=0 error=0\n",
                      ":1: drop: not a number"),
    "conntrack-l.txt": ("# conntrack -L\ntcp      6 52 CLOSE_WAIT src=172.20.36.14 dst=172.31.2.45 sport=51944 "
                        f"dport={BIG} src=172.31.2.45 dst=172.20.36.14 sport=5000 dport=51944 [ASSURED] use=1\n",
                        ":2: not a conntrack -L line (not a number"),
    "lsof.txt": ("COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\n"
                 f"sshd {BIG} root 3u IPv4 1 0t0 TCP *:22 (LISTEN)\n", ":2: bad address (not a number"),
    "uptime.txt": (f"$ uptime\n 10:00:00 up {BIG} days,  3:04,  1 user,  load average: 0.00\n",
                   ":2: uptime: not a number"),  # the line the number is on (was always said as 1)
    "sysctl.txt": (f"net.core.somaxconn = {BIG}\n", ":1: sysctl-a: value '999"),
    "sysctl-tcp-mem.txt": ("net.core.somaxconn = 4096\nnet.ipv4.tcp_mem = 1 2 " + "9" * 400 + "\n",
                           "(net.ipv4.tcp_mem):1: not integers: '1 2 999"),
    "netstat-bsd-listen.txt": ("Current listen queue sizes (qlen/incqlen/maxqlen)\nProto Listen Local Address\n"
                               f"tcp4  0/0/{BIG} *.80\n", ":3: not a number"),
    "proc-netstat.txt": (f"TcpExt: ListenOverflows ListenDrops\nTcpExt: {BIG} 0\n", "more than 20 digits"),
    "zos.txt": ("MVS TCP/IP NETSTAT CS V2R4       TCPIP Name: TCPIP           12:00:00\n"
                "User Id  Conn     Local Socket           Foreign Socket         State\n"
                f"FTPD1    0000004A 0.0.0.0..{BIG}             0.0.0.0..0             Listen\n", "not a number"),
}


@pytest.mark.parametrize("name", sorted(HUGE_NUMBER_CASES))
def test_a_5000_digit_number_in_any_parser_is_one_error_line(tmp_path: Path, name: str) -> None:
    text, expect = HUGE_NUMBER_CASES[name]
    path = tmp_path / name
    path.write_text(text)
    analysis, errors = analyse(path)
    if analysis is not None:  # a pasted file: the rejected line is cut out and reported (analyze/paste.py)
        parts = analysis.captures[0].skipped_parts
        errors = errors + [f"{p['path']}:{p['lines'][0]}: {p['reason']}" for p in parts]  # type: ignore[index]
    one_line_errors(errors, path, expect)


def test_a_counter_of_400_digits_is_refused_not_overflowing_a_float_later(tmp_path: Path) -> None:
    path = tmp_path / "nstat.txt"
    path.write_text("#kernel\nTcpExtListenOverflows " + "1" * 400 + " 0.0\n")
    analysis, errors = analyse(path)
    one_line_errors(errors, path, ":2: not a number the kernel prints")
    path.write_text("#kernel\nTcpExtListenOverflows 18446744073709551615 0.0\n")  # 2**64-1: still read
    analysis, errors = analyse(path)
    assert errors == [] and analysis is not None
    assert analysis.result.current.counters["TcpExt.ListenOverflows"] == 2**64 - 1


def _snapshot(**changes: object) -> dict[str, object]:
    return {"format": "connwatch-snapshot", "version": 1, "taken_at": 1.7e9, "monotonic": 10.0,
            "host": {"hostname": "h"}, "counters": {"TcpExt.ListenOverflows": 5}, "sockstat": {}, "sysctls": {},
            "listeners": [], "sockets": None, **changes}


@pytest.mark.parametrize(("text", "expect"), [
    (json.dumps(_snapshot()).replace('"TcpExt.ListenOverflows": 5', '"TcpExt.ListenOverflows": 1e999'),
     "counters = {'TcpExt.ListenOverflows': inf} is not Mapping[str, int]"),
    (json.dumps(_snapshot()).replace("1700000000.0", "1e999"), "taken_at: inf is not a time in seconds since 1970"),
    (json.dumps(_snapshot()).replace("1700000000.0", "1700000001431.1"),  # year 55840: once a crash
     "taken_at: 1700000001431.1 is not a time in seconds since 1970"),
    (json.dumps(_snapshot()).replace("10.0", "NaN"), "invalid JSON (NaN is not a number a snapshot holds)"),
    (json.dumps(_snapshot()).replace('"TcpExt.ListenOverflows": 5', f'"TcpExt.ListenOverflows": {BIG}'),
     "invalid JSON (Exceeds the limit"),
    (json.dumps(_snapshot(listeners=[{"family": 4, "address": "0.0.0.0", "port": "80", "queue": 0, "backlog": 1,
                                       "drops": 0, "inode": 1, "uid": 0}])), "port = '80' is not int"),
    ('{"format": "connwatch-snapshot", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid JSON (maximum recursion"),
])
def test_a_snapshot_with_impossible_values_is_one_error_line(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "snap.json"
    path.write_text(text)
    analysis, errors = analyse(path)
    assert analysis is None
    one_line_errors(errors, path, expect)


def test_a_zone_scoped_ipv6_address_next_to_an_ipv4_peer_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "ss.txt"
    path.write_text(HEADER + "LISTEN 0 128 0.0.0.0:80 0.0.0.0:*\nESTAB 0 0 [fe80::1%eth0]:80 10.0.0.2:5000\n"
                    "ESTAB 0 0 10.0.0.1:80 [fe80::1%eth0]:5000\n")
    analysis, errors = analyse(path)
    assert errors == [] and analysis is not None
    sockets = analysis.result.current.sockets
    assert sockets is not None and sockets.total == 2 and sockets.by_state == {"ESTABLISHED": 2}


def test_utf16_with_a_lone_surrogate_is_read_with_a_replacement(tmp_path: Path) -> None:
    path = tmp_path / "netstat.txt"
    rows = ("  Proto  Local Address          Foreign Address        State\n"
            "  TCP    0.0.0.0:80             0.0.0.0:0              LISTENING\n")
    path.write_bytes(b"\xff\xfe" + rows.encode("utf-16-le") + b"\x00\xd8"
                     + "  TCP    10.0.0.1:80            10.0.0.2:5000          ESTABLISHED\n".encode("utf-16-le"))
    analysis, errors = analyse(path)
    assert analysis is not None and [x.port for x in analysis.result.current.listeners] == [80]
    assert all("\n" not in e for e in errors)


def _tar(path: Path, members: list[tuple[str, bytes | None]], mode: str = "w") -> None:
    with tarfile.open(path, mode) as tar:  # type: ignore[call-overload]  # mode is a str here
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "elsewhere"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


SS_LISTEN = (HEADER + "LISTEN 129 128 0.0.0.0:80 0.0.0.0:*\n").encode()


def test_a_tarball_with_a_file_and_a_symlink_of_the_same_name_uses_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sos.tar"
    _tar(path, [("sos_commands/networking/ss_-ltn", SS_LISTEN), ("sos_commands/networking/ss_-ltn", None)])
    analysis, errors = analyse(path)
    assert errors == [] and analysis is not None
    assert [(x.port, x.queue) for x in analysis.result.current.listeners] == [(80, 129)]


def test_a_corrupt_gzip_member_is_one_line_and_earlier_members_are_used(tmp_path: Path) -> None:
    good = tmp_path / "good.tgz"
    _tar(good, [("sos_commands/networking/ss_-ltn", SS_LISTEN),
                ("var/log/big.log", os.urandom(200_000))], "w:gz")  # incompressible: the cut lands in it
    raw = good.read_bytes()
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(raw[:len(raw) * 3 // 4])
    analysis, errors = analyse(cut)
    one_line_errors(errors, cut, "tarball corrupt after 2 member(s) (unexpected end of data): the rest of it was "
                    "not read")
    assert analysis is not None and [x.port for x in analysis.result.current.listeners] == [80]
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(raw[:10] + bytes(b ^ 0x5A for b in raw[10:200]) + raw[200:])
    analysis, errors = analyse(garbage)
    one_line_errors(errors, garbage, "unreadable tarball")


@pytest.mark.parametrize("cut", [3, 4, 11])
def test_a_gzip_header_cut_short_is_one_line_not_a_traceback(tmp_path: Path, cut: int) -> None:
    """tarfile's streamed gzip reader raised TypeError (ord() of b"") on a header cut after 3 bytes
    (fuzz case d778e12125aea54b); 4 and 11 bytes reach other reads of the same header."""
    good = tmp_path / "good.tgz"
    _tar(good, [("sos_commands/networking/ss_-ltn", SS_LISTEN)], "w:gz")
    path = tmp_path / "cut.tar"
    path.write_bytes(good.read_bytes()[:cut])
    analysis, errors = analyse(path)
    assert analysis is None and len(errors) == 1, errors
    one_line_errors(errors, path, "unreadable tarball")


def test_a_tarball_is_read_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 members (a sosreport): tarfile.open once (it was once per member and pass: 569 s here)."""
    path = tmp_path / "sos.tar.gz"
    members = [(f"sos/var/log/f{i}.log", f"Dec  1 03:00:{i % 60:02d} host svc: event {i}\n".encode() * 20)
               for i in range(2000)]
    _tar(path, [*members, ("sos/sos_commands/networking/ss_-ltn", SS_LISTEN)], "w:gz")
    opened: list[str] = []
    real_open = tarfile.open

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(str(args[0]))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(tarfile, "open", counting)
    start = time.monotonic()
    analysis, errors = analyse(path)
    assert errors == [] and analysis is not None
    assert opened == [str(path)]
    assert [x.port for x in analysis.result.current.listeners] == [80]
    assert analysis.captures[0].skipped == 2000  # the logs: only their first bytes were read
    assert time.monotonic() - start < 60


def test_a_file_deleted_during_the_run_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "ss.txt"
    path.write_bytes(SS_LISTEN)
    f = archive.checked_file(str(path), path)
    path.unlink()
    with pytest.raises(archive.InputChanged, match=r"no such file or directory .*changed during the run"):
        f.opener()


def _replace_before_finish(monkeypatch: pytest.MonkeyPatch, path: Path, text: str) -> None:
    real_finish = analyze_run.finish  # type: ignore[attr-defined]

    def replace_then_finish(*args: object) -> object:  # after gather read the file, before finish
        other = path.with_name("new.txt")
        other.write_text(text)
        other.replace(path)
        return real_finish(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(analyze_run, "finish", replace_then_finish)


def test_a_listing_is_read_once_so_replacing_it_afterwards_changes_nothing(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ss.txt"
    rows = HEADER + "LISTEN 0 128 0.0.0.0:80 0.0.0.0:*\n" + "ESTAB 0 0 10.0.0.1:80 10.0.0.2:5000\n" * 3
    path.write_text(rows)
    _replace_before_finish(monkeypatch, path, rows + "ESTAB 0 0 10.0.0.1:80 10.0.0.3:5000\n")
    analysis, errors = analyse(path)
    assert errors == [] and analysis is not None
    sockets = analysis.result.current.sockets
    assert sockets is not None and sockets.total == 3  # the file as read, in its one pass
    assert [(s.source, s.port, s.states) for s in sockets.sources] == [("10.0.0.2", 80, {"ESTABLISHED": 3})]


def test_a_file_replaced_before_its_second_read_is_said_with_exit_3(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The listener printed after its connections: the one pass took them as outbound, so finish reads
    # the file again with the listening port (analyze/rowpass.py), and finds it replaced.
    path = tmp_path / "ss.txt"
    rows = HEADER + "ESTAB 0 0 10.0.0.1:80 10.0.0.2:5000\n" * 3 + "LISTEN 0 128 0.0.0.0:80 0.0.0.0:*\n"
    path.write_text(rows)
    _replace_before_finish(monkeypatch, path, rows + "ESTAB 0 0 10.0.0.1:80 10.0.0.3:5000\n")
    analysis, errors = analyse(path)
    one_line_errors(errors, path, "changed while analyze was reading it")
    assert analysis is not None and analysis.exit_code == 3


def test_dev_zero_and_a_fifo_are_refused_at_once_naming_the_option(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, what in (("/dev/zero", "a character device"), (str(fifo), "a FIFO (named pipe)")):
        done = cli(path, timeout=30)  # used to hang in tarfile.is_tarfile / open()
        assert done.returncode == 3 and done.stdout == ""
        assert done.stderr.strip() == (f"{path}: {what}, not a regular file: it may never end and cannot be read "
                                       "twice; pass --read-special to read it once (at most 256 MiB)")


def test_read_special_reads_a_fifo_once_and_stops_binary_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as fh:
            fh.write(SS_LISTEN)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    analysis, errors = analyse(fifo, special=True)
    writer.join(timeout=10)
    assert errors == [] and analysis is not None
    assert [(x.port, x.queue) for x in analysis.result.current.listeners] == [(80, 129)]
    analysis, errors = analyse("/dev/zero", special=True)
    assert analysis is None and errors == ["/dev/zero: binary file (NUL bytes), not text output"]


def test_a_long_line_is_an_error_in_plain_files_and_tarball_members(tmp_path: Path) -> None:
    long_rows = HEADER.encode() + b"ESTAB 0 0 10.0.0.1:80 " + b"x" * (3 << 20) + b"\n"
    plain = tmp_path / "ss.txt"
    plain.write_bytes(long_rows)
    _analysis, errors = analyse(plain)
    one_line_errors(errors, plain, ":2: line longer than 1048576 bytes")
    tgz = tmp_path / "sos.tgz"
    _tar(tgz, [("sos_commands/networking/ss_-tan", long_rows)], "w:gz")
    _analysis, errors = analyse(tgz)
    one_line_errors(errors, tgz, "sos.tgz:sos_commands/networking/ss_-tan:2: line longer than 1048576 bytes")


def test_a_300_mb_line_stays_in_bounded_memory(tmp_path: Path) -> None:
    """Was 1.25 GB of memory for one 300 MB line; 40 MB here (the cap stops at 1 MiB whatever the size)."""
    path = tmp_path / "line.txt"
    with path.open("wb") as fh:
        fh.write(HEADER.encode())
        for _ in range(40):
            fh.write(b"y" * (1 << 20))
    # VmHWM, not ru_maxrss: after fork+exec ru_maxrss keeps the parent's (pytest's) peak
    code = ("import re,sys;from connwatch.cli import main;rc=main(['analyze',sys.argv[1]]);"
            "hwm=re.search(r'VmHWM:\\s+(\\d+)',open('/proc/self/status').read()).group(1);"
            "sys.stdout.write(f'{rc} {hwm}')")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    rc, rss_kib = done.stdout.split()
    assert rc == "3" and "line longer than" in done.stderr
    assert int(rss_kib) < 80_000


def test_a_paste_of_too_many_parts_stops_with_one_line_naming_what_was_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paste, "WORK_LINES", 2_000)
    path = tmp_path / "session.txt"
    path.write_text("".join(f"$ ss -tan\n{HEADER}ESTAB 0 0 10.0.0.1:{1024 + i} 10.0.0.2:80\n" for i in range(200)))
    analysis, errors = analyse(path)
    assert analysis is not None
    assert len(errors) == 1 and errors[0].startswith(f"{path}:")
    assert ("too many parts to re-read (200 in the paste, each read from the nearest mark, every 256 lines, "
            "before it): lines ") in errors[0]
    assert errors[0].endswith("-600 were not read; split the file where the commands change")


def test_text_output_of_20000_listeners_is_bounded_and_says_what_was_left_out(tmp_path: Path) -> None:
    path = tmp_path / "ss.txt"
    path.write_text(HEADER + "".join(f"LISTEN {129 if i % 1000 == 0 else 0} 128 10.0.{i // 250}.{i % 250 + 1}:"
                                     f"{1024 + i} 0.0.0.0:*\n" for i in range(20_000)))
    analysis, errors = analyse(path)
    assert errors == [] and analysis is not None
    out = io.StringIO()
    render_text(analysis, Console(file=out, width=200))
    text = out.getvalue()
    assert len(text.splitlines()) < 800  # 20 alerts, the 20 full listeners, notes
    assert "... 19980 more listener(s) (shown: the 20 rejecting or filling, most drops and fullest queues " \
           "first) not shown: --format json lists them all" in text
    assert all(f":{1024 + i} " in text for i in range(0, 20_000, 1000))  # the full queues are among those shown


def test_a_directory_or_tarball_without_any_capture_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    logs = tmp_path / "logs.tar"
    _tar(logs, [("var/log/messages", b"Dec  1 03:00:00 host kernel: hello\n")])
    for path, count in ((empty, 0), (logs, 1)):
        analysis, errors = analyse(path)
        assert analysis is None
        assert errors == [f"{path}: no capture in it ({count} regular file(s); none is ss, netstat, netstat -s, "
                          "nstat, /proc/net or a connwatch snapshot)"]


@pytest.mark.parametrize(("name", "text"), [
    ("windows-netstat-s.txt", "TCP Statistics for IPv4\n\n  Active Opens" + " " * 200_000 + "x = 12\n"),
    ("ss.txt", HEADER + "ESTAB 0 0 " + " " * 200_000 + "x\n"),
    ("netstat.txt", "Active Internet connections (w/o servers)\nProto Recv-Q Send-Q Local Address Foreign Address "
     "State Timer\ntcp 0 0 10.0.0.1:80 10.0.0.2:5000 TIME_WAIT" + " " * 200_000 + "x\n"),
])
def test_a_long_run_of_spaces_in_a_line_is_read_in_linear_time(tmp_path: Path, name: str, text: str) -> None:
    """Three regexes backtracked quadratically on such a line (minutes at 1 MiB; found by fuzzing)."""
    path = tmp_path / name
    path.write_text(text)
    start = time.process_time()
    analyse(path)
    assert time.process_time() - start < 5


def test_a_banner_is_found_in_linear_time_as_the_regex_found_it() -> None:
    """analyze/segment.banner_title replaces the regex \\s*={3,}\\s+(\\S.*?)\\s+={3,}\\s* (fullmatch), which
    backtracked for minutes over a fuzzed line of 680k "=" and tabs (CI, case 55a67b7fdf5b3155): the same title,
    or None, for every string of up to 8 of "=", " ", "\\t", "a" and random longer ones."""
    import itertools
    import random
    import re

    from connwatch.analyze.segment import banner_title

    regex = re.compile(r"\s*={3,}\s+(\S.*?)\s+={3,}\s*")
    rng = random.Random(7)
    strings = ["".join(t) for n in range(9) for t in itertools.product("= \ta", repeat=n)]
    strings += ["".join(rng.choice("==  \tab\u00a0") for _ in range(rng.randrange(40))) for _ in range(20_000)]
    for s in strings:
        m = regex.fullmatch(s)
        assert banner_title(s) == (m.group(1) if m else None), repr(s)
    assert banner_title("====== netstat -s ======") == "netstat -s"
    hostile = "\t" * 1000 + "".join(rng.choice(["=" * 3, "\t", "=", " "]) for _ in range(200_000)) + " INET 3 2 1"
    assert banner_title(hostile) is None
