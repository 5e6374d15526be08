"""Input files: plain files, directories (sosreport trees) and tarballs, opened as streamed text.

Each file can be opened more than once (the builder makes two passes, so the aggregation never
holds a whole file). Text is decoded from UTF-8, UTF-8/UTF-16 with BOM (PowerShell redirection
writes UTF-16; without BOM it is told by its NUL bytes) or, failing UTF-8, a Windows code page:
cp850 (the console's OEM page, what `netstat > file` writes on a German/French/Spanish Windows)
when that reads the non-ASCII bytes as more letters, else cp1252 (the ANSI page, what editors
save). Lines longer than MAX_LINE bytes are a ParseError: no command this reads prints such lines,
and the cap bounds memory.
"""

from __future__ import annotations

import bisect
import codecs
import io
import itertools
import os
import tarfile
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from connwatch.errors import ParseError

HEAD_BYTES = 65536
MAX_WALK_FILES = 200_000
MAX_LINE = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One file of a capture, re-openable. `name` is what error lines and reports show."""

    name: str
    rel: str  # path inside its directory/tarball ("" for a plain file argument)
    opener: Callable[[], IO[bytes]]
    mtime: float | None = None
    explicit: bool = True  # named on the command line (an unrecognised one is an error)
    lines: tuple[int, int] | None = None  # a part of a pasted file: its first and last line

    @property
    def label(self) -> str:
        return f"{self.name} (lines {self.lines[0]}-{self.lines[1]})" if self.lines else self.name


def _encoding(head: bytes, name: str) -> str:
    if not head.strip():
        raise ParseError(name, "empty file")
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    bom_less = _utf16_without_bom(head)
    if bom_less:
        return bom_less
    if b"\0" in head:
        raise ParseError(name, "binary file (NUL bytes), not text output")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multibyte char cut by the head limit
            return _codepage(head)
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    if controls > len(head) // 100:
        raise ParseError(name, "binary file (control bytes), not text output")
    return "utf-8"


def _codepage(head: bytes) -> str:
    """cp850 or cp1252, whichever turns the non-ASCII bytes into more letters (ö, é, ñ, not ÷, ¢)."""
    def letters(encoding: str) -> int:
        text = head.decode(encoding, "replace")
        return sum(1 for c in text if ord(c) > 127 and c.isalpha())
    return "cp850" if letters("cp850") > letters("cp1252") else "cp1252"


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text of ASCII-range output has a NUL in every other byte."""
    sample = head[:4096]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > len(odd) * 0.9 and even.count(0) < len(even) * 0.1:
        return "utf-16-le"
    if even.count(0) > len(even) * 0.9 and odd.count(0) < len(odd) * 0.1:
        return "utf-16-be"
    return None


def encoding_of(head: bytes, name: str) -> str:
    """The text encoding of a file from its first bytes; ParseError when it is empty or binary."""
    return _encoding(head, name)


def read_head(f: InputFile) -> tuple[bytes, str]:
    with f.opener() as fh:
        head = fh.read(HEAD_BYTES)
    return head, _encoding(head, f.name)


MARK_EVERY = 256  # a (line, byte offset) mark every this many lines lets a part be read without its file's start


def iter_lines(f: InputFile, encoding: str, marks: list[tuple[int, int]] | None = None) -> Generator[str, None, None]:
    """The file's lines without line ends, streamed; undecodable bytes are a ParseError naming their line.
    `marks` (byte encodings only) collects (line number, byte offset of that line) every MARK_EVERY lines."""
    for block in iter_line_blocks(f, encoding, marks):
        yield from block


def iter_line_blocks(f: InputFile, encoding: str, marks: list[tuple[int, int]] | None = None
                     ) -> Generator[list[str], None, None]:
    """iter_lines a block of lines at a time (at most about BLOCK bytes of text each)."""
    with f.opener() as raw:
        if encoding.startswith("utf-16"):  # lines cannot be split as bytes
            yield from _utf16_blocks(raw, f.name, encoding)
            return
        pos = 0
        if encoding == "utf-8-sig":
            pos = len(raw.read(len(codecs.BOM_UTF8)))
            encoding = "utf-8"
        yield from _byte_blocks(raw, f.name, encoding, pos, marks)


