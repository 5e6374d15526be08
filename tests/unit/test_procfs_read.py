"""ProcFS's os-level reader gives what Path.read_text gives, and its parse memo (the agent's) never hides a
changed file: over every real fixture file, the live /proc, and texts made to differ."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connwatch.errors import SourceUnavailable
from connwatch.parsers.netstat_snmp import parse_netstat_snmp
from connwatch.parsers.sockstat import parse_sockstat
from connwatch.sources.procfs import (
    LIVE_ROOT,
    ParseMemo,
    ProcFS,
    ThreadNetProcFS,
    path_text,
    read_counters,
    read_parsed,
    read_sysctls,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "proc"
FIXTURE_FILES = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.parent != FIXTURES)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_read_text_equals_path_read_text_on_every_fixture_file(path: Path) -> None:
    tree = FIXTURES / path.relative_to(FIXTURES).parts[0]
    rel = str(path.relative_to(tree))
    proc = ProcFS(tree)
    assert proc.read_text(rel) == path.read_text(encoding="utf-8", errors="replace")
    assert proc.path(rel) == path  # (the fixture file itself: where() maps rel under the root)


def test_thread_view_maps_only_net_under_thread_self() -> None:
    """A thread inside another namespace reads its own /proc/thread-self/net; /proc/sys/net already
    follows the calling thread, and the rest of /proc is the host's."""
    thread, main = ThreadNetProcFS("/proc"), ProcFS("/proc")
    assert thread.path("net/snmp") == Path("/proc/thread-self/net/snmp")
    assert thread.where("/net/sockstat6") == "/proc/thread-self/net/sockstat6"
    assert thread.path("sys/net/core/somaxconn") == Path("/proc/sys/net/core/somaxconn")
    assert main.path("net/snmp") == Path("/proc/net/snmp")
    assert ProcFS("/tmp/tree/").where("stat") == "/tmp/tree/stat"


ROOTS = ["", ".", "/", "//", "///", "/proc", "/proc/", "//proc", "///proc/", "/proc/.", "/proc/./", "/proc/..",
         "./proc", "proc", "a//b/./c/", "..", "a/../b", ".//.", "/./proc", "tests/fixtures/proc/local_6x", "/ä/ b/"]


@pytest.mark.parametrize("root", ROOTS)
def test_root_is_kept_as_pathlib_gives_it(root: str) -> None:
    """ProcFS keeps its root as text (no pathlib import in a sample): the text str(Path(root)) gives, so that
    is_live, repr, where() and path() are as they were with a Path."""
    from pathlib import PurePosixPath

    assert path_text(root) == str(PurePosixPath(root)) == path_text(PurePosixPath(root))
    proc = ProcFS(root)
    assert proc.root == str(Path(root)) and repr(proc) == f"ProcFS({str(Path(root))!r})"
    assert proc.is_live == (Path(root) == Path("/proc")) == (proc.root == LIVE_ROOT)
    assert proc.where("net/tcp") == str(Path(root)).rstrip("/") + "/net/tcp"  # (as with a Path root)
    assert proc.path("net/tcp") == Path(proc.where("net/tcp"))


LIVE = ["net/netstat", "net/snmp", "net/snmp6", "net/sockstat", "stat", "sys/net/core/somaxconn",
        "sys/net/ipv4/ip_local_port_range", "sys/kernel/hostname"]


@pytest.mark.skipif(not os.path.exists("/proc/net/netstat"), reason="no live /proc")
@pytest.mark.parametrize("rel", LIVE)
def test_read_text_equals_path_read_text_on_live_proc(rel: str) -> None:
    for proc in (ProcFS(), ThreadNetProcFS()):
        if rel.startswith(("net/", "sys/")):  # (stat's counters move between two reads)
            text = proc.read_text(rel)
            if not rel.startswith("net/"):
                assert text == proc.path(rel).read_text(encoding="utf-8", errors="replace")
            else:
                assert text.split("\n", 1)[0] == proc.path(rel).read_text().split("\n", 1)[0]


def test_read_text_translates_newlines_and_bad_bytes_as_path_read_text(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"a\r\nb\rc\xff\n" + b"x" * 200_000)  # (longer than one read)
    assert ProcFS(tmp_path).read_text("f") == (tmp_path / "f").read_text(encoding="utf-8", errors="replace")


def test_read_text_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(SourceUnavailable) as info:
        ProcFS(tmp_path).read_text("d")
    assert info.value.source == str(tmp_path / "d")
    assert info.value.reason == "Is a directory"


def _tree(tmp_path: Path, netstat: str) -> ProcFS:
    (tmp_path / "net").mkdir(exist_ok=True)
    (tmp_path / "net" / "netstat").write_text(netstat)
    return ProcFS(tmp_path, memo={})


def test_memo_reuses_an_unchanged_text_and_parses_a_changed_one(tmp_path: Path) -> None:
    proc = _tree(tmp_path, "TcpExt: ListenDrops ListenOverflows\nTcpExt: 1 2\n")
    first, st1 = read_parsed(proc, "net/netstat", parse_netstat_snmp)
    assert first == {"TcpExt.ListenDrops": 1, "TcpExt.ListenOverflows": 2} and st1.ok
    assert first is not None
    first["TcpExt.ListenDrops"] = 99  # a caller changing its copy does not change the memo
    again, st2 = read_parsed(proc, "net/netstat", parse_netstat_snmp)
    assert again == {"TcpExt.ListenDrops": 1, "TcpExt.ListenOverflows": 2} and st2.detail == st1.detail
    (tmp_path / "net" / "netstat").write_text("TcpExt: ListenDrops ListenOverflows\nTcpExt: 1 3\n")
    changed, _ = read_parsed(proc, "net/netstat", parse_netstat_snmp)
    assert changed == {"TcpExt.ListenDrops": 1, "TcpExt.ListenOverflows": 3}


def test_memo_keeps_errors_and_other_parsers_apart(tmp_path: Path) -> None:
    proc = _tree(tmp_path, "TcpExt: ListenDrops\nTcpExt: x\n")
    for _ in range(2):  # a parse error is never remembered as values
        values, status = read_parsed(proc, "net/netstat", parse_netstat_snmp)
        assert values is None and not status.ok
    (tmp_path / "net" / "netstat").write_text("TCP: inuse 3 orphan 0 tw 1 alloc 4 mem 1\n")
    assert read_parsed(proc, "net/netstat", parse_sockstat)[0] == {
        "TCP.inuse": 3, "TCP.orphan": 0, "TCP.tw": 1, "TCP.alloc": 4, "TCP.mem": 1}
    assert read_parsed(proc, "net/netstat", parse_netstat_snmp)[0] is None  # same text, other parser: parsed


@pytest.mark.parametrize("tree", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_memo_gives_what_a_fresh_read_gives_on_every_fixture(tree: str) -> None:
    memo: ParseMemo = {}
    with_memo = ProcFS(FIXTURES / tree, memo=memo)
    plain = ProcFS(FIXTURES / tree)
    for _ in range(2):
        assert read_counters(with_memo)[0] == read_counters(plain)[0]
        assert [(s.name, s.ok, s.detail) for s in read_counters(with_memo)[1]] == [
            (s.name, s.ok, s.detail) for s in read_counters(plain)[1]]
        assert read_sysctls(with_memo)[0] == read_sysctls(plain)[0]
