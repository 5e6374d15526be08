"""connwatch.record (issue 17): each model class made by @record behaves as the dataclass(frozen=True,
slots=True) of the same fields would: signature and defaults, repr, equality, hash, immutability, slots,
fields()/asdict()/replace(), copy and pickle. So do the facts, measurements, findings and rules that
`check` builds after its first sample (they were dataclasses: ~0.5 ms each to make at every start)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from typing import Any

import pytest

from connwatch import collect, collect_filtered, collect_netns, collect_quiet, engine, findings, model
from connwatch.attributes import (
    accept_facts,
    accept_model,
    backlog_facts,
    ephemeral,
    ephemeral_facts,
    hostlimits_facts,
    registry,
    rejects,
    sources,
    sources_facts,
)
from connwatch.record import Record, asdict, field, items, record, replace, values
from connwatch.rules import config, rule
from connwatch.rules import sources as rule_sources
from connwatch.sources import hostlimits, processes

MODEL: list[Any] = [c for c in vars(model).values()
                    if isinstance(c, type) and issubclass(c, Record) and c is not Record]
OTHERS: list[Any] = [engine.CheckResult, engine._Step, registry.Need, registry.AttributeSpec, registry.Subject,
                     collect_netns.NetnsSelector, collect.CollectOptions, collect_filtered._TimeWaitPlan,
                     collect_quiet.QuietSignals, processes.OwnerScan, hostlimits.HostLimits]
JUDGING = (accept_facts, accept_model, backlog_facts, ephemeral, ephemeral_facts, hostlimits_facts, rejects, sources,
           sources_facts, findings, config, rule, rule_sources)
FACTS: list[Any] = [c for m in JUDGING for c in vars(m).values()
                    if isinstance(c, type) and issubclass(c, Record) and c.__module__ == m.__name__]


def _reference(cls: type) -> Any:
    """The same fields as a plain frozen slotted dataclass (the model's classes as they were)."""
    spec = []
    for f in dataclasses.fields(cls):
        kw: dict[str, Any] = {"default": f.default} if f.default is not dataclasses.MISSING else {}
        if f.default_factory is not dataclasses.MISSING:
            kw = {"default_factory": f.default_factory}
        spec.append((f.name, f.type, dataclasses.field(**kw, compare=f.compare)))
    return dataclasses.make_dataclass(cls.__name__, spec, frozen=True, slots=True)


def _slots(cls: type) -> tuple[str, ...]:
    """Every slot of the class and its bases (a subclass's __slots__ holds its own fields only)."""
    return tuple(name for c in reversed(cls.__mro__) for name in c.__dict__.get("__slots__", ()))


def test_every_model_dataclass_is_a_record() -> None:
    assert len(MODEL) == 14
    plain = [c for c in vars(model).values() if dataclasses.is_dataclass(c) and c not in MODEL]
    assert plain == [], plain


def test_the_judging_dataclasses_are_records() -> None:
    assert len(FACTS) == 48
    plain = {c.__name__ for m in JUDGING for c in vars(m).values()
             if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == m.__name__ and c not in FACTS}
    assert plain == set()


@pytest.mark.parametrize("cls", MODEL + OTHERS + FACTS, ids=lambda c: c.__name__)
def test_a_record_behaves_as_the_frozen_dataclass_of_its_fields(cls: Any) -> None:
    ref = _reference(cls)
    assert str(inspect.signature(cls)) == str(inspect.signature(ref))
    assert cls.__match_args__ == ref.__match_args__ and _slots(cls) == ref.__slots__
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    args = {name: f"value {i}" for i, name in enumerate(required)}
    a, r = cls(**args), ref(**args)  # the defaults and default factories
    assert repr(a) == repr(r) and dataclasses.asdict(a) == dataclasses.asdict(r)
    full = {f.name: (i, f.name) for i, f in enumerate(dataclasses.fields(cls))}
    b, s = cls(*full.values()), ref(*full.values())  # positional, in field order
    assert repr(b) == repr(s) and dataclasses.astuple(b) == dataclasses.astuple(s)
    assert asdict(b) == dataclasses.asdict(s) and asdict(a) == dataclasses.asdict(r)
    assert values(b) == tuple(full.values()) and dict(items(b)) == full
    assert hash(b) == hash(s) and hash(b) == hash(cls(**full))
    assert b == cls(**full) and b != a and b != s and (b == s) is (s == b) is False  # one class only
    assert b.__eq__(s) is NotImplemented and not hasattr(b, "__dict__")
    first = dataclasses.fields(cls)[0].name
    for name, how in ((first, "set"), (first, "del"), ("other", "set")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(b, name, 1) if how == "set" else delattr(b, name)
    changed = dataclasses.replace(b, **{first: "changed"})
    assert getattr(changed, first) == "changed" and getattr(b, first) == full[first]
    assert replace(b, **{first: "changed"}) == changed and replace(b) == b and replace(b) is not b
    if cls.__doc__.startswith(f"{cls.__name__}("):  # a class without a docstring: dataclass's
        assert cls.__doc__ == ref.__doc__
    assert pickle.loads(pickle.dumps(b)) == b and copy.deepcopy(b) == b and copy.copy(b) == b
    with pytest.raises(TypeError):
        cls(**args, not_a_field=1)


def test_a_field_default_factory_runs_per_instance_and_a_given_value_is_kept() -> None:
    one, two = model.SourceTable(), model.SourceTable()
    assert one.by_port == {} and one.by_port is not two.by_port
    table = {80: {b"\x7f\x00\x00\x01": 1}}
    assert model.SourceTable(table).by_port is table


def test_what_record_cannot_copy_from_dataclass_is_refused() -> None:
    class Plain:
        x: int

    with pytest.raises(TypeError, match="must subclass Record"):
        record(Plain)  # type: ignore[type-var]

    class Hidden(Record):
        x: int = dataclasses.field(default=0, repr=False)

    with pytest.raises(TypeError, match="needs dataclass itself"):
        record(Hidden)


def test_a_field_left_out_of_the_comparison_is_left_out_of_eq_and_hash_as_in_dataclass() -> None:
    @record
    class Options(Record):
        name: str
        cache: list[int] | None = field(default=None, compare=False)

    ref = dataclasses.make_dataclass("Options", [("name", "str"), ("cache", "list[int] | None", dataclasses.field(
        default=None, compare=False))], frozen=True, slots=True)
    one, two = Options("a", [1]), Options("a", [2])
    assert one == two and hash(one) == hash(two) == hash(ref("a", [1])) and one != Options("b", [1])
    assert repr(one) == "test_a_field_left_out_of_the_comparison_is_left_out_of_eq_and_hash_as_in_dataclass." \
        "<locals>.Options(name='a', cache=[1])"
    assert [f.compare for f in dataclasses.fields(Options)] == [True, False]
    assert Options.__doc__ == ref.__doc__ == "Options(name: 'str', cache: 'list[int] | None' = None)"
    assert replace(one, cache=None).cache is None and copy.deepcopy(one) == two


def test_fields_are_checked_as_dataclass_checks_them() -> None:
    with pytest.raises(ValueError, match="mutable default"):
        @record
        class Mutable(Record):
            x: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="non-default argument 'y' follows default argument"):
        @record
        class Order(Record):
            x: int = 0
            y: int  # type: ignore[misc]

    with pytest.raises(ValueError, match="both default and default_factory"):
        field(default=0, default_factory=int)

    @record
    class Base(Record):
        x: int

    @record
    class Derived(Base):  # a record extending a record: its fields after the base's, as a dataclass's
        y: int = 2

    ref = dataclasses.make_dataclass("Derived", [("x", "int"), ("y", "int", dataclasses.field(default=2))],
                                     frozen=True, slots=True)
    assert Derived.__match_args__ == ("x", "y") and vars(Derived)["__slots__"] == ("y",)
    assert Derived.__doc__ == ref.__doc__
    assert Derived(1) == Derived(1, 2) and Derived(1) != Base(1) and Derived(1).x == 1
    assert [f.name for f in dataclasses.fields(Derived)] == ["x", "y"] and replace(Derived(1), x=3) == Derived(3)


def test_records_load_no_dataclasses_until_its_functions_ask() -> None:
    """The model and the collection modules make their records without dataclasses (nor inspect, which it
    imports: issue 17's start-up); dataclasses.fields() then finds them, made on first use."""
    import subprocess
    import sys

    code = ("import sys\nimport connwatch.collect, connwatch.collect_netns\n"
            "print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))\n"
            "import dataclasses\nfrom connwatch.model import Listener\n"
            "print([f.name for f in dataclasses.fields(Listener)][:3], dataclasses.is_dataclass(Listener))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines() == ["[]", "['family', 'address', 'port'] True"]


def test_asdict_is_dataclasses_asdict_without_loading_it() -> None:
    @record
    class Inner(Record):
        name: str
        tags: tuple[str, ...] = ()

    @record
    class Outer(Record):
        inner: Inner | None
        rows: list[Any]
        pairs: tuple[Any, ...]
        table: dict[Any, Any]

    plain = Outer(Inner("a", ("t",)), [Inner("b"), 1, 2.5, None, True], (("x", 1), [Inner("c")]),
                  {"k": Inner("d"), 3: [4]})
    odd = Outer(None, [frozenset({"t"})], (), {})  # (a frozenset: left to dataclasses.asdict, which copies it)
    for obj in (plain, odd):
        got, want = asdict(obj), dataclasses.asdict(obj)
        assert got == want and repr(got) == repr(want)
    made = asdict(plain)
    assert made["rows"] is not plain.rows and made["table"]["k"] == {"name": "d", "tags": ()}
    assert made["rows"][0] == {"name": "b", "tags": ()} and made["pairs"][1] == [{"name": "c", "tags": ()}]
