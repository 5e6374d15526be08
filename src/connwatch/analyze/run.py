"""Command-line arguments -> captures -> Analysis. Errors about files are collected, never raised."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from connwatch.analyze import detect as fmt
from connwatch.analyze.archive import expand
from connwatch.analyze.build import Capture, finish, listening_ports, read_file_into
from connwatch.analyze.hostfacts import DEFAULT_RANGES
from connwatch.analyze.inputs import InputFile, iter_line_blocks, read_head
from connwatch.analyze.paste import read_paste_into
from connwatch.analyze.report import Analysis, analyse
from connwatch.analyze.rowpass import FAST_KINDS, Block, Recognised, RowScan, try_fast, young_limit
from connwatch.analyze.segment import Segmenter, Segments
from connwatch.errors import ParseError
from connwatch.model import Snapshot
from connwatch.parsers.conn_rows import PlainBlock
from connwatch.rules.config import Config


def _segments(f: InputFile, guess: Capture | None, interval: float | None) -> tuple[Segments, str, RowScan | None]:
    """The parts of a plain file (ParseError when it is not text at all) and, when the file is one
    connection listing, its rows, read in the same pass. `guess`: the capture it will likely join
    (its listening ports classify the rows; analyze/rowpass.py)."""
    head, enc = read_head(f)
    kind = fmt.detect(head.decode(enc, "replace"))
    seg = Segmenter()
    marks: list[tuple[int, int]] = []
    blocks = iter_line_blocks(f, enc, marks)
    scan = None
    if kind in FAST_KINDS:
        joins = guess is not None and fmt.SNAPSHOT not in guess.formats and (
            interval is None or kind not in guess.formats)
        ports = listening_ports(guess) if guess is not None and joins else set()
        young = young_limit(guess.sysctls.tcp_tw_reuse_delay if guess is not None and joins else None)
        recognised = Recognised(blocks, kind)
        tap = _Tap(iter(recognised), seg)
        scan = try_fast(tap.blocks(), f.name, kind, ports, young, tap.split)
        if tap.failed is not None:
            raise tap.failed
        if tap.block is not None:  # the parser stopped in it
            seg.feed(tap.block.lines if isinstance(tap.block, PlainBlock) else tap.block)
        for part in recognised.pending:  # read but not given to the parser
            seg.feed(part)
    for block in blocks:  # what the row parser did not read (after an error), for the parts
        seg.feed(block)
    segs = seg.finish()
    segs.marks = marks
    if not (segs.whole and segs.parts[0].kind == kind):
        scan = None
    return segs, enc, scan


class _Tap:
    """The blocks of lines for a row parser; each block goes to the segmenter once the parser has read it,
    with the split() the parser made of each line (one split per line for both), or as a PlainBlock."""

    def __init__(self, blocks: Iterator[Block], seg: Segmenter) -> None:
        self.source, self.seg = blocks, seg
        self.split: list[list[str]] = []
        self.block: Block | None = None  # given to the parser, not yet to the segmenter
        self.failed: ParseError | None = None  # reading the file failed

    def blocks(self) -> Iterator[Block]:
        try:
            for block in self.source:
                self.block = block
                yield block
                if isinstance(block, PlainBlock):
                    self.seg.feed_plain(block.lines, block.shapes)
                else:
                    self.seg.feed(block, self.split if len(self.split) == len(block) else None)
                self.split.clear()
                self.block = None
        except ParseError as exc:
            self.failed = exc
            raise


def gather(args: Sequence[str], interval: float | None, work: Callable[[], Path], special: bool = False
           ) -> tuple[list[Capture], list[str]]:
    """Group the arguments into captures of one host, in order.

    A directory or tarball is one capture. Plain files (and the parts of a pasted file) are one
    capture of one host: their data is merged. Only with --interval does a repeated format start a
    new capture (`ss-1.txt nstat-1.txt ss-2.txt nstat-2.txt --interval 60` is two captures 60 s apart);
    without it nothing says the files were taken at different times. `work()` gives a private directory
    for copies (tarball members, --read-special input), removed by the caller.
    """
    captures: list[Capture] = []
    errors: list[str] = []
    loose: Capture | None = None
    for arg in args:
        try:
            got = expand(arg, work, special)
        except ParseError as exc:
            errors.append(str(exc))
            continue
        errors.extend(got.errors)
        files, whole = got.files, got.whole
        if whole:
            cap = Capture(arg)
            for f in files:
                read_file_into(cap, f)
            if not cap.files and not cap.errors and not got.errors:
                cap.errors.append(f"{arg}: no capture in it ({len(files)} regular file(s); none is ss, netstat, "
                                  "netstat -s, nstat, /proc/net or a connwatch snapshot)")
            captures.append(cap)
            loose = None
            continue
        f = files[0]
        try:
            segs, enc, scan = _segments(f, loose, interval)
        except ParseError as exc:
            errors.append(str(exc))
            continue
        kinds = {p.kind for p in segs.parts if p.kind is not None}
        if loose is None or fmt.SNAPSHOT in kinds or fmt.SNAPSHOT in loose.formats or (
                interval is not None and kinds & loose.formats):
            loose = Capture(arg)
            captures.append(loose)
        else:
            loose.name = f"{loose.name} + {arg}" if len(loose.name) < 200 else loose.name
        read_paste_into(loose, f, segs, enc, scan)
    for cap in captures:
        errors.extend(cap.errors)
    return [c for c in captures if c.files], list(dict.fromkeys(errors))


def _check_one_host(captures: list[Capture], snaps: list[Snapshot]) -> list[str]:
    problems = []
    names = {s.host.hostname for c, s in zip(captures, snaps, strict=True) if c.snapshot is not None}
    if len(names) > 1:
        problems.append(f"{captures[-1].name}: captures of different hosts ({', '.join(sorted(names))}): "
                        "analyze one host per invocation")
    platforms = {s.host.platform for s in snaps}
    if len(platforms) > 1:
        problems.append(f"{captures[-1].name}: captures of different platforms ({', '.join(sorted(platforms))}): "
                        "analyze one host per invocation")
    return problems


def run_analysis(args: Sequence[str], config: Config, interval: float | None,
                 port_range: tuple[int, int] | None, somaxconn: int | None,
                 read_special: bool = False) -> tuple[Analysis | None, list[str]]:
    """The analysis of the arguments and the error lines (one per bad file). `read_special` reads FIFOs
    and devices once (otherwise refused: they may never end)."""
    with contextlib.ExitStack() as stack:
        made: list[Path] = []

        def work() -> Path:  # made on first use: only tarballs and --read-special need it
            if not made:
                made.append(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="connwatch-analyze-"))))
            return made[0]

        return _run(args, config, interval, port_range, somaxconn, work, read_special)


def _run(args: Sequence[str], config: Config, interval: float | None, port_range: tuple[int, int] | None,
         somaxconn: int | None, work: Callable[[], Path], read_special: bool) -> tuple[Analysis | None, list[str]]:
    captures, errors = gather(args, interval, work, read_special)
    if not captures:
        return None, errors
    snaps = []
    for cap in captures:
        default = DEFAULT_RANGES.get(cap.platform, DEFAULT_RANGES["linux"])
        snap = finish(cap, port_range or cap.sysctls.ip_local_port_range or default)
        snaps.append(_overrides(snap, cap, port_range, somaxconn))
    errors += [e for e in dict.fromkeys(e for cap in captures for e in cap.errors) if e not in errors]  # pass 2
    problems = _check_one_host(captures, snaps)
    if problems:
        return None, errors + problems
    if len(snaps) > 1 and interval is None and not all(c.timestamped for c in captures):
        captures[-1].notes.append(f"{len(snaps)} captures given but no timestamps: pass --interval SECONDS "
                                  "(time between them) for rates; analysed the last one alone")
        captures, snaps = captures[-1:], snaps[-1:]
    return analyse(captures, snaps, config, interval, errors), errors


def _overrides(snap: Snapshot, cap: Capture, port_range: tuple[int, int] | None, somaxconn: int | None) -> Snapshot:
    sysctls = snap.sysctls
    notes = list(snap.limitations)
    if port_range is not None:
        sysctls = replace(sysctls, ip_local_port_range=port_range)
    elif sysctls.ip_local_port_range is None:
        default = DEFAULT_RANGES.get(snap.host.platform, DEFAULT_RANGES["linux"])
        sysctls = replace(sysctls, ip_local_port_range=default)
        notes.append(f"ephemeral port range not in the capture: assumed the {snap.host.platform} default "
                     f"{default[0]}–{default[1]} (override with --port-range LO-HI)")
    if somaxconn is not None:
        sysctls = replace(sysctls, somaxconn=somaxconn)
    return replace(snap, sysctls=sysctls, limitations=tuple(dict.fromkeys(notes)))