def _mark(marks: list[tuple[int, int]], pieces: list[bytes], number: int, pos: int) -> None:
    """Marks for the lines `pieces` (numbered from number + 1, the first at byte `pos`)."""
    first = number + 1
    need = first + (-(first - 1)) % MARK_EVERY  # the next line number L with (L - 1) % MARK_EVERY == 0
    if need - first >= len(pieces):
        return
    offsets = list(itertools.accumulate(map(len, pieces), initial=pos))  # + 1 per newline, added below
    marks.extend((line, offsets[line - first] + line - first) for line in range(need, first + len(pieces), MARK_EVERY))


def _crlf_lines(text: str) -> tuple[list[str], int]:
    """What rstrip("\\r\\n") leaves of each line of `text` (lines without a loop over them), and the bytes
    each line ends with in the file when that is the same for every line (2: CRLF on each line, the last
    one's LF cut off before decoding; 0: not the same)."""
    lines = text.split("\r\n")
    if lines[-1][-1:] == "\r" and text.count("\r") == len(lines) and text.count("\n") == len(lines) - 1:
        lines[-1] = lines[-1][:-1]
        return lines, 2
    while "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return text.rstrip("\r").split("\n"), 0


def _mark_lines(marks: list[tuple[int, int]], lines: list[str], ends: int, number: int, pos: int) -> None:
    """_mark from the decoded lines (each len(line) + `ends` bytes long in the file): a sum per MARK_EVERY
    lines, not a bytes object per line."""
    first = number + 1
    at = (-(first - 1)) % MARK_EVERY  # index of the first line numbered L with (L - 1) % MARK_EVERY == 0
    if at >= len(lines):
        return
    offset = pos + sum(map(len, lines[:at])) + at * ends
    for index in range(at, len(lines), MARK_EVERY):
        marks.append((first + index, offset))
        offset += sum(map(len, lines[index:index + MARK_EVERY])) + MARK_EVERY * ends


BLOCK = 1 << 18  # bytes read and decoded at a time (and the lines of a block held by the one pass)


def _utf16_blocks(raw: IO[bytes], name: str, encoding: str) -> Iterator[list[str]]:
    text = io.TextIOWrapper(raw, encoding=encoding, newline=None, errors="replace")
    number = 0
    block: list[str] = []
    while line := text.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE:
            yield block
            raise ParseError(name, f"line longer than {MAX_LINE} characters: not command output", number)
        block.append(line.rstrip("\r\n"))
        if len(block) >= 4096:
            yield block
            block = []
    yield block


def _byte_blocks(raw: IO[bytes], name: str, encoding: str, pos: int, marks: list[tuple[int, int]] | None
                 ) -> Iterator[list[str]]:
    """Lines of an 8-bit or UTF-8 stream, read and decoded a block at a time (one decode per block, not per
    line). Errors are those of reading line by line, at the same line: the lines before it are yielded."""
    errors = "replace" if encoding.startswith("cp") else "strict"
    number = 0
    tail = b""
    while block := raw.read(BLOCK):
        data = tail + block if tail else block
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if cut:
            body = data[:cut - 1]
            try:
                text = body.decode(encoding, errors)
                long = max(map(len, body.split(b"\n"))) >= MAX_LINE if len(body) >= MAX_LINE else False
            except UnicodeDecodeError:
                text, long = "", True
            if long:
                if marks is not None:
                    _mark(marks, body.split(b"\n"), number, pos)
                good, error = _line_by_line(body.split(b"\n"), name, encoding, number)
                yield good
                raise error or ParseError(name, "unreadable text", number + 1)  # (error is never None here)
            lines, ends = _crlf_lines(text) if "\r" in text else (text.split("\n"), 1)
            if marks is not None:
                if ends and len(text) == len(body):  # one byte per character: lengths are byte counts
                    _mark_lines(marks, lines, ends, number, pos)
                else:
                    _mark(marks, body.split(b"\n"), number, pos)
                pos += cut
            number += len(lines)
            yield lines
        if len(tail) > MAX_LINE:  # readline(MAX_LINE + 1) would have stopped in this line
            raise ParseError(name, f"line longer than {MAX_LINE} bytes: not command output", number + 1)
    if tail:
        if marks is not None:
            _mark(marks, [tail], number, pos)
        good, error = _line_by_line([tail], name, encoding, number, last=True)
        yield good
        if error is not None:
            raise error


