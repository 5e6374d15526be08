"""Import boundaries (issue 17): a command loads only what it uses. Structural, not timed: which modules
are in sys.modules of a fresh interpreter after the parser is built or a command has run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connwatch.cli import COMMANDS, chosen_command

PROC = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")
OFFLINE = ["--proc-root", PROC, "--no-netlink", "--netns", "own"]
STORE = {"sqlite3", "connwatch.alerts.store", "connwatch.alerts.db"}
RULES = {"connwatch.engine", "connwatch.findings", "connwatch.rules.config", "connwatch.attributes.registry",
         "connwatch.attributes.backlog", "connwatch.explain"}
RENDERING = {"rich", "rich.console"}
NAMESPACES = {"ctypes", "threading"}  # only to enter another network namespace
AGENT_ONLY = {"connwatch.collect_tw", "connwatch.sources.diag_filter"}  # the agent's TIME_WAIT; check's first sample
STDLIB_HEAVY = {"shutil", "bz2", "lzma", "json"}  # argparse's help width, Docker names: not to start


def _modules(code: str) -> tuple[set[str], str]:
    """sys.modules (and stdout) of a fresh interpreter after `code` (the built-in rules: no config file)."""
    probe = code + "\nimport sys as _s\nprint('MODULES', ' '.join(sorted(_s.modules)))\n"  # (no json import)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CONNWATCH_CONFIG": ""})
    assert done.returncode == 0, done.stderr
    out, _, mods = done.stdout.rpartition("MODULES ")
    return set(mods.split()), out


def test_the_command_is_found_only_in_first_place() -> None:
    assert chosen_command(["snapshot", "--format", "json"]) == "snapshot"
    assert chosen_command(["--help"]) is None and chosen_command([]) is None
    assert chosen_command(["-V", "check"]) is None and chosen_command(["chek"]) is None


@pytest.mark.parametrize("name", COMMANDS)
def test_building_one_commands_parser_imports_no_other_command(name: str) -> None:
    mods, _ = _modules(f"from connwatch.cli import build_parser\nbuild_parser({name!r})")
    others = {f"connwatch.commands.{c}" for c in COMMANDS if c != name}
    assert f"connwatch.commands.{name}" in mods
    assert not mods & others, sorted(mods & others)
    heavy = STORE | RULES | RENDERING | STDLIB_HEAVY | {"psutil", "connwatch.collect"}
    assert not mods & heavy, sorted(mods & heavy)


def test_snapshot_json_loads_no_store_rules_rendering_or_psutil_without_owners() -> None:
    mods, out = _modules("from connwatch.cli import main\n"
                         f"assert main(['snapshot', '--format', 'json', *{OFFLINE!r}]) == 0")
    data = json.loads(out)
    assert data["kind"] == "snapshot" and data["listeners"], "the capture has listeners"
    assert not any(x.get("owner") for x in data["listeners"])  # a copied /proc: no process holds them
    unwanted = STORE | RULES | RENDERING | NAMESPACES | AGENT_ONLY | {"psutil", "dataclasses"} | {
        f"connwatch.commands.{c}" for c in COMMANDS if c != "snapshot"}
    unwanted |= {"typing"}  # (snapshot_json reads type hints only to read a capture back: ~3 ms of CPU)
    # nor pathlib (with urllib.parse and ipaddress: 14.6 M of 137 M instructions to the first kernel read, 11 %)
    unwanted |= {"pathlib", "urllib.parse", "ipaddress"}
    # nor argparse (plain options are read by connwatch.fastargs: argparse and the building of the command's
    # parser were 17 M of the remaining 122 M instructions to the first kernel read)
    unwanted |= {"argparse", "connwatch.cliparser", "gettext"}
    # nor re or json (the parsers' token checks are str methods, the JSON text is outputs/jsontext.py's: 9 M
    # instructions to the first kernel read, 16 M over the whole process at 35k sockets)
    unwanted |= {"re", "json"}
    unwanted |= {"enum", "connwatch.tcpstate"}  # (model.STATE_NAMES, not TcpState: 7.6 M instructions)
    unwanted |= {"contextlib"}  # (collect and sources/netlink: try/finally, try/except: 2.6 M instructions)
    assert not mods & unwanted, sorted(mods & unwanted)


def test_listeners_json_loads_no_store_or_rules() -> None:
    mods, out = _modules("from connwatch.cli import main\n"
                         f"assert main(['listeners', '--format', 'json', *{OFFLINE!r}]) == 0")
    assert json.loads(out)["kind"] == "listeners"
    assert not mods & (STORE | RULES | RENDERING | NAMESPACES), sorted(mods & (STORE | RULES | RENDERING | NAMESPACES))


def test_sources_text_off_a_terminal_loads_no_rich() -> None:
    mods, out = _modules("from connwatch.cli import main\n"
                         f"assert main(['sources', '--interval', '0', *{OFFLINE!r}]) == 0")
    assert out.splitlines()[0] == "No inbound connections to any listening port."  # (the capture has none)
    assert not mods & RENDERING, sorted(mods & RENDERING)


def test_analyze_json_loads_no_rich_or_store() -> None:
    """analyze --format json (issue 17, rows/s as a whole process): the document is built without rich."""
    capture = Path(__file__).parents[1] / "fixtures" / "captures"
    listing = next(p for p in sorted(capture.rglob("*.txt")) if p.read_text(errors="replace").startswith("State"))
    mods, out = _modules("from connwatch.cli import main\n"
                         f"main(['analyze', '--format', 'json', {str(listing)!r}])")
    assert json.loads(out)["command"] == "analyze"
    assert not mods & (STORE | RENDERING), sorted(mods & (STORE | RENDERING))


def test_listeners_text_off_a_terminal_loads_no_rich_nor_json_even_with_notes() -> None:
    mods, out = _modules("from connwatch.cli import main\n"
                         f"assert main(['listeners', *{OFFLINE!r}]) == 0")
    assert out.startswith("TCP listeners\n") and "\nnote: netlink sock_diag unavailable" in out  # (this capture's)
    unwanted = RENDERING | {"json", "dataclasses", "shutil"}
    assert not mods & unwanted, sorted(mods & unwanted)


def test_listeners_table_on_a_terminal_is_drawn_without_rich() -> None:
    """On a colour terminal (a pseudo-terminal here) the table's screenful is written by outputs/ansi.py:
    rich's table module never loads (this capture's notes are still rich's to print)."""
    code = f"""import io, os, pty, sys
master, slave = pty.openpty()
os.environ.update(TERM="xterm-256color", COLUMNS="100", LINES="30")
for k in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"):
    os.environ.pop(k, None)
real, sys.stdout = sys.stdout, io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8")
from connwatch.cli import main
assert main(['listeners', *{OFFLINE!r}]) == 0
sys.stdout.flush()
sys.stdout = real
print(repr(os.read(master, 65536)[:40]))
"""
    mods, out = _modules(code)
    assert out.startswith(repr(b"\x1b[3mTCP listeners")[:-1]), out  # (rich's italic title, written by ansi.py)
    assert not mods & {"rich.table", "rich.box"}, sorted(mods & {"rich.table", "rich.box"})


