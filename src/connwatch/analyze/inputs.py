"""Input files: plain files, directories (sosreport trees) and tarballs, opened as streamed text.

Each file can be opened more than once (the builder makes two passes, so the aggregation never
holds a whole file). Text is decoded from UTF-8, UTF-8/UTF-16 with BOM (PowerShell redirection
writes UTF-16) or, failing UTF-8, Latin-1 (Windows OEM/ANSI code pages keep ASCII intact).
"""

from __future__ import annotations

import codecs
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from connwatch.errors import ParseError

HEAD_BYTES = 65536
MAX_WALK_FILES = 200_000


@dataclass(frozen=True)
class InputFile:
    """One file of a capture, re-openable. `name` is what error lines and reports show."""

    name: str
    rel: str  # path inside its directory/tarball ("" for a plain file argument)
    opener: Callable[[], IO[bytes]]
    mtime: float | None = None
    explicit: bool = True  # named on the command line (an unrecognised one is an error)


def _encoding(head: bytes, name: str) -> str:
    if not head.strip():
        raise ParseError(name, "empty file")
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\0" in head:
        raise ParseError(name, "binary file (NUL bytes), not text output")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multibyte char cut by the head limit
            return "latin-1"
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    if controls > len(head) // 100:
        raise ParseError(name, "binary file (control bytes), not text output")
    return "utf-8"


def read_head(f: InputFile) -> tuple[bytes, str]:
    with f.opener() as fh:
        head = fh.read(HEAD_BYTES)
    return head, _encoding(head, f.name)


def iter_lines(f: InputFile, encoding: str) -> Iterator[str]:
    """The file's lines without line ends, streamed; undecodable bytes are a ParseError naming their line."""
    with f.opener() as raw:
        if encoding == "utf-16":  # BOM-marked UTF-16: lines cannot be split as bytes
            yield from (line.rstrip("\r\n") for line in io.TextIOWrapper(raw, encoding=encoding, newline=None))
            return
        if encoding == "utf-8-sig":
            raw.read(len(codecs.BOM_UTF8))
            encoding = "utf-8"
        for number, data in enumerate(raw, start=1):
            try:
                line = data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ParseError(f.name, f"not {encoding} text ({exc.reason} at byte {exc.start})", number) from None
            yield line.rstrip("\r\n")


def _plain(path: Path) -> InputFile:
    return InputFile(str(path), "", lambda: open(path, "rb"), _mtime(path))


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _walk(root: Path) -> list[InputFile]:
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


def _tar(path: Path) -> list[InputFile]:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ParseError(str(path), f"unreadable tarball ({exc})") from None
    return [InputFile(f"{path}:{m.name}", m.name, _member_opener(path, m.name), float(m.mtime), False)
            for m in members]


def _member_opener(path: Path, member: str) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by _Closing)
        fh = tar.extractfile(member)
        if fh is None:
            tar.close()
            raise ParseError(f"{path}:{member}", "not a regular file in the tarball")
        return _Closing(fh, tar)
    return open_member


class _Closing(io.BufferedReader):
    """A tar member stream that closes its archive too."""

    def __init__(self, fh: IO[bytes], tar: tarfile.TarFile) -> None:
        super().__init__(fh)  # type: ignore[arg-type]
        self._tar = tar

    def close(self) -> None:
        super().close()
        self._tar.close()


def is_tarball(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")):
        return True
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def expand(arg: str) -> tuple[list[InputFile], bool]:
    """The files of one command-line argument, and whether it is a whole capture (dir/tarball)."""
    path = Path(arg)
    if not path.exists():
        raise ParseError(arg, "no such file or directory")
    if path.is_dir():
        return _walk(path), True
    if is_tarball(path):
        return _tar(path), True
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ParseError(arg, f"cannot read ({exc.strerror})") from None
    return [_plain(path)], False
