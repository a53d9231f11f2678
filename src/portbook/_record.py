"""The one way portbook defines its records: :func:`record`.

Every public record (``Socket``, ``Service``, ``Lease``, ``Route``, ...) and the
raw rows backends return are made by this decorator. It turns an annotated
class into an immutable record, as ``@dataclass(frozen=True)`` would::

    @record
    class Endpoint:
        address: IPv4Address | IPv6Address
        port: int
        scope: str | None = None     # a default, written as in a dataclass

        def __post_init__(self) -> None:   # optional: validate, raise on bad values
            ...

**Define** as above: fields are the annotations, in order (``ClassVar``
annotations are not fields), defaults are class attributes or
:func:`field` ``(default_factory=...)``; methods and properties are kept.
``@record(order=True)`` adds ``<``, ``<=``, ``>``, ``>=`` between records of the
same class.

**Build** by calling the class, positionally or by keyword; defaults fill in,
``__post_init__`` runs. Code that makes thousands of records from trusted
values (the live table) builds them with :func:`maker`, which skips argument
binding and ``__post_init__``: one C call per record.

**Copy** with ``dataclasses.replace(rec, field=value)`` (or ``copy.replace`` on
Python 3.13+); portbook's own code calls :func:`replace`, the same without
importing ``dataclasses``. Records pickle and ``copy`` as
their field values.

**Serialise** with ``dataclasses.asdict(rec)`` and ``dataclasses.fields(rec)``;
public records also have ``to_json()``, their JSON contract in the README.

Why not ``@dataclass(frozen=True, slots=True)`` itself: importing
``dataclasses`` brings ``inspect`` (with ``ast``, ``dis``, ``tokenize``) and
``typing``, more than half of a bare interpreter's start, paid by every
``portbook`` command before it does any work; and a dataclass compiles its
methods from source text at import (0.1-0.4 ms per class). This decorator
compiles nothing, and ``dataclasses`` is imported only when one of its
functions is called on a record (``__dataclass_fields__`` is built on first
access). BENCHMARKS.md (start-up) has the measurements.

How: a record *is* a tuple of its field values (a ``tuple`` subclass without
instance dictionary, fields read through C-level item getters, as
``collections.namedtuple`` does). That makes building one as cheap as
building a tuple, and keeps the guarantees of a frozen dataclass: assigning
a field raises ``dataclasses.FrozenInstanceError``; ``==`` and ``hash`` are over
the values and hold only between records of the same class (never with a
plain tuple); ``repr`` is ``Name(field=value, ...)``; ``__match_args__`` is
set. Being a tuple also means ``len()``, indexing and unpacking give the
field values, which the hot loops of the live table use. Type checkers see
the decorator through PEP 681 (``dataclass_transform``) and check calls and
assignments exactly as for a frozen dataclass. tests/test_record.py pins
all of this.
"""

from __future__ import annotations

# Instead of `from typing import TYPE_CHECKING`: importing typing costs about a
# quarter of an interpreter start, and type checkers treat any name
# TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T")
    _V = TypeVar("_V")
else:
    # typing.dataclass_transform and overload only mark things for type
    # checkers; importing typing for them would cost more than this module.
    def dataclass_transform(**_kwargs):
        return lambda decorator: decorator

    def overload(function):
        return function


try:
    # The C-level field getter of collections.namedtuple (CPython 3.8+).
    from collections import _tuplegetter  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other Python implementations
    from operator import itemgetter

    def _tuplegetter(index: int, doc: str | None) -> property:
        return property(itemgetter(index), doc=doc)


__all__ = ["field", "maker", "public", "record", "replace", "values_of"]

_NO_DEFAULT: Any = object()
_ALL = slice(None)
_values = tuple.__getitem__  # _values(rec, _ALL): the field values as a plain tuple


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], _V]) -> _V:
    """A field default computed per record: ``ranges: LocalRanges = field(default_factory=...)``."""
    return _Factory(default_factory)  # type: ignore[return-value]


