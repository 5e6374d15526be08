"""Command-line arguments -> input files, safely: regular files that are checked for changes at every
open, directories, tarballs read in ONE pass, and FIFOs/devices only when asked (--read-special).

A tarball used to be re-opened (and, compressed, re-decompressed from its start) for every member
and every pass: O(members x size), a sosreport of 2,000 members took over 300 s. Now it is streamed
once (`r|*`); each member's first HEAD_BYTES decide whether analyze could use it (the same detection
as analyze/build.read_file_into), and only those members are copied into a private work directory,
at most MAX_SPOOL bytes in all. The others are kept as empty placeholders, so they are counted as
skipped files exactly as before.

A non-regular file (a FIFO, /dev/zero, a socket, a terminal) can block forever on open or never
end, and cannot be read twice: it is refused unless asked; when asked it is copied once, at most
MAX_SPOOL bytes, and analysed from the copy (`analyze --read-special <(ssh host ss -tan)`).
"""

from __future__ import annotations

import io
import lzma
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from connwatch.analyze import detect as fmt
from connwatch.analyze.hostfacts import sysctl_file
from connwatch.analyze.inputs import HEAD_BYTES, MAX_WALK_FILES, InputFile, encoding_of, is_tarball, walk
from connwatch.errors import ParseError

MAX_SPOOL = 1 << 30  # bytes copied out of one tarball
MAX_SPECIAL = 256 << 20  # bytes read from one non-regular file
MAX_MEMBERS = MAX_WALK_FILES
READ_SPECIAL = "--read-special"  # the option that asks for non-regular files (commands/analyze.py)
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}
_ARCHIVE_MAGIC = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh")  # gzip, xz, bzip2
_CORRUPT = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)


class InputChanged(ParseError):
    """A file that changed (or vanished) after analyze first read it: its passes would disagree."""


@dataclass
class Expanded:
    """The files of one argument; `whole` for a directory or tarball (one capture)."""

    files: list[InputFile]
    whole: bool
    errors: list[str] = field(default_factory=list)


def expand(arg: str, work: Callable[[], Path], special: bool = False) -> Expanded:
    """The files of one command-line argument. `work()` is a private directory for copies."""
    try:
        st = os.stat(arg)
    except OSError as exc:
        raise ParseError(arg, (exc.strerror or "cannot read").lower()) from None
    if stat.S_ISDIR(st.st_mode):
        return Expanded([_checked(f) for f in walk(Path(arg))], True)
    if not stat.S_ISREG(st.st_mode):
        what = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        if not special:
            raise ParseError(arg, f"{what}, not a regular file: it may never end and cannot be read twice; "
                             f"pass {READ_SPECIAL} to read it once (at most {MAX_SPECIAL >> 20} MiB)")
        copy = work() / f"special-{len(list(work().iterdir()))}"
        _spool(arg, copy)
        return expand_regular(arg, copy, work)
    return expand_regular(arg, Path(arg), work)


def expand_regular(name: str, path: Path, work: Callable[[], Path]) -> Expanded:
    if is_tarball(path):
        files, errors = read_tarball(name, path, Path(tempfile.mkdtemp(prefix="tar-", dir=work())))
        return Expanded(files, True, errors)
    return Expanded([checked_file(name, path)], False)


def checked_file(name: str, path: Path, rel: str = "", mtime: float | None = None, explicit: bool = True) -> InputFile:
    """An InputFile whose every open checks that the file is still the one first seen (device, inode,
    size, mtime): a file replaced or rewritten between the two passes is an error, not a mixed report."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ParseError(name, (exc.strerror or "cannot read").lower()) from None
    ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def opener() -> IO[bytes]:
        try:
            fh = open(path, "rb")  # noqa: SIM115 (the caller closes it)
        except OSError as exc:
            raise InputChanged(name, f"{(exc.strerror or 'cannot read').lower()} (it was readable when analyze "
                               "started: changed during the run)") from None
        now = os.fstat(fh.fileno())
        if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != ident:
            fh.close()
            raise InputChanged(name, "changed while analyze was reading it (inode, size or mtime differ from the "
                               "first read): analyse a copy that is not being written")
        return fh

    return InputFile(name, rel, opener, st.st_mtime if mtime is None else mtime, explicit)


def _checked(f: InputFile) -> InputFile:
    """A directory's file with the change check (walk gives plain openers)."""
    return checked_file(f.name, Path(f.name), f.rel, f.mtime, f.explicit)