def _line_by_line(pieces: list[bytes], name: str, encoding: str, before: int, last: bool = False
                  ) -> tuple[list[str], ParseError | None]:
    """The lines of a block read one by one: those before the first bad one, and its error (a line of
    MAX_LINE bytes or more with its newline is longer than readline(MAX_LINE + 1) reads)."""
    errors = "replace" if encoding.startswith("cp") else "strict"
    good: list[str] = []
    for index, piece in enumerate(pieces, start=before + 1):
        if len(piece) > MAX_LINE or (len(piece) == MAX_LINE and not last):
            return good, ParseError(name, f"line longer than {MAX_LINE} bytes: not command output", index)
        try:
            good.append(piece.decode(encoding, errors).rstrip("\r\n"))
        except UnicodeDecodeError as exc:
            return good, ParseError(name, f"not {encoding} text ({exc.reason} at byte {exc.start})", index)
    return good, None


def _byte_lines(raw: IO[bytes], encoding: str, name: str, first: int, pos: int,
                marks: list[tuple[int, int]] | None) -> Generator[str, None, None]:
    """Lines of `raw` from byte offset `pos`, which is the start of line `first`."""
    for number, data in enumerate(iter(lambda: raw.readline(MAX_LINE + 1), b""), start=first):
        if marks is not None and (number - 1) % MARK_EVERY == 0:
            marks.append((number, pos))
        pos += len(data)
        if len(data) > MAX_LINE:
            raise ParseError(name, f"line longer than {MAX_LINE} bytes: not command output", number)
        try:
            line = data.decode(encoding, "replace" if encoding.startswith("cp") else "strict")
        except UnicodeDecodeError as exc:
            raise ParseError(name, f"not {encoding} text ({exc.reason} at byte {exc.start})", number) from None
        yield line.rstrip("\r\n")


def slice_file(f: InputFile, encoding: str, start: int, end: int, blanked: frozenset[int] = frozenset(),
               marks: Sequence[tuple[int, int]] = ()) -> InputFile:
    """Lines start..end of `f` as a UTF-8 file of its own, numbered from 1: line k of the slice is line
    start+k-1 of `f` (`blanked` lines, numbered in `f`, read as blank). With `marks` from iter_lines the
    slice seeks to the nearest mark before `start`, so reading every part of a paste stays linear in its
    size (at most MARK_EVERY lines are skipped per open); without, it reads `f` from its first line."""
    def open_slice() -> IO[bytes]:
        return io.BufferedReader(_ChunkReader(_slice_chunks(f, encoding, start, end, blanked, marks)))
    return InputFile(f.name, f.rel, open_slice, f.mtime, f.explicit, (start, end))


def _slice_chunks(f: InputFile, encoding: str, start: int, end: int, blanked: frozenset[int],
                  marks: Sequence[tuple[int, int]]) -> Iterator[bytes]:
    lines = _lines_from(f, encoding, start, marks)
    try:
        for number, line in lines:
            if number > end:
                break
            if number >= start:
                yield b"\n" if number in blanked else line.encode("utf-8", "replace") + b"\n"
    finally:
        lines.close()


def _mark_before(marks: Sequence[tuple[int, int]], start: int, encoding: str) -> tuple[int, int]:
    """(line, byte offset) to start reading at for a slice from `start`: the last mark at or before it."""
    at = bisect.bisect_right(marks, (start, 1 << 62)) - 1
    return (1, 0) if at < 0 or encoding.startswith("utf-16") else marks[at]


def slice_cost(marks: Sequence[tuple[int, int]], start: int, end: int, encoding: str) -> int:
    """Lines read to open a slice start..end once."""
    return end - _mark_before(marks, start, encoding)[0] + 1


def _lines_from(f: InputFile, encoding: str, start: int, marks: Sequence[tuple[int, int]]
                ) -> Generator[tuple[int, str], None, None]:
    """(number, line) pairs of `f` from the last mark at or before `start` (from line 1 without one)."""
    first, pos = _mark_before(marks, start, encoding)
    if first == 1:
        yield from enumerate(iter_lines(f, encoding), start=1)
        return
    with f.opener() as raw:
        raw.seek(pos)
        yield from enumerate(_byte_lines(raw, "utf-8" if encoding == "utf-8-sig" else encoding, f.name, first, pos,
                                         None), start=first)


class _ChunkReader(io.RawIOBase):
    """A raw byte stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = chunk
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def walk(root: Path) -> list[InputFile]:
    """The regular files under a directory (symlinks and special files are not followed)."""
    out: list[InputFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            out.append(InputFile(str(path), str(path.relative_to(root)), _opener(path), _mtime(path), False))
            if len(out) > MAX_WALK_FILES:
                raise ParseError(str(root), f"more than {MAX_WALK_FILES} files: not one host's capture")
    return out


def _opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: open(path, "rb")


def is_tarball(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")):
        return True
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, ValueError, tarfile.TarError):  # unreadable: not taken as a tarball
        return False
