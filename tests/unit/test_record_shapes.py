"""record_shapes.py (the package's record __init__ and _values code, compiled with the package) is current and
holds what record() would otherwise compile at run time: the same bytecode, names and behaviour."""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from pathlib import Path
from types import FunctionType

import connwatch
from connwatch import record, record_shapes
from connwatch.record import Record, field

REGENERATE = "PYTHONPATH=src:tests/unit python -c 'import test_record_shapes as t; t.write()'"


def _package_records() -> list[type]:
    for info in pkgutil.walk_packages(connwatch.__path__, "connwatch."):
        if not info.name.endswith("__main__"):
            with contextlib.suppress(ImportError):  # (an optional dependency missing: not a start-up's records)
                importlib.import_module(info.name)
    found, todo = [], [Record]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if "_specs" in sub.__dict__ and sub.__module__.startswith("connwatch."):
                found.append(sub)
    return found


def write() -> None:
    Path(record_shapes.__file__).write_text(record.shapes_source(_package_records()))


def test_record_shapes_is_current() -> None:
    text = Path(record_shapes.__file__).read_text()
    assert text == record.shapes_source(_package_records()), f"record_shapes.py is stale: {REGENERATE}"


def test_every_shape_is_the_code_record_would_compile() -> None:
    shapes = {k: v for k, v in vars(record_shapes).items() if isinstance(v, FunctionType)}
    assert len(shapes) > 20
    for name, function in shapes.items():
        count, *factories = (int(x) for x in name.split("_")[1:])
        source = record.values_source(count) if name.startswith("values_") else record.init_source(
            count, tuple(factories))
        scope: dict[str, object] = {}
        exec(source, scope)
        compiled = next(v for k, v in scope.items() if isinstance(v, FunctionType))
        ours, theirs = function.__code__, compiled.__code__
        assert (ours.co_code, ours.co_names, ours.co_varnames, ours.co_consts, ours.co_argcount) == (
            theirs.co_code, theirs.co_names, theirs.co_varnames, theirs.co_consts, theirs.co_argcount), name


def test_package_records_take_their_code_from_the_module_and_new_shapes_still_compile() -> None:
    from connwatch.model import Listener

    assert Listener.__init__.__code__.co_filename == record_shapes.__file__
    assert Listener.__init__.__code__.co_name == "__init__" and Listener._values.__code__.co_name == "_values"

    @record.record
    class Wide(Record):  # a shape no record of the package has (27 fields, factories at 3 and 26)
        f0: int
        f1: int = 1
        f2: int = 2
        f3: list[int] = field(default_factory=list)
        f4: int = 4
        f5: int = 5
        f6: int = 6
        f7: int = 7
        f8: int = 8
        f9: int = 9
        f10: int = 10
        f11: int = 11
        f12: int = 12
        f13: int = 13
        f14: int = 14
        f15: int = 15
        f16: int = 16
        f17: int = 17
        f18: int = 18
        f19: int = 19
        f20: int = 20
        f21: int = 21
        f22: int = 22
        f23: int = 23
        f24: int = 24
        f25: int = 25
        f26: list[int] = field(default_factory=list, compare=False)

    assert record.shape_name(27, (3, 26)) not in vars(record_shapes)
    a, b = Wide(0), Wide(0, f26=[1])
    assert a == b and a.f3 == [] and a.f3 is not Wide(0).f3 and b.f26 == [1] and a.f25 == 25
    assert Wide.__init__.__code__.co_filename == "<string>" and Wide.__init__.__code__.co_name == "__init__"
