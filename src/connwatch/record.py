"""Frozen records: the model's dataclasses, made without most of dataclass(frozen=True)'s generated code.

`@record` on a subclass of `Record` gives what `@dataclass(frozen=True, slots=True)` gives: a dataclass
(fields(), asdict(), replace(), is_dataclass()), slots, `__match_args__`, an __init__ taking the fields in
order with their defaults and default factories, immutability (FrozenInstanceError), equality and a hash
over every field (instances of the same class only), the same repr, copy and pickle. dataclasses compiles
six functions per frozen class from generated source (~0.5 ms per class at start-up; the model's classes
stand between every command and its first read of the kernel, issue 17); here one small unit per class is
compiled (__init__, which must stay fast: a Listener is made per listening socket, and the field values
as a tuple), and repr, eq, hash, setattr and delattr are Record's, shared by every record.
mypy sees a frozen dataclass (dataclass_transform). tests/unit/test_record.py compares each model class
with `dataclass(frozen=True, slots=True)` over the same fields.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import FrozenInstanceError, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, dataclass_transform

R = TypeVar("R", bound="Record")


class _Factory:
    """The default shown for a field made by its default factory (as dataclasses shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()
_RESERVED = {"self", "_set", "_missing", "_values"}


class Record:
    """Base of every @record class: the methods dataclass(frozen=True, eq=True) would generate per class."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()  # the field names, set by dataclass

    def _values(self) -> tuple[Any, ...]:  # replaced per class by record(): the fields' values in order
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(self.__match_args__, self._values(), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __getstate__(self) -> tuple[Any, ...]:
        return self._values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__match_args__, state, strict=True):
            object.__setattr__(self, name, value)

    if not TYPE_CHECKING:  # (mypy: the fields are read-only by dataclass_transform; no other name exists)
        def __setattr__(self, name, value):
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name):
            raise FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[R]) -> type[R]:
    """A frozen slotted dataclass of `cls` (a Record subclass; plain fields: no InitVar, init=False,
    kw_only or repr/compare/hash options)."""
    if not issubclass(cls, Record):
        raise TypeError(f"@record: {cls.__name__} must subclass Record")
    documented = cls.__doc__ is not None
    if not documented:  # (else dataclass words one from the signature of object's builtin __init__: a tokenizer
        cls.__doc__ = "-"  # run, ~0.3 ms per class; it is worded below from the record's own __init__)
    made = dataclasses.dataclass(cls, slots=True, init=False, repr=False, eq=False)
    fields = dataclasses.fields(cast(Any, made))
    for f in fields:
        if not (f.init and f.repr and f.compare and f.hash is None and not f.kw_only) or f.name in _RESERVED:
            raise TypeError(f"@record: field {cls.__name__}.{f.name} needs dataclass itself")
    init, values = _methods(made.__qualname__, fields)
    made.__init__ = init  # type: ignore[method-assign]
    made._values = values  # type: ignore[method-assign]
    if not documented:
        made.__doc__ = made.__name__ + str(inspect.signature(made)).replace(" -> None", "")
    return made


def _methods(qualname: str, fields: tuple[dataclasses.Field[Any], ...]) -> tuple[Callable[..., None],
                                                                                   Callable[..., tuple[Any, ...]]]:
    """__init__ (object.__setattr__ per field, as a frozen dataclass's) and _values, compiled together."""
    scope: dict[str, Any] = {"_set": object.__setattr__, "_missing": _FACTORY}
    params, body = ["self"], []
    for i, f in enumerate(fields):
        value = f.name
        if f.default is not dataclasses.MISSING:
            scope[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory{i}"] = f.default_factory
            params.append(f"{f.name}=_missing")
            value = f"_factory{i}() if {f.name} is _missing else {f.name}"
        else:
            params.append(f.name)
        body.append(f"    _set(self, {f.name!r}, {value})")
    names = "".join(f"self.{f.name}, " for f in fields)
    source = (f"def __init__({', '.join(params)}):\n" + "\n".join(body or ["    pass"]) + "\n"
              f"def _values(self):\n    return ({names})\n")
    exec(source, scope)  # our own text, from the class's field names (identifiers)
    init, values = scope["__init__"], scope["_values"]
    init.__qualname__, values.__qualname__ = f"{qualname}.__init__", f"{qualname}._values"
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}  # (as dataclass's: the signature)
    return init, values
