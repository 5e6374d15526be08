"""`connwatch listeners` drawn fast (outputs/listeners.py) equals what rich and json.dumps made before."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connwatch.collect_owners import _with_owners
from connwatch.commands.listeners import json_text, render_text
from connwatch.model import Listener, NetnsInfo, Process, Snapshot
from connwatch.outputs.console import console
from connwatch.outputs.fastjson import Table, dumps_indented
from connwatch.outputs.fit import _plain, print_fitted
from connwatch.outputs.jsonout import document, dumps, snapshot_listeners
from connwatch.outputs.listeners import listener_rows, plain_rows, plain_table
from connwatch.outputs.text import listeners_cells
from connwatch.outputs.width import plain_stream
from connwatch.snapshot_json import netns_dict
from connwatch.sources.processes import OwnerScan

from .builders import plain_utc_terminal, snapshot

T0 = 1_700_000_000.0
NAMES = st.text("abz09-_.[]:/ é日", min_size=1, max_size=20)
PROCESSES = st.builds(Process, pid=st.integers(1, 4_194_304), command=NAMES, cmdline=st.text(max_size=30),
                      user=st.none() | NAMES, started_at=st.none() | st.floats(T0 - 400_000, T0 + 5),
                      open_fds=st.none() | st.integers(0, 70_000), fd_limit=st.none() | st.integers(0, 1 << 20),
                      state=st.none() | st.sampled_from(["sleeping", "running"]))
ADDRESSES = st.sampled_from(["127.0.0.1", "0.0.0.0", "::", "::1", "2001:db8::1", "::ffff:10.0.0.1", "10.1.2.3"])


@st.composite
def snapshots(draw: Any, max_size: int = 30) -> Snapshot:
    owners = draw(st.lists(PROCESSES, max_size=3))
    rows = draw(st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 5000), st.none() | st.integers(0, 4096),
                                   st.none() | st.integers(0, 1 << 32), ADDRESSES,
                                   st.none() | st.sampled_from(owners) if owners else st.none()), max_size=max_size))
    listeners = tuple(Listener(family=6 if ":" in a else 4, address=a, port=p, queue=q, backlog=b, drops=d,
                               inode=1000 + i, uid=0, cookie=i, owner=o) for i, (p, q, b, d, a, o) in enumerate(rows))
    return snapshot(T0, listeners)


@settings(max_examples=150, deadline=None)
@given(snapshots(), st.sampled_from([60, 80, 119, 120, 160, 250]))
def test_plain_cells_are_what_rich_shows_of_the_styled_cells(snap: Snapshot, width: int) -> None:
    _, styled = listeners_cells(snap, width=width)
    assert plain_rows(snap, width) == [[_plain(c) for c in r] for r in styled]


def _rich_way(snaps: list[Snapshot], limitations: list[str]) -> str:
    """The command's text as it was drawn before: every table through a rich Console (print_fitted)."""
    from connwatch.commands.common import is_other

    out = console()
    for snap in snaps:
        if snap.listeners or not is_other(snap):
            title = f"TCP listeners in {snap.netns.label}" if is_other(snap) and snap.netns else "TCP listeners"
            print_fitted(out, *listeners_cells(snap, width=out.width), title=title)
    for note in limitations:
        out.print(f"[dim]note: {note}[/dim]")
    return ""


def _captured(monkeypatch: pytest.MonkeyPatch, draw: Any) -> str:
    sink = io.StringIO()
    monkeypatch.setattr("sys.stdout", sink)
    draw(sink)
    return sink.getvalue()


OTHER = NetnsInfo(inode=4026532999, name="blue", own=False)


@settings(max_examples=80, deadline=None)
@given(st.lists(snapshots(), min_size=1, max_size=3), st.lists(st.text(" abc[]:é", max_size=200), max_size=2),
       st.sampled_from(["", "80", "200", "45"]), st.sampled_from(["", "8", "30"]))