def test_destinations_text_off_a_terminal_loads_no_rich() -> None:
    mods, out = _modules("from connwatch.cli import main\n"
                         f"assert main(['destinations', '--interval', '0', *{OFFLINE!r}]) == 0")
    lines = out.splitlines()
    assert lines[0].startswith("Ephemeral ports per destination: range ")
    assert any(x.startswith("Busiest destinations (") for x in lines) and "─" in out  # the table, drawn plain
    assert not mods & RENDERING, sorted(mods & RENDERING)


def test_check_loads_the_store_and_rules_it_needs() -> None:
    """The other side of the boundary: the modules a check judges and records with are there."""
    mods, out = _modules("import tempfile\nfrom connwatch.cli import main\n"
                         "main(['check', '--interval', '0.01', '--format', 'json', '--state-dir', tempfile.mkdtemp(), "
                         f"*{OFFLINE!r}])")
    assert json.loads(out)["status"] == "OK"
    assert {"sqlite3", "connwatch.engine", "connwatch.rules.config"} <= mods
    assert not mods & (NAMESPACES | {"psutil", "tomllib"})  # process details from /proc; no config file here
    # judged, recorded and written without dataclasses (records; its import and a dataclass made per record
    # class that dataclasses' own functions met were ~20 ms of a check's CPU, issue 17)
    assert not mods & {"dataclasses", "inspect", "connwatch.remedy.nftables"}, sorted(mods)
    # nor typing (its import was ~2 ms: the annotations' names are imported for mypy only, TYPE_CHECKING)
    assert "typing" not in mods


