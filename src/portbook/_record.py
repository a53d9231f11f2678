"""Frozen records for the modules a cold ``portbook lookup`` loads, without ``dataclasses``.

Why not ``@dataclass(frozen=True, slots=True)``: the ``dataclasses`` module
imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``, ``linecache``)
and ``typing``; together that is more than half of a bare interpreter's
start-up, paid on every run of the ``portbook`` command before it does any
work. A dataclass also compiles its generated methods from source at import,
about a tenth of a millisecond per class. BENCHMARKS.md (the book) has the
measurements.

:func:`frozen_record` gives the records of that path (``PortRange``,
``PortSpec``, ``LocalRanges``, ``Service``, ``RegistryInfo``) what the frozen
dataclass gave them, and compiles nothing at run time:

* fields are the class annotations, in order; the class writes its own
  ``__init__`` taking exactly those fields (defaults go there), setting each
  with ``object.__setattr__`` and validating as it likes. The decorator
  checks the parameter names against the fields when the class is defined;
* ``__slots__`` (no per-instance ``__dict__``);
* immutability: assigning or deleting a field raises
  ``dataclasses.FrozenInstanceError`` (imported only then; it is an
  ``AttributeError``), exactly as for a frozen dataclass;
* ``__eq__`` and ``__hash__`` over the field values (only equal to an instance
  of the same class), ``__repr__`` as ``Name(field=value, ...)``, the four
  order comparisons with ``order=True``, ``__match_args__``;
* pickling and ``copy``, by calling the class again with the field values.

Type checkers see the decorator through PEP 681 (``dataclass_transform``), so
they refuse assignments exactly as for a frozen dataclass, and check calls
against the class's own ``__init__``. What it does not give:
``dataclasses.fields()``, ``asdict()`` and ``replace()`` (these records are not
dataclasses), field options, inheritance between records and zero-argument
``super()`` in their methods (the class is re-created with ``__slots__``, as
``dataclass(slots=True)`` does, so its ``__class__`` cell would name the old one).
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
    name = cls.__qualname__
    if cls.__bases__ != (object,):
        raise TypeError(f"{name}: a record cannot inherit from another class")
    namespace = dict(cls.__dict__)
    annotations: dict[str, str] = namespace.get("__annotations__", {})
    # With `from __future__ import annotations` every annotation is a string;
    # a ClassVar is a class attribute, not a field.
    names = tuple(n for n, a in annotations.items() if not str(a).startswith("ClassVar"))
    init = namespace.get("__init__")
    code = getattr(init, "__code__", None)
    params = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount] if code else None
    if params != names:
        raise TypeError(f"{name}: __init__ must take exactly the fields {', '.join(names)}")
    if any(n in namespace for n in names):
        raise TypeError(f"{name}: give field defaults in __init__, not in the class body")
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
    namespace.update(_methods(names, values, order))
    new = type(cls.__name__, (object,), namespace)
    new.__qualname__ = name
    return new


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