def test_text_equals_the_rich_drawing(snaps: list[Snapshot], notes: list[str], columns: str, lines: str) -> None:
    """Piped (no styles): the same text as every table drawn by rich, also at COLUMNS widths where the table
    does not fit (rich draws it then), with notes, an empty own table and other namespaces' tables. As a
    terminal (FORCE_COLOR, LINES rows): the same styled screenful and plain rest as before."""
    snaps = [snaps[0], *(dataclasses.replace(s, netns=OTHER) for s in snaps[1:])]
    with pytest.MonkeyPatch.context() as mp:
        plain_utc_terminal(mp)
        if lines:
            mp.setenv("FORCE_COLOR", "1")
            mp.setenv("LINES", lines)
            mp.setenv("TERM", "xterm-256color")
            mp.delenv("NO_COLOR")
        if columns:
            mp.setenv("COLUMNS", columns)
        else:
            mp.delenv("COLUMNS", raising=False)
        fast = _captured(mp, lambda s: render_text(snaps, notes, s))
        rich_way = _captured(mp, lambda s: _rich_way(snaps, notes))
    assert fast == rich_way
    assert ("\x1b[" in fast) == bool(lines)  # (a terminal's screenful is rich's, styled)


def test_many_listeners_are_plain_text_and_a_terminal_still_gets_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    owner = Process(pid=4242, command="java", user="app", started_at=T0 - 60, open_fds=5005, fd_limit=20000)
    snap = snapshot(T0, tuple(Listener(4, "127.0.0.1", 20000 + i, i % 3, 128, i % 7, 10 + i, 0, i, owner)
                              for i in range(3000)))
    plain_utc_terminal(monkeypatch)
    monkeypatch.delenv("COLUMNS", raising=False)
    lines = plain_table(snap, 160, "TCP listeners")
    assert lines is not None and len(lines) == 3 + 3000
    assert lines[3].split() == ["20000", "127.0.0.1", "0/128", "··········", "0%", "0", "java", "4242", "5005/20000",
                                lines[3].split()[-4], "(60", "s", "ago)"]
    assert _captured(monkeypatch, lambda s: render_text([snap], [], s)) == \
        _captured(monkeypatch, lambda s: _rich_way([snap], []))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not plain_stream(Tty()) and plain_stream(io.StringIO(), {})
    assert not plain_stream(io.StringIO(), {"FORCE_COLOR": "1"})
    assert not plain_stream(io.StringIO(), {"TTY_COMPATIBLE": "1"})
    assert plain_table(dataclasses.replace(snap, listeners=()), 160, "TCP listeners") is None  # rich draws it


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=6), inner,
                                                                                            max_size=4),
    max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_flat_encoder_writes_json_dumps_text(data: Any) -> None:
    assert dumps_indented(data) == json.dumps(data, indent=2, default=str)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "ü", "x\x00y"]), JSON, max_size=4), max_size=8),
       st.lists(st.lists(JSON, min_size=2, max_size=2), max_size=6))
def test_rows_and_tables_are_written_as_json_dumps_writes_their_dicts(rows: list[dict[str, Any]],
                                                                     cells: list[list[Any]]) -> None:
    """Lists of dicts (runs of the same keys, column by column) and Tables (blocks of columns)."""
    assert dumps_indented({"rows": rows}) == json.dumps({"rows": rows}, indent=2, default=str)
    table = Table([(("k", "v"), [[c[0] for c in cells], [c[1] for c in cells]])]) + Table([((), [])])
    assert table.rows() == [{"k": c[0], "v": c[1]} for c in cells]
    assert dumps_indented([table, 1]) == json.dumps([table.rows(), 1], indent=2, default=str)


def test_flat_encoder_leaves_the_rest_to_json_dumps() -> None:
    shared = {"pid": 1, "f": math.inf}
    odd: list[Any] = [{1: "int key"}, {"when": {1, 2}.__class__.__name__}, shared, [shared, {"again": shared}],
                      {"obj": object.__new__(type("Opaque", (), {"__str__": lambda self: "opaque"}))}, -math.inf, True]
    assert dumps_indented(odd) == json.dumps(odd, indent=2, default=str)
    table = Table([(("when",), [[{3, 4}.__class__, 5]])])  # a value json.dumps writes as str(value)
    assert dumps_indented({"t": table}) == json.dumps({"t": table.rows()}, indent=2, default=str)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        dumps_indented(loop)


@settings(max_examples=100, deadline=None)
@given(snapshots(), st.booleans())
def test_listener_rows_and_json_equal_the_old_rows(snap: Snapshot, other: bool) -> None:
    netns = netns_dict(OTHER) if other else None
    old = snapshot_listeners(snap)
    for row in old:
        if netns is not None:
            row["netns"] = netns_dict(OTHER)
    assert listener_rows(snap, netns) == old
    snaps = [dataclasses.replace(snap, netns=OTHER) if other else snap]
    assert json_text(snaps, ["a note"]) == dumps({"listeners": old, "limitations": ["a note"]}, "listeners")
    assert json.loads(json_text(snaps, []))["listeners"] == json.loads(json.dumps(old))
    assert document("listeners", {})["kind"] == "listeners"