def _modules_at_first_read(argv: list[str]) -> tuple[set[str], str]:
    """sys.modules when the command first reads the kernel's state (here the copied /proc tree: the first
    open under it, of /proc/... or /run/netns, or a netlink socket), seen by an audit hook as
    bench/bench_process.py's start-up figure is; the command then runs to its end."""
    code = f"""import gc, sys, tempfile
_seen, _gc = [], []
def _hook(event, args):
    what = args[0] if event in ("open", "os.scandir", "os.listdir") else None
    if not _seen and ((isinstance(what, str) and what.startswith(({PROC!r}, "/proc/", "/run/netns")))
                      or (event == "socket.__new__" and args[1] == 16)):
        _seen.append(sorted(sys.modules))
        _gc.append(gc.get_stats()[0]["collections"] - _passes)
sys.addaudithook(_hook)
from connwatch.cli import main
_passes = gc.get_stats()[0]["collections"]
argv = [tempfile.mkdtemp() if a == "STATE" else a for a in {argv!r}]
code = main(argv)
assert code in (0, 1, 2), code
print("GC", _gc[0], gc.get_threshold()[0], gc.get_freeze_count() > 0)
print("MODULES", " ".join(_seen[0]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CONNWATCH_CONFIG": ""})
    assert done.returncode == 0, done.stderr
    before, _, mods = done.stdout.rpartition("MODULES ")
    return set(mods.split()), before.rpartition("GC ")[2].strip()


@pytest.mark.parametrize("argv", [
    ["sources", "--interval", "0.01", "--format", "json"],
    ["destinations", "--interval", "0.01", "--format", "json"],
    ["check", "--interval", "0.01", "--format", "json", "--state-dir", "STATE"],
    ["top", "--batch", "-n", "1"],
    ["snapshot", "--format", "json"],
    ["listeners", "--format", "json"],
])
def test_no_command_loads_rules_store_or_rendering_before_its_first_kernel_read(argv: list[str]) -> None:
    """Start-up (issue 17): the rules, the report's modules, rich and the alert store load after the first
    sample (within the interval where there is one), never before it; nor does dataclasses (the records are
    made without it, connwatch.record), whose import of inspect was a fifth of the start-up; nor typing
    (8 % of it). Until then the cyclic GC made no automatic pass (perf.startup_begins); after the first
    sample it collects again, start-up's objects frozen out of its sight."""
    mods, gc_state = _modules_at_first_read([*argv, *OFFLINE])
    assert "connwatch.collect" in mods, "the hook saw the first read"
    early = STORE | RULES | RENDERING | {"connwatch.rules.config", "connwatch.reports.sources",
                                         "connwatch.reports.destinations", "connwatch.outputs.top",
                                         "dataclasses", "inspect", "typing"}
    assert not mods & early, sorted(mods & early)
    assert gc_state == "0 700 True", gc_state  # (GC passes in main to the first read; threshold at the end; frozen)


def test_a_check_makes_no_gc_pass_and_leaves_nothing_to_the_last_one() -> None:
    """`check` (not --watch) runs to its end without an automatic GC pass (commands/check.py _once; they
    were 11 after the first sample) and freezes what it made, so that the interpreter's collection at exit
    walks none of it; the collector is enabled again afterwards."""
    code = f"""import gc, tempfile
from connwatch.cli import main
_passes = sum(s["collections"] for s in gc.get_stats())
code = main(['check', '--interval', '0.01', '--format', 'json', '--state-dir', tempfile.mkdtemp(), *{OFFLINE!r}])
assert code in (0, 1, 2), code
print("GC", sum(s["collections"] for s in gc.get_stats()) - _passes, gc.isenabled(), gc.get_count()[0] < 100)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CONNWATCH_CONFIG": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.rpartition("GC ")[2].split() == ["0", "True", "True"], done.stdout[-300:]
