"""A mutation fuzzer for `connwatch analyze`, seeded from the real capture fixtures.

Each input is a real capture (tests/fixtures/captures/**, pastes included, plus a snapshot JSON
built here) mutated at byte and line level: bit flips, inserted/deleted bytes, huge or odd numbers
in place of digits (5,000 digits, 1e999, nan, -1, 2**64), link-local IPv6 with a zone, truncation,
two captures spliced, re-encoding (UTF-16 with and without BOM, a lone surrogate, cp1252, NUL
bytes, CRLF), duplicated and dropped lines; now and then several inputs packed into a tarball
(plain or gzip, sometimes corrupt, a file and a symlink of one name) or a directory. Every input
goes through the analyze entry point in-process (run_analysis, then the JSON, text and nagios
renderings, as `connwatch analyze` does); anything but success or a ConnwatchError is a crash.

    python -m tests.fuzz.analyze_fuzz --count 20000 [--seed N] [--save]

--save copies each crashing input into tests/fuzz/corpus/ (replayed by test_analyze_fuzz.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import os
import random
import shutil
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from connwatch.analyze.output import analysis_dict, render_nagios, render_text
from connwatch.analyze.run import run_analysis
from connwatch.errors import ConnwatchError
from connwatch.model import DestinationUsage, HostInfo, Listener, Process, Snapshot, SocketSummary, Sysctls
from connwatch.outputs.jsonout import dumps
from connwatch.rules.config import Config, load_config
from connwatch.snapshot_json import to_dict

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "fixtures" / "captures"
CORPUS = Path(__file__).resolve().parent / "corpus"
SEED_BYTES = 12_000  # seeds are cut to their first lines: mutations near the top matter, and it keeps runs fast

HUGE = [b"9" * 5000, b"1e999", b"-1e999", b"nan", b"inf", b"-1", b"18446744073709551616", b"0x10", b"1_000",
        b"\xd9\xa3", b"99999999999999999999999", b"1" * 400, b"-0", b"4294967296", b"65536", b"1.5"]
TOKENS = [b"fe80::1%eth0", b"[fe80::1%eth0]:80", b"fe80::1%eth0:5000", b"::ffff:10.0.0.1", b"*:*", b"[::]:*",
          b"0.0.0.0:*", b"LISTEN", b"ESTAB", b"TIME_WAIT", b"TIME-WAIT", b"ESTABLISHED", b"CLOSE_WAIT", b"-",
          b"\t", b"users:((\"x\",pid=1,fd=3))", b"timer:(timewait,59sec,0)", b"%", b"$ ", b"# ss -tan",
          b"netstat -s", b"```", b"Proto Recv-Q Send-Q Local Address Foreign Address State", b"TcpExt:",
          b"...", b"\x1b[31m", b"\r", b"\xef\xbb\xbf", b"\xff\xfe", b"\0"]


def seeds() -> list[tuple[str, bytes]]:
    """(name, bytes) of every fixture capture (cut to SEED_BYTES at a line end) and a snapshot JSON."""
    out = []
    for path in sorted(CAPTURES.rglob("*")):
        if path.is_file() and path.name != "SOURCES.md":
            data = path.read_bytes()
            if len(data) > SEED_BYTES:
                data = data[:data.rfind(b"\n", 0, SEED_BYTES) + 1]
            out.append((str(path.relative_to(CAPTURES)), data))
    out += [("snapshot.json", snapshot_seed())] * 8  # one format, but the richest: about 10 % of the inputs
    return out


def snapshot_seed() -> bytes:
    """A connwatch snapshot JSON (synthetic: the fixtures hold none) with every section filled."""
    owner = Process(pid=42, command="nginx", cmdline="nginx: master", user="root", started_at=1.7e9,
                    open_fds=10, fd_limit=1024)
    lst = Listener(family=4, address="0.0.0.0", port=8080, queue=129, backlog=128, drops=170, inode=1, uid=0,
                   owner=owner)
    dest = DestinationUsage(local_address="10.0.0.1", remote_address="10.0.0.2", remote_port=5432,
                            states={"ESTABLISHED": 3, "TIME_WAIT": 500}, owners=(owner,), owner_inodes=(7,))
    snap = Snapshot(taken_at=1.7e9, monotonic=3431.1, host=HostInfo("vm", "6.1", "linux", 1.699e9),
                    counters={"TcpExt.ListenOverflows": 170, "TcpExt.ListenDrops": 170, "Tcp.ActiveOpens": 9},
                    sockstat={"TCP.tw": 500}, sysctls=Sysctls(somaxconn=4096, ip_local_port_range=(32768, 60999)),
                    listeners=(lst,), sockets=SocketSummary(total=503, by_state={"TIME_WAIT": 500},
                                                            destinations=(dest,)))
    doc = to_dict(snap)
    doc["namespaces"] = [to_dict(dataclasses.replace(snap, listeners=(), taken_at=1.7e9 + 1))]
    return json.dumps(doc, indent=1).encode()


# --- mutations: bytes -> bytes --------------------------------------------------------------------

def _flip(r: random.Random, d: bytes) -> bytes:
    if not d:
        return d
    b = bytearray(d)
    for _ in range(r.randint(1, 8)):
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)
    return bytes(b)


def _insert_bytes(r: random.Random, d: bytes) -> bytes:
    i = r.randint(0, len(d))
    return d[:i] + bytes(r.randrange(256) for _ in range(r.randint(1, 16))) + d[i:]


def _delete(r: random.Random, d: bytes) -> bytes:
    i = r.randint(0, len(d))
    return d[:i] + d[i + r.randint(1, 64):]


def _number(r: random.Random, d: bytes) -> bytes:
    """Replace some runs of digits with a huge or odd number."""
    spans = [i for i in range(len(d)) if d[i:i + 1].isdigit() and (i == 0 or not d[i - 1:i].isdigit())]
    if not spans:
        return d + b" " + r.choice(HUGE)
    for i in sorted(r.sample(spans, min(len(spans), r.randint(1, 3))), reverse=True):
        j = i
        while j < len(d) and d[j:j + 1].isdigit():
            j += 1
        d = d[:i] + r.choice(HUGE) + d[j:]
    return d


def _token(r: random.Random, d: bytes) -> bytes:
    """Replace a whitespace-separated token with one the parsers treat specially."""
    words = d.split(b" ")
    i = r.randrange(len(words))
    words[i] = r.choice(TOKENS)
    return b" ".join(words)


def _lines(r: random.Random, d: bytes) -> bytes:
    lines = d.split(b"\n")
    i = r.randrange(len(lines))
    op = r.randrange(5)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[r.randrange(len(lines))])
    elif op == 2:
        j = r.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:
        lines[i:i] = [lines[i]] * r.randint(2, 200)
    else:
        lines[i] = lines[i] * r.randint(2, 50)  # a long line
    return b"\n".join(lines)


def _run_of(r: random.Random, d: bytes) -> bytes:
    """A long run of one character inside a line (spaces, tabs, digits, dots, colons): a regex that
    backtracks quadratically on it shows as a slow input."""
    i = r.randint(0, len(d))
    return d[:i] + r.choice((b" ", b"\t", b"1", b".", b":", b"a", b"=", b"-")) * r.randint(2_000, 30_000) + d[i:]


def _truncate(r: random.Random, d: bytes) -> bytes:
    return d[:r.randint(0, len(d))]


def _encode(r: random.Random, d: bytes) -> bytes:
    text = d.decode("utf-8", "replace")
    op = r.randrange(7)
    if op == 0:
        return text.encode("utf-16")  # with BOM
    if op == 1:
        return text.encode("utf-16-le")
    if op == 2:
        raw = text.encode("utf-16-le")
        i = r.randrange(0, len(raw) + 1, 2) if raw else 0
        return b"\xff\xfe" + raw[:i] + b"\x00\xd8" + raw[i:]  # a lone high surrogate
    if op == 3:
        return text.encode("cp1252", "replace") + "é ö ñ".encode("cp1252")
    if op == 4:
        return d.replace(b"\n", b"\r\n")
    if op == 5:
        i = r.randint(0, len(d))
        return d[:i] + b"\0" * r.randint(1, 4) + d[i:]
    return text.encode("utf-16-be")


ODD_VALUES: list[object] = [None, -1, 0, 2**63, 2**64, -(2**63), 1.5, -0.0, 1e308, "x", "80", "", [], {}, True,
                             [1, 2], {"a": 1}, "0.0.0.0", "::1", "fe80::1%eth0", 65536, 7]


def _json(r: random.Random, d: bytes) -> bytes:
    """In a JSON document: one value replaced by one of another type or an extreme size, or a key dropped."""
    try:
        doc = json.loads(d)
    except ValueError:
        return d
    holders: list[dict[str, object] | list[object]] = []

    def collect(node: object) -> None:
        if isinstance(node, dict | list) and len(holders) < 500:
            holders.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                collect(child)

    collect(doc)
    if not holders:  # a bare number or string
        return d
    for _ in range(r.randint(1, 3)):
        node = r.choice(holders)
        if not node:
            continue
        if isinstance(node, dict):
            key = r.choice(list(node))
            if r.random() < 0.2:
                del node[key]
            else:
                node[key] = r.choice(ODD_VALUES)
        else:
            node[r.randrange(len(node))] = r.choice(ODD_VALUES)
    return json.dumps(doc).encode()


MUTATORS: list[Callable[[random.Random, bytes], bytes]] = [
    _flip, _insert_bytes, _delete, _number, _number, _token, _token, _lines, _lines, _truncate, _encode, _json, _json,
    _run_of]


def mutate(r: random.Random, pool: list[tuple[str, bytes]]) -> bytes:
    data = r.choice(pool)[1]
    if r.random() < 0.1:  # splice two captures
        other = r.choice(pool)[1]
        data = data[:r.randint(0, len(data))] + other[r.randint(0, len(other)):]
    for _ in range(r.choice((1, 1, 1, 2, 2, 3, 5))):
        data = r.choice(MUTATORS)(r, data)
    return data


# --- containers -----------------------------------------------------------------------------------

TAR_NAMES = ["sos_commands/networking/ss_-tanp", "sos_commands/networking/netstat_-s", "proc/net/netstat",
             "proc/net/tcp", "proc/net/tcp6", "proc/net/snmp", "proc/net/sockstat", "proc/sys/net/core/somaxconn",
             "proc/sys/net/ipv4/ip_local_port_range", "date", "hostname", "uptime", "nstat_-az", "sysctl_-a"]


def _tarball(r: random.Random, pool: list[tuple[str, bytes]], path: Path) -> None:
    names = TAR_NAMES
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if r.random() < 0.5 else "w") as tar:
        for _ in range(r.randint(1, 4)):
            data = mutate(r, pool)
            info = tarfile.TarInfo(r.choice(names))
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
            if r.random() < 0.2:  # a symlink of the same name
                link = tarfile.TarInfo(info.name)
                link.type, link.linkname = tarfile.SYMTYPE, "elsewhere"
                tar.addfile(link)
    raw = buf.getvalue()
    if r.random() < 0.3:
        raw = _flip(r, raw) if r.random() < 0.5 else _truncate(r, raw)
    path.write_bytes(raw)


def make_input(r: random.Random, pool: list[tuple[str, bytes]], work: Path) -> list[str]:
    """Write one fuzz case under `work`; its command-line arguments."""
    choice = r.random()
    if choice < 0.04:
        path = work / r.choice(("c.tar", "c.tgz", "capture"))
        _tarball(r, pool, path)
        return [str(path)]
    if choice < 0.06:
        d = work / "dir"
        for name in r.sample(TAR_NAMES, r.randint(1, 4)):
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(mutate(r, pool))
        return [str(d)]
    if choice < 0.12:
        paths = []
        for i in range(r.randint(2, 3)):
            p = work / f"f{i}.txt"
            p.write_bytes(mutate(r, pool))
            paths.append(str(p))
        return paths
    path = work / r.choice(("capture.txt", "snapshot.json", "ss_-tan", "netstat", "uptime"))
    path.write_bytes(mutate(r, pool))
    return [str(path)]


# --- running --------------------------------------------------------------------------------------

TEXT_EVERY = 8  # rich's table layout costs 3x the analysis: the text rendering runs on every 8th input


def analyse(args: list[str], config: Config, text: bool = True) -> str | None:
    """Run analyze in-process on `args`; None when it ended well (a report or a ConnwatchError) within
    SLOW_S of CPU, else the crash's last traceback lines. `text`: render the text report too (JSON and
    nagios always)."""
    start = time.process_time()
    crash = _analyse(args, config, text)
    took = time.process_time() - start
    if crash is None and took > SLOW_S:
        return f"slow: {took:.1f} s of CPU for one input (a quadratic parser or regex?)"
    return crash


SLOW_S = 5.0  # CPU seconds for one input of at most ~100 KB (typically 3 ms)


def _analyse(args: list[str], config: Config, text: bool) -> str | None:
    try:
        interval = 60.0 if len(args) > 1 and len(args[0]) % 2 else None  # two captures give rates
        analysis, errors = run_analysis(args, config, interval, None, None)
        for line in errors:
            if "\n" in line:
                return f"error is not one line: {line[:300]!r}"
        if analysis is None and not errors:
            return "no report and no error line (a silent exit 3)"
        if analysis is not None:
            dumps(analysis_dict(analysis))
            render_nagios(analysis)
            if text:
                render_text(analysis, Console(file=io.StringIO(), width=120))
    except ConnwatchError:
        return None
    except (Exception, RecursionError) as exc:  # the crash we look for
        return "".join(traceback.format_exception(exc)[-4:])
    return None


@dataclasses.dataclass
class Result:
    inputs: int
    seconds: float
    crashes: list[tuple[int, str, Path | None]]  # (case seed, last traceback lines, saved copy)


def fuzz(count: int, seed: int, budget_s: float, save: Path | None = None, jobs: int = 2) -> Result:
    """`count` inputs from `seed`, in `jobs` processes (stops early after budget_s seconds)."""
    start = time.monotonic()
    tasks = [(count // jobs + (i < count % jobs), seed, i, budget_s, save) for i in range(jobs)]
    if jobs == 1:
        parts = [_worker(tasks[0])]
    else:
        # spawn, not fork: a fork copies locks that other threads of the test process hold (a worker slept for
        # 15 min once in a full run), and a bounded wait turns any hang into a failure
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            try:
                parts = pool.map_async(_worker, tasks).get(timeout=budget_s + 120)
            except multiprocessing.TimeoutError:
                raise AssertionError(f"fuzz workers still running {budget_s + 120:.0f} s after their start") from None
    return Result(sum(p.inputs for p in parts), time.monotonic() - start, [c for p in parts for c in p.crashes])


def _worker(task: tuple[int, int, int, float, Path | None]) -> Result:
    count, seed, index, budget_s, save = task
    r = random.Random(seed * 1000 + index)
    pool, config = seeds(), load_config(None)
    crashes: list[tuple[int, str, Path | None]] = []
    start = time.monotonic()
    done = 0
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="connwatch-fuzz-", dir=shm if shm.is_dir() else None) as tmp:
        while done < count and time.monotonic() - start < budget_s:
            done += 1
            crash, args, work, case_seed = run_case(r.getrandbits(64), pool, config, Path(tmp) / str(done % 100),
                                                    text=done % TEXT_EVERY == 0)
            if crash is not None:
                kept = _keep(work, args, case_seed, save) if save is not None else None
                crashes.append((case_seed, crash, kept))
    return Result(done, time.monotonic() - start, crashes)


def run_case(case_seed: int, pool: list[tuple[str, bytes]], config: Config, work: Path,
             text: bool = True) -> tuple[str | None, list[str], Path, int]:
    """Make and analyse the input of one case seed (the same seed makes the same input)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    args = make_input(random.Random(case_seed), pool, work)
    return analyse(args, config, text), args, work, case_seed