if TYPE_CHECKING:

    @overload
    def record(cls: type[_T], /) -> type[_T]: ...

    @overload
    def record(*, order: bool = False) -> Callable[[type[_T]], type[_T]]: ...  # noqa: F811


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: Any = None, /, *, order: bool = False) -> Any:
    """Class decorator: make the annotated class an immutable record (see the module doc)."""
    if cls is None:
        return lambda c: _build(c, order)
    return _build(cls, order)


def maker(cls: type[_T]) -> Callable[[tuple[Any, ...]], _T]:
    """A builder of ``cls`` records from a tuple of every field's value, in field order.

    For code that makes many records from values it has already checked: no
    argument binding, no defaults and no ``__post_init__``.
    """
    # partial of the C function itself: a Python frame per record would
    # double the cost. (functools is loaded by enum already.)
    from functools import partial

    return partial(tuple.__new__, cls)  # type: ignore[type-var]


def replace(rec: _T, /, **changes: Any) -> _T:
    """A copy of ``rec`` with ``changes``: ``dataclasses.replace`` without importing dataclasses."""
    return rec.__replace__(**changes)  # type: ignore[attr-defined, no-any-return]


def values_of(records: Iterable[_T]) -> Iterable[tuple[Any, ...]]:
    """``records`` as the tuples they are, for loops that unpack every field at once.

    Nothing is copied: this only tells the type checker what the records are.
    """
    return records  # type: ignore[return-value]


def public(*classes: type) -> None:
    """Name ``classes`` as ``portbook.X``: their ``__module__`` is the package users import.

    Pickle then finds them through the facade too (``portbook.Socket``).
    """
    for cls in classes:
        cls.__module__ = "portbook"


def _build(cls: type[_T], order: bool) -> type[_T]:
    name = cls.__qualname__
    if cls.__bases__ != (object,):
        raise TypeError(f"{name}: a record cannot inherit from another class")
    namespace = dict(cls.__dict__)
    annotations: dict[str, str] = namespace.get("__annotations__", {})
    # With `from __future__ import annotations` every annotation is a string;
    # a ClassVar is a class attribute, not a field.
    names = tuple(n for n, a in annotations.items() if not str(a).startswith("ClassVar"))
    defaults = tuple(namespace.pop(n, _NO_DEFAULT) for n in names)
    seen_default = False
    for n, d in zip(names, defaults, strict=True):
        if d is _NO_DEFAULT and seen_default:
            raise TypeError(f"{name}: field {n!r} without a default follows one with a default")
        seen_default = seen_default or d is not _NO_DEFAULT
    if "__init__" in namespace:
        raise TypeError(f"{name}: a record has no __init__; validate in __post_init__")
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    namespace["__slots__"] = ()
    namespace["__match_args__"] = names
    for i, n in enumerate(names):
        namespace[n] = _tuplegetter(i, f"Alias for field number {i}")
    namespace.update(_methods(names, defaults, order, namespace.get("__post_init__")))
    new = type(cls.__name__, (tuple,), namespace)
    new.__qualname__ = name
    return new


def _binder(
    names: tuple[str, ...], defaults: tuple[Any, ...], post_init: Callable[[Any], None] | None
) -> Callable[..., Any]:
    """The record's ``__new__``: bind arguments to fields as a dataclass ``__init__`` would."""
    count = len(names)
    index = {n: i for i, n in enumerate(names)}
    new_tuple: Any = tuple.__new__

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        obj: Any
        if len(args) == count and not kwargs:
            obj = new_tuple(cls, args)  # the common call: every field, in order
        else:
            if len(args) > count:
                raise TypeError(f"{cls.__name__}() takes {count} arguments, {len(args)} given")
            values = list(args) + [_NO_DEFAULT] * (count - len(args))
            for key, value in kwargs.items():
                i = index.get(key)
                if i is None:
                    raise TypeError(f"{cls.__name__}() got an unexpected argument {key!r}")
                if i < len(args):
                    raise TypeError(f"{cls.__name__}() got multiple values for {key!r}")
                values[i] = value
            for i, value in enumerate(values):
                if value is _NO_DEFAULT:
                    default = defaults[i]
                    if default is _NO_DEFAULT:
                        raise TypeError(f"{cls.__name__}() missing argument {names[i]!r}")
                    values[i] = default.make() if isinstance(default, _Factory) else default
            obj = new_tuple(cls, values)
        if post_init is not None:
            post_init(obj)
        return obj

    return __new__