@settings(max_examples=100, deadline=None)
@given(snapshots(), st.data())
def test_owners_attach_as_replace_did(snap: Snapshot, data: st.DataObject) -> None:
    """_with_owners builds each owned listener with the constructor: every field as dataclasses.replace."""
    bare = [dataclasses.replace(x, owner=None) for x in snap.listeners]
    owners = {x.inode: 7 for x in bare if data.draw(st.booleans())}
    proc = Process(pid=7, command="srv", open_fds=3, fd_limit=10)
    got = _with_owners(bare, OwnerScan(owners, 0), lambda pid: proc if pid == 7 else None, [])
    assert got == [dataclasses.replace(x, owner=proc if x.inode in owners else None) for x in bare]
    assert [f.name for f in dataclasses.fields(Listener)][-1] == "owner"  # (the constructor's last argument)


def test_listeners_json_loads_neither_rich_nor_datetime() -> None:
    import subprocess
    import sys
    from pathlib import Path

    proc = str(Path(__file__).parents[1] / "fixtures" / "proc" / "local_6x")
    probe = ("import contextlib, io, sys\nfrom connwatch.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    assert main(['listeners', '--format', 'json', '--proc-root', {proc!r}, '--no-netlink',"
             " '--netns', 'own']) == 0\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'datetime')))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


class _Tty(io.StringIO):
    encoding = "utf-8"  # (StringIO's is None)

    def isatty(self) -> bool:
        return True


@settings(max_examples=60, deadline=None)
@given(st.lists(snapshots(), min_size=1, max_size=3), st.lists(st.text(" abc[]:é", max_size=200), max_size=2),
       st.sampled_from(["80", "200", "45", "120"]), st.sampled_from(["5", "8", "30"]))
def test_terminal_text_equals_richs_without_rich(snaps: list[Snapshot], notes: list[str], columns: str,
                                                 lines: str) -> None:
    """On a colour terminal (a tty, TERM set, nothing forced) the screenful outputs/ansi.py writes without rich
    and the plain rest are byte for byte what rich drew, and the screenful is styled."""
    snaps = [snaps[0], *(dataclasses.replace(s, netns=OTHER) for s in snaps[1:])]
    with pytest.MonkeyPatch.context() as mp:
        plain_utc_terminal(mp)
        mp.delenv("NO_COLOR")
        mp.setenv("TERM", "xterm-256color")
        mp.setenv("COLUMNS", columns)
        mp.setenv("LINES", lines)

        def captured(draw: Any) -> str:
            sink = _Tty()
            mp.setattr("sys.stdout", sink)
            draw(sink)
            return sink.getvalue()

        fast = captured(lambda s: render_text(snaps, notes, s))
        rich_way = captured(lambda s: _rich_way(snaps, notes))
    assert fast == rich_way
    assert "\x1b[1m" in fast  # (the header: bold)


def test_a_terminal_screenful_of_many_listeners_is_written_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    from connwatch.outputs.ansi import dimensions
    from connwatch.outputs.listeners import terminal_table

    owner = Process(pid=4242, command="java", user="app", started_at=T0 - 60, open_fds=5005, fd_limit=20000)
    snap = snapshot(T0, tuple(Listener(4, "127.0.0.1", 20000 + i, i % 3, 128, i % 7, 10 + i, 0, i, owner)
                              for i in range(3000)))
    plain_utc_terminal(monkeypatch)
    monkeypatch.setenv("COLUMNS", "80")
    assert dimensions(_Tty(), {"TERM": "xterm-256color", "LINES": "24"}) == (80, 24)
    lines = terminal_table(snap, 80, 24, "TCP listeners")
    assert lines is not None and len(lines) == 3 + 3000
    assert lines[0].startswith("\x1b[3mTCP listeners") and "\x1b[32m" in lines[3]  # italic title, green bar
    assert "\x1b[" in lines[3 + 19] and "\x1b[" not in lines[3 + 20]  # 20 rows styled (24 - 4), the rest plain