def read_tarball(name: str, path: Path, work: Path) -> tuple[list[InputFile], list[str]]:
    """The members of a tarball, read in one streamed pass; errors after some members were read are
    returned (the members before are used), a tarball with no readable member is a ParseError."""
    files: dict[str, InputFile] = {}  # by member name: a later member of the same name replaces it (as tar does)
    spooled = [0]
    try:
        with _open_stream(path) as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ParseError(name, f"more than {MAX_MEMBERS} members: not one host's capture")
                if member.isfile():
                    files[member.name] = _member(name, tar, member, work / f"m{count}", spooled)
    except _CORRUPT as exc:
        why = _one_line(exc)
        if not files:
            raise ParseError(name, f"unreadable tarball ({why})") from None
        return list(files.values()), [f"{name}: tarball corrupt after {len(files)} member(s) ({why}): "
                                      "the rest of it was not read"]
    return list(files.values()), []


def _open_stream(path: Path) -> tarfile.TarFile:
    """The tarball opened for one streamed pass. CPython's streamed gzip reader (3.11-3.13,
    tarfile._Stream._init_read_gz) calls ord() on the empty read of a header cut short after its
    third byte, a TypeError: here it is the ReadError it means (fuzz case d778e12125aea54b)."""
    try:
        return tarfile.open(path, "r|*")
    except TypeError:
        raise tarfile.ReadError("gzip header cut short") from None


def _member(name: str, tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, spooled: list[int]) -> InputFile:
    label = f"{name}:{member.name}"
    fh = tar.extractfile(member)
    if fh is None:  # not reached for isfile() members
        return InputFile(label, member.name, _empty, float(member.mtime), False)
    with fh:
        head = fh.read(HEAD_BYTES)
        if not _wanted(head, member.name):
            return InputFile(label, member.name, _empty, float(member.mtime), False)  # counted as skipped
        spooled[0] += _copy(label, head, fh, dest, MAX_SPOOL - spooled[0],
                            f"more than {MAX_SPOOL >> 20} MiB to read from this archive: extract it and analyse "
                            "the directory (or only the files that matter)")
    return checked_file(label, dest, member.name, float(member.mtime), explicit=False)


def _wanted(head: bytes, rel: str) -> bool:
    """Whether analyze/build.read_file_into would read more than the head of this member."""
    base = rel.rsplit("/", 1)[-1]
    if sysctl_file(rel) is not None or base in ("hostname", "date") or _kind_known(rel):
        return True
    try:
        enc = encoding_of(head, rel)
    except ParseError:
        return False
    return fmt.detect(head.decode(enc, "replace"), rel) is not None


def _kind_known(rel: str) -> bool:  # as analyze/build.kind_known: errors in these files are reported
    return rel.startswith(("proc/net/", "net/")) or "/proc/net/" in rel or "sos_commands/networking/" in rel


def _copy(label: str, head: bytes, rest: IO[bytes], dest: Path, room: int, too_big: str) -> int:
    size = len(head)
    with open(dest, "wb") as out:
        out.write(head)
        while chunk := rest.read(1 << 20):
            size += len(chunk)
            if size > room:
                raise ParseError(label, too_big)
            out.write(chunk)
    return size


def _spool(name: str, dest: Path) -> None:
    """Copy a non-regular file once (bounded); binary data that is not an archive stops at its first bytes."""
    try:
        with open(name, "rb") as src:
            head = src.read(HEAD_BYTES)
            if not head.startswith(_ARCHIVE_MAGIC) and head[257:262] != b"ustar":
                encoding_of(head, name)  # ParseError: empty or binary (/dev/zero, /dev/urandom)
            _copy(name, head, src, dest, MAX_SPECIAL, f"more than {MAX_SPECIAL >> 20} MiB read: not one "
                  "command's output (save it to a file and analyse the file)")
    except OSError as exc:
        raise ParseError(name, f"cannot read ({_one_line(exc)})") from None


def _empty() -> IO[bytes]:
    return io.BytesIO(b"")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
