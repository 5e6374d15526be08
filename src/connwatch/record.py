"""Frozen records: the model's dataclasses, made without dataclasses.

`@record` on a subclass of `Record` gives what `@dataclass(frozen=True, slots=True)` gives: a dataclass
(fields(), asdict(), replace(), is_dataclass()), slots, `__match_args__`, an __init__ taking the fields in
order with their defaults and default factories, immutability (FrozenInstanceError), equality and a hash
over every compared field (instances of the same class only), the same repr and __doc__, copy and pickle.
dataclasses compiles six functions per frozen class from generated source (~0.5 ms per class), and its
import brings inspect, ast, dis and tokenize (~40 M instructions, a fifth of a command's start-up, issue 17):
the model's classes stand between every command and its first read of the kernel. Here one small unit per
class is compiled (__init__, which must stay fast: a Listener is made per listening socket, and the field
values as a tuple), repr, eq, hash, setattr and delattr are Record's, shared by every record, and the
class's `__dataclass_fields__` are made when dataclasses' own functions first ask for them (dataclasses
loads then). `replace` is dataclasses.replace for records without that import.
mypy sees a frozen dataclass (dataclass_transform). tests/unit/test_record.py compares each record class
with `dataclass(frozen=True, slots=True)` over the same fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import cache
from types import CodeType, FunctionType

# typing is not imported at run time by the modules a command loads before its first read of the kernel
# (~22 M instructions with the Protocols and TypeVars made of it, 12 % of that start-up, issue 17):
# `TYPE_CHECKING = False`, which mypy reads as typing.TYPE_CHECKING, guards what only annotations use,
# and a Protocol is a plain class at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar, dataclass_transform

    R = TypeVar("R", bound="Record")
else:
    def dataclass_transform(**_: object) -> Callable[[Callable[..., object]], Callable[..., object]]:
        return lambda fn: fn  # (typing's marks the function for type checkers only)


class _Missing:
    """No default (dataclasses.MISSING, without dataclasses)."""

    def __repr__(self) -> str:
        return "MISSING"


class _Factory:
    """The default shown for a field made by its default factory (as dataclasses shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_MISSING: Any = _Missing()
_FACTORY = _Factory()
_RESERVED = {"self", "_missing", "_values", "_key"}  # (and the _set, _default and _factory names: see _specs)


class _Spec:
    """What field() says of one field: its default or default factory, and whether eq and hash use it."""

    __slots__ = ("compare", "default", "default_factory")

    def __init__(self, default: Any, default_factory: Any, compare: bool) -> None:
        self.default, self.default_factory, self.compare = default, default_factory, compare


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] = _MISSING, compare: bool = True) -> Any:
    """dataclasses.field for records: a default or a default factory, and compare=False for a field that eq
    and hash leave out (no other options)."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Spec(default, default_factory, compare)


class Record:
    """Base of every @record class: the methods dataclass(frozen=True, eq=True) would generate per class."""

    __slots__ = ()
    if TYPE_CHECKING:
        __match_args__: ClassVar[tuple[str, ...]] = ()  # the field names, set by record()
    else:  # (no annotation at run time: typing.get_type_hints of a record, snapshot_json's, would need ClassVar)
        __match_args__ = ()

    def _values(self) -> tuple[Any, ...]:  # replaced per class by record(): the fields' values in order
        raise NotImplementedError

    def _key(self) -> tuple[Any, ...]:  # replaced per class by record(): the compared fields' values
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(self.__match_args__, self._values(), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __getstate__(self) -> tuple[Any, ...]:
        return self._values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__match_args__, state, strict=True):
            object.__setattr__(self, name, value)

    if not TYPE_CHECKING:  # (mypy: the fields are read-only by dataclass_transform; no other name exists)
        def __setattr__(self, name, value):
            from dataclasses import FrozenInstanceError  # (only when it is raised)

            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name):
            from dataclasses import FrozenInstanceError

            raise FrozenInstanceError(f"cannot delete field {name!r}")


class _Fields:
    """A record class's __dataclass_fields__ or __dataclass_params__, made on first use: dataclasses' own
    functions (fields, asdict, replace, is_dataclass) ask for it, and they have loaded dataclasses."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type) -> Any:
        import dataclasses

        made: Any = next(c for c in owner.__mro__ if "__match_args__" in c.__dict__ and c is not Record)
        specs: tuple[tuple[str, str, _Spec], ...] = made._specs
        shape: Any = dataclasses.make_dataclass(made.__name__, [
            (name, kind, dataclasses.field(
                compare=spec.compare,
                **({"default": spec.default} if spec.default is not _MISSING else
                   {"default_factory": spec.default_factory} if spec.default_factory is not _MISSING else {})))
            for name, kind, spec in specs], frozen=True)
        type.__setattr__(made, "__dataclass_fields__", shape.__dataclass_fields__)
        type.__setattr__(made, "__dataclass_params__", shape.__dataclass_params__)
        return getattr(made, self.name)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[R]) -> type[R]:
    """A frozen slotted dataclass of `cls` (a Record subclass; plain fields with a default, a default factory
    or none, compare=False allowed: no InitVar, KW_ONLY, ClassVar or other dataclass options). A record
    extending records has their fields first, as a dataclass has its bases' (slots for its own only)."""
    if not issubclass(cls, Record):
        raise TypeError(f"@record: {cls.__name__} must subclass Record")
    specs = _specs(cls)
    names = tuple(name for name, _, _ in specs)
    inherited = {n for b in cls.__mro__[1:] for n in b.__dict__.get("__slots__", ())}
    space = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
    space.update(__slots__=tuple(n for n in names if n not in inherited), __match_args__=names, _specs=specs,
                 __dataclass_fields__=_Fields(
        "__dataclass_fields__"), __dataclass_params__=_Fields("__dataclass_params__"))
    meta: Any = type(cls)
    made = meta(cls.__name__, cls.__bases__, space)
    made.__qualname__ = cls.__qualname__
    setters = [next(c.__dict__[n] for c in made.__mro__ if n in c.__dict__).__set__ for n in names]  # (the slots')
    made.__init__, made._values, made._key = _methods(made.__qualname__, specs, setters)
    if cls.__doc__ is None:  # (as dataclass's: the name and inspect.signature's text of __init__)
        made.__doc__ = f"{made.__name__}({', '.join(_shown(name, kind, spec) for name, kind, spec in specs)})"
    out: type[R] = made
    return out


