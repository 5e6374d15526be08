"""Read a pasted file part by part (analyze/segment.py found the parts) into a Capture.

Recognised parts are parsed as their format; a line a parser rejects is cut out and reported with
its line number and the parser's reason, and the rest of the part is used. Unrecognised parts are
reported as skipped with their line range. A file none of whose parts could be used is an error
(exit 3), as an unrecognised file always was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from connwatch.analyze import detect as fmt
from connwatch.analyze.archive import InputChanged
from connwatch.analyze.build import Capture, first_pass, read_file_into
from connwatch.analyze.inputs import InputFile, read_head, slice_cost, slice_file
from connwatch.analyze.rowpass import RowScan
from connwatch.analyze.segment import Part, Segments
from connwatch.errors import ParseError

_COUNTER_KINDS = frozenset({fmt.NETSTAT_S_LINUX, fmt.NETSTAT_S_WINDOWS, fmt.NSTAT, fmt.PROC_NETSTAT, fmt.PROC_SNMP,
                            fmt.SS_SUMMARY, fmt.PROC_SOCKSTAT, fmt.UPTIME})


def read_paste_into(cap: Capture, f: InputFile, segs: Segments, enc: str, scan: RowScan | None = None) -> None:
    """Every part of one plain file; errors and skipped parts are recorded in `cap`, never raised. `scan`:
    the rows of a file that is one connection listing, read in the same pass as its segments."""
    if not any(p.kind for p in segs.parts):
        read_file_into(cap, f, _detect_named(f, enc))  # e.g. a lone /proc/uptime line named `uptime`
        return
    failures: list[str] = []
    used = False
    budget = [WORK_LINES + 4 * max(p.end for p in segs.parts)]
    marks = segs.marks
    for part in segs.parts:
        if part.kind is None:
            _skip(cap, f, part.start, part.end, _why_unrecognised(part))
            continue
        if budget[0] <= 0:
            cap.errors.append(f"{f.name}:{part.start}: too many parts to re-read ({len(segs.parts)} in the paste, "
                              "each read from the nearest mark, every 256 lines, before it): lines "
                              f"{part.start}-{segs.parts[-1].end} were not read; split the file where the commands "
                              "change")
            break
        error = read_part_into(cap, f, enc, part, segs.whole, budget, marks, scan)
        used = used or error is None
        if error is not None:
            failures.append(error)
    if segs.hostname and not cap.hostname:
        cap.hostname = segs.hostname
    if segs.elided:
        cap.notes.append(f"{f.name}: {segs.elided} elided line(s) (`...`) in the paste: the listings are "
                         "incomplete, counts are lower bounds")
    if not used:
        cap.errors.append(failures[0] if failures else f"{f.name}: unrecognised format (not ss, netstat, "
                          "netstat -s, nstat, /proc/net or a connwatch snapshot)")


def _detect_named(f: InputFile, enc: str) -> str | None:
    """Whole-file detection with the file's name as the hint (a lone `350735.47 234388.90` in `uptime`)."""
    try:
        head, _enc = read_head(f)
    except ParseError:
        return None
    return fmt.detect(head.decode(enc, "replace"), Path(f.name).name)


def _why_unrecognised(part: Part) -> str:
    if part.command:
        return f"output of `{part.command[:80]}`: not a format connwatch reads"
    return "text connwatch does not recognise (not the output of a command it reads)"


MAX_CUTS = 20
WORK_LINES = 10_000_000  # line reads for the parts of one file (+ 4 per line; inputs.slice_cost per read of a part)


def read_part_into(cap: Capture, f: InputFile, enc: str, part: Part, whole: bool, budget: list[int],
                   marks: Sequence[tuple[int, int]] = (), scan: RowScan | None = None) -> str | None:
    """Parse lines part.start..part.end of a pasted file as part.kind. A line the parser rejects is cut out
    (reported in cap.skipped_parts with the parser's reason) and the part read again, up to MAX_CUTS times;
    an error that names no line skips the part. None when the part was used, else its first error. `scan`:
    the rows of a whole-file part, already read in the pass that found the parts."""
    start, end, kind = part.start, part.end, part.kind or ""
    cut: dict[int, str] = {}
    first = ""
    while True:
        piece = f if whole and not cut else slice_file(f, enc, start, end, frozenset(cut), marks)
        budget[0] -= slice_cost(marks, start, end, enc)
        try:
            records = first_pass(cap, piece, kind, "utf-8" if piece is not f else enc, scan if piece is f else None)
        except InputChanged as exc:  # not a bad line: the file itself changed or vanished
            cap.errors.append(str(exc))
            return str(exc)
        except ParseError as exc:
            line = exc.line if exc.line is None or piece is f else exc.line + start - 1  # slices count from 1
            first = first or (f"{exc.source}:{line}: {exc.message}" if line is not None else str(exc))
            if line is None or not start <= line <= end or line in cut or len(cut) >= MAX_CUTS or budget[0] <= 0:
                _skip(cap, f, start, end, f"{kind}: {first.split(': ', 1)[-1]}")
                return first
            cut[line] = exc.message
            continue
        break
    for line, reason in sorted(cut.items()):
        _skip(cap, f, line, line, f"{kind}: {reason}")
    if kind in cap.formats and kind in _COUNTER_KINDS:
        cap.notes.append(f"{kind} appears more than once ({cap.kinds_seen.get(kind, '?')}, {piece.label}): the "
                         "later values are used; pass captures taken at different times as separate files with "
                         "--interval for rates")
    cap.formats.add(kind)
    cap.kinds_seen.setdefault(kind, piece.label)
    cap.mtime = max(cap.mtime or 0.0, f.mtime or 0.0) or None
    entry: dict[str, object] = {"path": f.name, "format": kind, "records": records}
    if not whole:
        entry["lines"] = [start, end]
    if part.command:
        entry["command"] = part.command[:200]
    cap.files.append(entry)
    return None


def _skip(cap: Capture, f: InputFile, start: int, end: int, reason: str) -> None:
    if len(cap.skipped_parts) < 200:
        cap.skipped_parts.append({"path": f.name, "lines": [start, end], "reason": reason[:300]})