class _DataclassFields:
    """``__dataclass_fields__`` built on first access, so that ``dataclasses`` loads only then."""

    def __init__(self, names: tuple[str, ...], defaults: tuple[Any, ...]) -> None:
        self._names = names
        self._defaults = defaults

    def __get__(self, obj: object, owner: type) -> dict[str, Any]:
        import dataclasses

        fields: dict[str, Any] = {}
        annotations = owner.__dict__.get("__annotations__", {})  # noqa: RUF063 - strings
        for n, d in zip(self._names, self._defaults, strict=True):
            f: Any
            if isinstance(d, _Factory):
                f = dataclasses.field(default_factory=d.make)
            else:
                f = dataclasses.field(default=dataclasses.MISSING if d is _NO_DEFAULT else d)
            f.name = n
            f.type = annotations.get(n, "")
            # What dataclasses' own class processing sets on each field: the
            # marker replace(), fields() and asdict() read (stable since 3.7).
            f._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            fields[n] = f
        setattr(owner, "__dataclass_fields__", fields)  # noqa: B010 - replaces this descriptor
        return fields


def _methods(
    names: tuple[str, ...],
    defaults: tuple[Any, ...],
    order: bool,
    post_init: Callable[[Any], None] | None,
) -> dict[str, Any]:
    fields = frozenset(names)
    tuple_eq: Any = tuple.__eq__
    tuple_ne: Any = tuple.__ne__

    def __setattr__(self: Any, name: str, value: object) -> None:
        if name in fields:
            raise _frozen_error(name)
        raise AttributeError(f"{type(self).__name__!r} record has no field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        __setattr__(self, name, None)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(tuple_eq(self, other))
        return False if isinstance(other, tuple) else NotImplemented

    def __ne__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(tuple_ne(self, other))
        return True if isinstance(other, tuple) else NotImplemented

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, _values(self, _ALL), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    def __getnewargs__(self: Any) -> tuple[Any, ...]:
        return _values(self, _ALL)  # pickle and copy call the class with these

    def __replace__(self: Any, **changes: Any) -> Any:
        current = dict(zip(names, _values(self, _ALL), strict=True))
        current.update(changes)
        return self.__class__(**current)

    methods: dict[str, Any] = {
        "__new__": _binder(names, defaults, post_init),
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__eq__": __eq__,
        "__ne__": __ne__,
        "__hash__": tuple.__hash__,
        "__repr__": __repr__,
        "__getnewargs__": __getnewargs__,
        "__replace__": __replace__,
        "__dataclass_fields__": _DataclassFields(names, defaults),
    }

    def compare(op: Any, symbol: str) -> Callable[[Any, object], Any]:
        def method(self: Any, other: object) -> Any:
            if order and other.__class__ is self.__class__:
                return bool(op(self, other))
            if isinstance(other, tuple):
                # NotImplemented would let the tuple compare itself with us.
                raise TypeError(
                    f"'{symbol}' not supported between instances of "
                    f"{type(self).__name__!r} and {type(other).__name__!r}"
                )
            return NotImplemented

        return method

    # Without order=True these refuse, as a dataclass does (a tuple would compare).
    methods.update(
        __lt__=compare(tuple.__lt__, "<"),
        __le__=compare(tuple.__le__, "<="),
        __gt__=compare(tuple.__gt__, ">"),
        __ge__=compare(tuple.__ge__, ">="),
    )
    return methods


def _frozen_error(name: str) -> AttributeError:
    from dataclasses import FrozenInstanceError  # only on this error path

    return FrozenInstanceError(f"cannot assign to field {name!r}")