def _specs(cls: type) -> tuple[tuple[str, str, _Spec], ...]:
    """(name, annotation, spec) of each field in order (the base records' first, a field declared again keeping
    its place), checked as dataclass checks them."""
    fields: dict[str, tuple[str, str, _Spec]] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update((f[0], f) for f in base.__dict__.get("_specs", ()))
    own = cls.__dict__.get("__annotations__")  # (inspect.get_annotations would load inspect)  # noqa: RUF063
    for name, kind in (cls.__annotations__ if own is None else own).items():
        text = kind if isinstance(kind, str) else getattr(kind, "__name__", repr(kind))
        value = cls.__dict__.get(name, _MISSING)
        if any(w in text for w in ("ClassVar", "InitVar", "KW_ONLY")) or name in _RESERVED or name.startswith(
                ("_set", "_default", "_factory")) or (
                type(value).__module__ == "dataclasses"):
            raise TypeError(f"@record: field {cls.__name__}.{name} needs dataclass itself")
        spec = value if isinstance(value, _Spec) else _Spec(value, _MISSING, True)
        if spec.default is not _MISSING and type(spec.default).__hash__ is None:
            raise ValueError(f"mutable default {type(spec.default)} for field {name} is not allowed: use "
                             "default_factory")
        fields[name] = (name, kind, spec)
    out = list(fields.values())
    defaulted = False
    for name, _, spec in out:
        has = spec.default is not _MISSING or spec.default_factory is not _MISSING
        if defaulted and not has:
            raise TypeError(f"non-default argument {name!r} follows default argument")
        defaulted = defaulted or has
    return tuple(out)


def _shown(name: str, kind: Any, spec: _Spec) -> str:
    """A parameter as inspect.signature shows it (a string annotation quoted, the default's repr)."""
    text = f"{name}: {kind!r}" if isinstance(kind, str) else f"{name}: {getattr(kind, '__qualname__', kind)}"
    if spec.default is not _MISSING:
        return f"{text} = {spec.default!r}"
    return f"{text} = <factory>" if spec.default_factory is not _MISSING else text


