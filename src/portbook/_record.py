"""Frozen records for the modules a cold ``portbook lookup`` loads, without ``dataclasses``.

Why not ``@dataclass(frozen=True, slots=True)``: the ``dataclasses`` module
imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``, ``linecache``)
and ``typing`` is imported on top; together that is more than half of a bare
interpreter's start-up, paid on every run of the ``portbook`` command before
it does any work. BENCHMARKS.md (the book) has the measurements.

:func:`frozen_record` gives the records of that path (``PortRange``,
``PortSpec``, ``LocalRanges``, ``Service``, ``RegistryInfo``) what the frozen
dataclass gave them, and nothing else:

* fields declared as class annotations, in order, with optional defaults; a
  generated ``__init__`` taking them positionally or by keyword, which calls
  ``__post_init__`` when the class defines one;
* ``__slots__`` (no per-instance ``__dict__``);
* immutability: assigning or deleting a field raises
  ``dataclasses.FrozenInstanceError`` (imported only then; it is an
  ``AttributeError``), exactly as for a frozen dataclass;
* ``__eq__`` and ``__hash__`` over the field values (only equal to an instance
  of the same class), ``__repr__`` as ``Name(field=value, ...)``, the four
  order comparisons with ``order=True``, ``__match_args__``;
* pickling and ``copy``, by re-running ``__init__`` on the field values.

Type checkers see the decorator through PEP 681 (``dataclass_transform``), so
they check constructor calls and refuse assignments exactly as for a frozen
dataclass. What it does not give: ``dataclasses.fields()``, ``asdict()`` and
``replace()`` (these records are not dataclasses), field options
(``default_factory`` and friends) and inheritance between records.
tests/test_record.py pins these guarantees.
"""

from __future__ import annotations

from operator import attrgetter

# Instead of `from typing import TYPE_CHECKING`: importing typing costs about a
# quarter of an interpreter start, and type checkers treat any name
# TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    _T = TypeVar("_T")
else:
    # typing.dataclass_transform only marks the decorator for type checkers;
    # importing typing for it would cost more than this whole module.
    def dataclass_transform(**_kwargs):
        return lambda decorator: decorator


__all__ = ["frozen_record"]


@dataclass_transform(eq_default=True, order_default=False, frozen_default=True)
def frozen_record(*, order: bool = False) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: make the annotated class a frozen, slotted record (see module doc)."""

    def decorate(cls: type[_T]) -> type[_T]:
        return _build(cls, order)

    return decorate


def _build(cls: type[_T], order: bool) -> type[_T]:
    if cls.__bases__ != (object,):
        raise TypeError(f"{cls.__qualname__}: a record cannot inherit from another class")
    namespace = dict(cls.__dict__)
    annotations: dict[str, str] = namespace.get("__annotations__", {})
    # With `from __future__ import annotations` every annotation is a string;
    # a ClassVar is a class attribute, not a field.
    names = tuple(n for n, a in annotations.items() if not str(a).startswith("ClassVar"))
    defaults = {n: namespace.pop(n) for n in names if n in namespace}
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    namespace["__slots__"] = names
    namespace["__match_args__"] = names
    # One C-level call that returns the field values as a tuple (attrgetter
    # returns a bare value for a single name, hence the wrapper).
    values: Callable[[Any], tuple[Any, ...]]
    if len(names) == 1:
        single = attrgetter(names[0])
        values = lambda obj: (single(obj),)  # noqa: E731
    else:
        values = attrgetter(*names)
    namespace["__init__"] = _make_init(
        cls.__qualname__, names, defaults, "__post_init__" in namespace
    )
    namespace.update(_methods(names, values, order))
    new = type(cls.__name__, (object,), namespace)
    new.__qualname__ = cls.__qualname__
    return new


def _make_init(
    qualname: str, names: tuple[str, ...], defaults: dict[str, object], post_init: bool
) -> Callable[..., None]:
    # Generated like a dataclass's __init__: a real signature (positional or
    # keyword, defaults, TypeError for a missing or unknown argument) at the
    # speed of plain code. Each field is set with object.__setattr__, which
    # bypasses the frozen __setattr__ below.
    params = []
    seen_default = False
    for name in names:
        if name in defaults:
            params.append(f"{name}=__default_{name}")
            seen_default = True
        elif seen_default:
            raise TypeError(f"{qualname}: field {name!r} without a default follows one with")
        else:
            params.append(name)
    body = [f"    __set(self, {name!r}, {name})" for name in names] or ["    pass"]
    if post_init:
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}) -> None:\n" + "\n".join(body) + "\n"
    scope: dict[str, Any] = {f"__default_{n}": v for n, v in defaults.items()}
    scope["__set"] = object.__setattr__
    exec(source, scope)  # built from the class's own field names, nothing from outside
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{qualname}.__init__"
    return init


def _frozen_error(name: str) -> AttributeError:
    from dataclasses import FrozenInstanceError  # only on this error path

    return FrozenInstanceError(f"cannot assign to field {name!r}")


def _methods(
    names: tuple[str, ...], values: Callable[[Any], tuple[Any, ...]], order: bool
) -> dict[str, Any]:
    fields = frozenset(names)

    def __setattr__(self: Any, name: str, value: object) -> None:
        if name in fields:
            raise _frozen_error(name)
        object.__setattr__(self, name, value)  # no such slot: AttributeError

    def __delattr__(self: Any, name: str) -> None:
        if name in fields:
            raise _frozen_error(name)
        object.__delattr__(self, name)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(values(self))

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, values(self), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    def __reduce__(self: Any) -> tuple[Any, tuple[Any, ...]]:
        return (self.__class__, values(self))

    methods: dict[str, Any] = {
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__eq__": __eq__,
        "__hash__": __hash__,
        "__repr__": __repr__,
        "__reduce__": __reduce__,
    }
    if order:

        def __lt__(self: Any, other: object) -> bool:
            if other.__class__ is self.__class__:
                return values(self) < values(other)
            return NotImplemented

        def __le__(self: Any, other: object) -> bool:
            if other.__class__ is self.__class__:
                return values(self) <= values(other)
            return NotImplemented

        def __gt__(self: Any, other: object) -> bool:
            if other.__class__ is self.__class__:
                return values(self) > values(other)
            return NotImplemented

        def __ge__(self: Any, other: object) -> bool:
            if other.__class__ is self.__class__:
                return values(self) >= values(other)
            return NotImplemented

        methods.update(__lt__=__lt__, __le__=__le__, __gt__=__gt__, __ge__=__ge__)
    return methods