def _keep(work: Path, args: list[str], case_seed: int, corpus: Path) -> Path:
    dest = corpus / f"crash-{case_seed:016x}"
    if len(args) == 1 and Path(args[0]).is_file():
        dest = dest.with_suffix(Path(args[0]).suffix or ".txt")
        shutil.copyfile(args[0], dest)
    else:
        dest.mkdir(exist_ok=True)
        for a in args:
            src = Path(a)
            (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dest / src.name)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    p.add_argument("--budget", type=float, default=3600.0, help="stop after this many seconds")
    p.add_argument("--save", action="store_true", help="keep crashing inputs in tests/fuzz/corpus/")
    p.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    p.add_argument("--case", type=lambda x: int(x, 16), default=None, help="re-run one case (hex seed, as printed)")
    a = p.parse_args(argv)
    if a.case is not None:
        with tempfile.TemporaryDirectory() as tmp:
            crash, args, _work, _seed = run_case(a.case, seeds(), load_config(None), Path(tmp) / "case")
            print(args, crash or "no crash")
            if a.save and crash is not None:
                print(_keep(Path(tmp) / "case", args, a.case, CORPUS))
        return 1 if crash else 0
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
    res = fuzz(a.count, seed, a.budget, CORPUS if a.save else None, a.jobs)
    print(f"seed {seed}: {res.inputs} inputs in {res.seconds:.1f} s, {len(res.crashes)} crash(es)")
    kinds: dict[str, int] = {}
    for case_seed, crash, kept in res.crashes:
        last = crash.strip().splitlines()[-1][:160]
        if last not in kinds:
            print(f"--- case {case_seed:016x} ({kept}):\n{crash}")
        kinds[last] = kinds.get(last, 0) + 1
    for last, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"{n:6d}  {last}")
    return 1 if res.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