def _methods(qualname: str, specs: tuple[tuple[str, str, _Spec], ...], setters: list[Callable[[Any, Any], None]]
             ) -> tuple[Callable[..., None], Callable[..., tuple[Any, ...]], Callable[..., tuple[Any, ...]]]:
    """__init__, _values and _key. __init__ stores each field through its slot's descriptor, which
    object.__setattr__ (a frozen dataclass's way) finds by name and calls: 0.65x the time of a Listener's
    __init__ (~0.43 against ~0.65 us), made per listening socket. Their code is compiled once per shape (the
    number of fields, which of them have a default factory) and copied per class with the field names in
    (CodeType.replace): a compile per class was ~0.19 ms, 11 of the 20 ms that loading the rules took
    (`check`, issue 17; 76 classes, 26 shapes)."""
    names = tuple(name for name, _, _ in specs)
    scope: dict[str, Any] = {"_missing": _FACTORY, **{f"_set{i}": setter for i, setter in enumerate(setters)}}
    defaults: list[Any] = []
    for i, (_, _, spec) in enumerate(specs):
        if spec.default is not _MISSING:
            defaults.append(spec.default)
        elif spec.default_factory is not _MISSING:
            scope[f"_factory{i}"] = spec.default_factory
            defaults.append(_FACTORY)
    factories = tuple(i for i, (_, _, spec) in enumerate(specs) if spec.default_factory is not _MISSING)
    init: Any = FunctionType(_init_code(len(names), factories).replace(co_varnames=("self", *names)), scope,
                             "__init__", tuple(defaults) or None)
    values = _getter("_values", names, scope)
    compared = tuple(name for name, _, spec in specs if spec.compare)
    key = values if compared == names else _getter("_key", compared, scope)
    init.__qualname__, values.__qualname__ = f"{qualname}.__init__", f"{qualname}._values"
    key.__qualname__ = f"{qualname}.{key.__name__}"
    init.__annotations__ = {**{name: kind for name, kind, _ in specs}, "return": None}  # (as dataclass's)
    return init, values, key


def _getter(name: str, fields: tuple[str, ...], scope: dict[str, Any]) -> Callable[..., tuple[Any, ...]]:
    """`def NAME(self): return (self.FIELD, ...)` for these fields."""
    code = _values_code(len(fields)).replace(co_names=fields, co_name=name, co_qualname=name)
    made: Callable[..., tuple[Any, ...]] = FunctionType(code, scope, name)
    return made


@cache
def _init_code(count: int, factories: tuple[int, ...]) -> CodeType:
    """The code of an __init__ of `count` fields named _p0, _p1, ... (a field with a default factory made
    when its argument is the _missing marker); its globals: _set0, ... (the slots' setters), _factoryI."""
    return _code(init_source(count, factories), shape_name(count, factories), "__init__")


@cache
def _values_code(count: int) -> CodeType:
    """The code of `return (self._f0, self._f1, ...)`: its co_names are the attribute names, in order."""
    return _code(values_source(count), shape_name(count), "_values")


def init_source(count: int, factories: tuple[int, ...], name: str = "__init__") -> str:
    params = "".join(f", _p{i}" for i in range(count))
    body = [f"    _set{i}(self, _factory{i}() if _p{i} is _missing else _p{i})" if i in factories else
            f"    _set{i}(self, _p{i})" for i in range(count)]
    return f"def {name}(self{params}):\n" + "\n".join(body or ["    pass"]) + "\n"


def values_source(count: int, name: str = "_values") -> str:
    return f"def {name}(self):\n    return (" + "".join(f"self._f{i}, " for i in range(count)) + ")\n"


def shape_name(count: int, factories: tuple[int, ...] | None = None) -> str:
    """A shape's function in record_shapes.py: init_N[_I...] (I: the fields with a default factory), values_N."""
    return f"values_{count}" if factories is None else "_".join(map(str, (f"init_{count}", *factories)))


