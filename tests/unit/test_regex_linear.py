"""Regexes that once backtracked quadratically on one long line (found by the analyze fuzzer: a 12 KB
line took 4-6 s of CPU in the sysctl detector): they must stay linear. Each runs on a line about 17x
longer than the fuzzer's in a child process with a deadline; a quadratic pattern would take hours
there, a linear one takes milliseconds."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = {
    "sysctl detector": "from connwatch.analyze.detect import _SYSCTL as P\nassert not P.fullmatch('a.' * 100_000)",
    "conntrack stat pairs": "from connwatch.parsers.conntrack import _PAIR as P\n"
                            "assert P.findall('a_' * 100_000) == []",
}


@pytest.mark.parametrize("code", CASES.values(), ids=list(CASES))
def test_a_long_line_is_read_in_linear_time(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_linear_forms_match_what_the_old_ones_matched() -> None:
    import re

    from connwatch.analyze.detect import _SYSCTL
    from connwatch.parsers.conntrack import _PAIR

    old_sysctl = re.compile(r"[a-z][\w.-]*\.[\w.-]+\s*=\s*.*")
    old_pair = re.compile(r"([a-z_]+)=(\d+)")
    lines = ["net.ipv4.tcp_syncookies = 1", "net..x = 1", "kernel.x. = 2", "Net.x = 1", "a.b= ", "a.b", "ab = 1",
             "vm.max_map_count=65530", "x.y.z-w_1 =  v", "a.=1", ".a.b = 1", "cpu=0 found=12 invalid=3 drop=0",
             "x1foo=2 Abc=1 _=3 a=b=4", "entries=12 searched=0 search_restart=9"]
    for line in lines:
        assert bool(_SYSCTL.fullmatch(line)) == bool(old_sysctl.fullmatch(line)), line
        assert _PAIR.findall(line) == old_pair.findall(line), line
