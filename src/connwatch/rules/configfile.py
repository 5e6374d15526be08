"""Reading a small configuration file safely: the agent re-reads it on SIGHUP and must outlive any
file (binary junk, a 5,000-deep array, /dev/zero, a directory, a FIFO). Every refusal is one
ConfigError line `FILE: reason`; nothing here hangs or reads without a bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from connwatch.errors import ConfigError

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a rules file is a few KB


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_small_file(path: str | Path, what: str = "config", max_bytes: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of a regular file of at most max_bytes. O_NONBLOCK so a FIFO opens without waiting
    for a writer (and is then refused as not regular); the read is bounded even if the file grows."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: cannot read {what}: {_kind(mode)}, not a regular file")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    finally:
        os.close(fd)
    if size > max_bytes:
        raise ConfigError(f"{path}: cannot read {what}: larger than {max_bytes // 1024} KiB")
    return b"".join(chunks)


def decode_utf8(data: bytes, path: str | Path, what: str = "config") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x})") from exc


def load_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML document of `path`, or ConfigError (`FILE: reason`, one line)."""
    import tomllib  # (only with a config file: the built-in rules need no parser)

    text = decode_utf8(read_small_file(path), path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"{path}: invalid TOML: {str(exc).split(';')[0]}") from exc