def _code(source: str, shape: str, name: str) -> CodeType:
    """The code of one shape: the function of that name in record_shapes.py, compiled with the package (its
    .pyc), where one is there for it; else compiled from `source` now. Compiling the 23 shapes a `snapshot`
    makes was 9.4 M of its 105.1 M instructions to its first kernel read (callgrind; issue 17), ~6 ms of
    its wall time. Both are the code of the same text (tests/unit/test_record_shapes.py keeps record_shapes.py
    current)."""
    from connwatch import record_shapes

    made = getattr(record_shapes, shape, None)
    if made is not None and isinstance(made, FunctionType):
        return made.__code__.replace(co_name=name, co_qualname=name)
    scope: dict[str, Any] = {}
    exec(source, scope)  # our own text: numbered names only
    function: FunctionType = next(v for k, v in scope.items() if k != "__builtins__")
    return function.__code__.replace(co_name=name, co_qualname=name)


def shapes_source(classes: Iterable[type]) -> str:
    """The text of record_shapes.py: a function per __init__ and _values shape of these record classes."""
    inits: set[tuple[int, tuple[int, ...]]] = set()
    counts: set[int] = set()
    for cls in classes:
        specs: tuple[tuple[str, str, _Spec], ...] = cls.__dict__["_specs"]
        factories = tuple(i for i, (_, _, spec) in enumerate(specs) if spec.default_factory is not _MISSING)
        inits.add((len(specs), factories))
        counts |= {len(specs), sum(1 for _, _, spec in specs if spec.compare)}
    parts = [init_source(n, f, shape_name(n, f)) for n, f in sorted(inits)]
    parts += [values_source(n, shape_name(n)) for n in sorted(counts)]
    return SHAPES_HEADER + "\n\n".join(parts)


SHAPES_HEADER = '''"""The __init__ and _values code of the package's record classes (connwatch.record), by
shape: compiled with the package, not at every start. Generated (record.shapes_source): see
tests/unit/test_record_shapes.py."""
# ruff: noqa
# mypy: ignore-errors

'''


def replace(obj: R, /, **changes: Any) -> R:
    """dataclasses.replace for a record (without loading dataclasses): a copy with `changes`. The values go
    to __init__ by position (every field is a parameter, in field order): 0.5x the time of a dict of every
    field passed by name (~2.0 against ~3.9 us a Finding; a check of 100 namespaces makes ~50,000 copies)."""
    cls = obj.__class__
    values = list(obj._values())
    at = _positions(obj.__match_args__)
    for name, value in changes.items():
        i = at.get(name)
        if i is None:
            raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword argument {name!r}")
        values[i] = value
    return cls(*values)


@cache
def _positions(names: tuple[str, ...]) -> dict[str, int]:
    """Each field's position in the __init__ (and _values) of a record class with these fields."""
    return {name: i for i, name in enumerate(names)}


def values(obj: Record, /) -> tuple[Any, ...]:
    """The fields' values in field order (dataclasses.astuple without its deep copies or that import)."""
    return obj._values()


def items(obj: Record, /) -> Iterator[tuple[str, Any]]:
    """(name, value) of each field in order (as dataclasses.fields and getattr, without that import)."""
    return zip(obj.__match_args__, obj._values(), strict=True)


def asdict(obj: Record, /) -> dict[str, Any]:
    """dataclasses.asdict of a record whose fields hold records, tuples, lists, dicts and plain values (str,
    int, float, bool, None), without loading dataclasses; another value type: dataclasses.asdict itself."""
    try:
        return _asdict(obj)
    except _NotPlain:
        import dataclasses

        shaped: Any = obj  # (a record is shaped as a dataclass for dataclasses' functions)
        return dataclasses.asdict(shaped)


class _NotPlain(Exception):
    """A field value asdict() leaves to dataclasses.asdict (which deep-copies it)."""


_PLAIN = (str, int, float, bool, type(None))


def _asdict(obj: Record) -> dict[str, Any]:
    return {name: _inner(value) for name, value in zip(obj.__match_args__, obj._values(), strict=True)}


def _inner(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, Record):
        return _asdict(value)
    if kind is list or kind is tuple:  # (a named tuple is left to dataclasses: it rebuilds those otherwise)
        return kind(_inner(v) for v in value)
    if kind is dict:
        return {_inner(k): _inner(v) for k, v in value.items()}
    raise _NotPlain

