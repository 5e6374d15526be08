"""json.dumps(data, indent=2, default=str)'s text, written faster for thousands of rows.

json's C encoder runs only without indent; indented, every value goes through Python (~90 ms for the
5,000 rows of `connwatch listeners --format json`). Here rows are written column by column: a column
of plain values (str, int, float, bool, None) by the C encoder in one call, items apart by NUL (its
ASCII output writes a NUL in a string as \\u0000, so a NUL only ever separates items); a dict met again
(the same object, an owner shared by its listeners) is written once per depth. Anything else (a key
that is not a str, another type) makes the whole document go to json.dumps itself.
tests/unit/test_listeners_out.py compares the texts on fuzzed documents.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

_PLAIN = frozenset((str, int, float, bool, type(None)))  # what the C encoder writes as the indenting one does
_SEP = "\x00"
_FLAT = json.JSONEncoder(separators=(_SEP, ": "))


class Table:
    """A JSON array of objects held as blocks of columns: [(keys, columns)], each column a value per row.
    Written as the list of dicts rows() gives."""

    __slots__ = ("blocks",)

    def __init__(self, blocks: list[tuple[tuple[str, ...], list[list[Any]]]]) -> None:
        self.blocks = blocks

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(keys, row, strict=True)) for keys, columns in self.blocks
                for row in zip(*columns, strict=True)]

    def __add__(self, other: Table) -> Table:
        return Table(self.blocks + other.blocks)


class _Unsupported(Exception):
    """A value the encoder leaves to json.dumps."""


def dumps_indented(data: Any) -> str:
    """json.dumps(data, indent=2, default=str), a Table written as its rows()."""
    try:
        return _Encoder().encode(data, 0)
    except (_Unsupported, RecursionError):
        return json.dumps(data, indent=2, default=_default)


def _default(value: Any) -> Any:
    return value.rows() if isinstance(value, Table) else str(value)


class _Encoder:
    def __init__(self) -> None:
        self.memo: dict[tuple[int, int], str] = {}
        self.keep: list[object] = []  # (what memo's ids name stays alive)
        self.keys: dict[str, str] = {}

    def encode(self, value: Any, depth: int) -> str:
        if isinstance(value, dict):
            return self._dict(value, depth)
        if isinstance(value, (list, tuple, Table)):
            items = self._items(value, depth + 1)
            if not items:
                return "[]"
            pad = "\n" + "  " * (depth + 1)
            return "[" + pad + ("," + pad).join(items) + "\n" + "  " * depth + "]"
        return _scalar(value)

    def _items(self, value: Sequence[Any] | Table, depth: int) -> list[str]:
        if isinstance(value, Table):
            return [text for keys, columns in value.blocks for text in self._objects(keys, columns, depth)]
        if value and all(type(v) is dict for v in value):  # rows: written by runs of the same keys
            out: list[str] = []
            start = 0
            while start < len(value):
                keys = tuple(value[start])
                end = start + 1
                while end < len(value) and len(value[end]) == len(keys) and tuple(value[end]) == keys:
                    end += 1
                run = value[start:end]
                out += self._objects(keys, [list(c) for c in zip(*(d.values() for d in run), strict=True)]
                                     if keys else [], depth, len(run))
                start = end
            return out
        return [self.encode(v, depth) for v in value]

    def _objects(self, keys: tuple[Any, ...], columns: list[list[Any]], depth: int, count: int = 0) -> list[str]:
        """Each row's object at `depth` (count: the rows of an empty `keys`)."""
        if not keys:
            return ["{}"] * count
        pad = "\n" + "  " * (depth + 1)
        parts = [self._column(column, depth + 1) for column in columns]
        # One %-template per object: each row's text in one formatting (0.6x the time of joining the
        # key-prefixed pieces per row: 15,700 measurements of 9-11 keys in a check of 100 namespaces).
        literal = ("," + pad).join(self._key(key).replace("%", "%%") + "%s" for key in keys)
        template = "{" + pad + literal + "\n" + "  " * depth + "}"
        return list(map(template.__mod__, zip(*parts, strict=True)))

    def _column(self, column: list[Any], depth: int) -> list[str]:
        if set(map(type, column)) <= _PLAIN:
            parts = _FLAT.encode(column)[1:-1].split(_SEP) if column else []
            if len(parts) != len(column):
                raise _Unsupported(len(parts))
            return parts
        distinct = {id(v): v for v in column}
        texts = {key: self.encode(v, depth) for key, v in distinct.items()}
        return list(map(texts.__getitem__, map(id, column)))

    def _dict(self, value: dict[Any, Any], depth: int) -> str:
        if not value:
            return "{}"
        key = (id(value), depth)
        known = self.memo.get(key)
        if known is None:
            known = self.memo[key] = self._objects(tuple(value), [[v] for v in value.values()], depth)[0]
            self.keep.append(value)
        return known

    def _key(self, k: Any) -> str:
        name = self.keys.get(k) if type(k) is str else None
        if name is None:
            if not isinstance(k, str):
                raise _Unsupported(k)
            name = self.keys[k] = json.encoder.encode_basestring_ascii(k) + ": "
        return name


def _scalar(v: Any) -> str:
    """A value as json.JSONEncoder writes it (ensure_ascii, allow_nan)."""
    if isinstance(v, str):
        return json.encoder.encode_basestring_ascii(v)  # type: ignore[no-any-return,unused-ignore]
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        if math.isfinite(v):
            return float.__repr__(v)
        return "NaN" if v != v else "Infinity" if v > 0 else "-Infinity"
    raise _Unsupported(v)
