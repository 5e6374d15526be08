"""json.dumps(value, indent=2, default=str)'s text without the json package: jsonout.dumps (the JSON of
`snapshot`, `alerts` and the reports), whose documents are plain dicts, lists and scalars.

The json package's import (its decoder and scanner, and `re` with them) was 5.4 M instructions; with the
parsers' expressions (parsers/numbers.py), 9.1 M of a `snapshot`'s first kernel read and 16 M of its whole
process at 35k sockets (callgrind, issue 17). json's indenting encoder runs in Python value by value anyway
(its C encoder writes no indent). Here: json.encoder's order of type tests (_make_iterencode), strings by
_json's C encode_basestring_ascii (json's own, ensure_ascii), floats as json writes them (NaN, Infinity).
What this writer does not know the way to (a key json refuses, a cycle) goes to json.dumps itself.
tests/unit/test_jsontext.py compares the texts on fuzzed documents.
"""

from __future__ import annotations

from _json import encode_basestring_ascii as _string

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: see connwatch.record)
if TYPE_CHECKING:
    from typing import Any

_INF = float("inf")


class _Unsupported(Exception):
    """A key json.dumps would refuse: its error is json's to raise."""


def dumps(value: Any) -> str:
    """json.dumps(value, indent=2, default=str)."""
    out: list[str] = []
    try:
        _write(value, out, "\n")
    except (_Unsupported, RecursionError):
        import json

        return json.dumps(value, indent=2, default=str)
    return "".join(out)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INF:
        return "Infinity"
    return "-Infinity" if value == -_INF else float.__repr__(value)


def _scalar(value: Any) -> str | None:
    """The text of a str, None, bool, int or float, as json writes it (in its order of tests); None else."""
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    return None


def _key(key: Any) -> str:
    """A dict key as json makes it a string (json.encoder: str, float, True, False, None, int; else TypeError)."""
    if isinstance(key, str):
        return _string(key)
    if isinstance(key, float):
        return _string(_float(key))
    if key is True or key is False or key is None:
        return _string({True: "true", False: "false", None: "null"}[key])
    if isinstance(key, int):
        return _string(int.__repr__(key))
    raise _Unsupported(type(key).__name__)


def _write(value: Any, out: list[str], pad: str) -> None:
    """Append `value`'s text; `pad`: a newline and the indent of the level `value` is at."""
    text = _scalar(value)
    if text is not None:
        out.append(text)
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = pad + "  "
        out.append("[")
        for i, item in enumerate(value):
            out.append("," + inner if i else inner)
            _write(item, out, inner)
        out.append(pad + "]")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = pad + "  "
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," + inner if i else inner) + _key(key) + ": ")
            _write(item, out, inner)
        out.append(pad + "}")
    else:  # (default=str: the object's str, written as a string)
        _write(str(value), out, pad)
