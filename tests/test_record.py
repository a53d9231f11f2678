"""The frozen records of the cold path keep every guarantee of a frozen, slotted dataclass."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import date

import pytest

from portbook import (
    LocalRanges,
    PortRange,
    PortSpec,
    Protocol,
    RegistryInfo,
    Service,
    ServiceSource,
    ServiceStatus,
    lookup,
    parse_port_spec,
    registry_info,
)
from portbook._record import frozen_record


def _service(**changes: object) -> Service:
    fields: dict[str, object] = {
        "name": "https",
        "port": 443,
        "port_end": 443,
        "protocol": Protocol.TCP,
        "description": "http protocol over TLS/SSL",
        "source": ServiceSource.IANA,
        "status": ServiceStatus.ASSIGNED,
        "registered": date(2000, 1, 2),
        "aliases": ("ssl",),
    }
    fields.update(changes)
    return Service(**fields)  # type: ignore[arg-type]


RECORDS = [
    PortRange(80, 90),
    parse_port_spec("tcp/[::1]:8080"),
    parse_port_spec("https"),
    LocalRanges(PortRange(32768, 60999), (PortRange(8080, 8080),), "/proc/sys/net/ipv4"),
    _service(),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_fields_cannot_be_assigned_or_deleted(record: object) -> None:
    name = type(record).__match_args__[0]  # type: ignore[attr-defined]
    before = getattr(record, name)
    with pytest.raises(dataclasses.FrozenInstanceError, match=name):
        setattr(record, name, before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(record, name)
    with pytest.raises(AttributeError):
        record.not_a_field = 1  # type: ignore[attr-defined]
    assert getattr(record, name) == before
    assert not hasattr(record, "__dict__")  # slots: nowhere to put another attribute


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_equal_hash_copy_and_pickle_by_value(record: object) -> None:
    for same in (copy.copy(record), copy.deepcopy(record), pickle.loads(pickle.dumps(record))):
        assert same == record and hash(same) == hash(record) and same is not record
        assert type(same) is type(record)
    assert {record: 1}[pickle.loads(pickle.dumps(record))] == 1


def test_equality_is_per_field_and_per_class() -> None:
    assert PortRange(80, 90) == PortRange(first=80, last=90)
    assert PortRange(80, 90) != PortRange(80, 91)
    assert PortRange(80, 90) != (80, 90)  # type: ignore[comparison-overlap]  # not a tuple
    assert _service() == _service() and _service() != _service(aliases=())
    assert _service(registered=None) != _service()
    assert len({PortRange(1, 2), PortRange(1, 2), PortRange(2, 3)}) == 2


def test_repr_names_every_field_in_order() -> None:
    assert repr(PortRange(80, 90)) == "PortRange(first=80, last=90)"
    assert repr(parse_port_spec("https")) == (
        "PortSpec(text='https', protocol=None, ports=None, name='https', host=None)"
    )
    text = repr(_service())
    assert text.startswith("Service(name='https', port=443, port_end=443, protocol=")
    assert text.endswith("aliases=('ssl',), software=None)")


def test_port_ranges_order_like_tuples_and_only_among_themselves() -> None:
    assert sorted([PortRange(9, 9), PortRange(1, 5), PortRange(1, 2)]) == [
        PortRange(1, 2),
        PortRange(1, 5),
        PortRange(9, 9),
    ]
    assert PortRange(1, 2) <= PortRange(1, 2) < PortRange(1, 3)
    assert PortRange(5, 6) >= PortRange(5, 6) > PortRange(4, 9)
    with pytest.raises(TypeError):
        _ = PortRange(1, 2) < (1, 2)  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = _service() < _service()  # type: ignore[operator]


def test_constructor_checks_arguments_and_runs_post_init() -> None:
    with pytest.raises(TypeError):
        PortRange(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        PortRange(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        PortRange(1, lst=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="range start is above its end"):
        PortRange(9, 1)
    spec = PortSpec("x", name="x")  # defaults by keyword, like the dataclass
    assert (spec.protocol, spec.ports, spec.host) == (None, None, None)
    assert type(PortRange).__name__ == "type"
    assert PortRange.__match_args__ == ("first", "last")


def test_records_from_the_book_are_frozen() -> None:
    found = lookup(443)
    assert found and all(isinstance(s, Service) for s in found)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0].port = 1  # type: ignore[misc]
    info = registry_info()
    assert isinstance(info, RegistryInfo) and pickle.loads(pickle.dumps(info)) == info
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.records = 0  # type: ignore[misc]


def test_match_statement_uses_the_fields() -> None:
    match PortRange(22, 22):
        case PortRange(first, last) if first == last:
            assert first == 22
        case _:
            pytest.fail("PortRange did not match positionally")


def test_decorator_refuses_what_it_does_not_support() -> None:
    class Base:
        pass

    with pytest.raises(TypeError, match="inherit"):

        @frozen_record()
        class Child(Base):
            x: int

            def __init__(self, x: int) -> None:
                object.__setattr__(self, "x", x)

    with pytest.raises(TypeError, match="exactly the fields x, y"):

        @frozen_record()
        class Forgot:
            x: int
            y: int

            def __init__(self, x: int) -> None:
                object.__setattr__(self, "x", x)

    with pytest.raises(TypeError, match="exactly the fields x"):

        @frozen_record()
        class NoInit:
            x: int

    with pytest.raises(TypeError, match="defaults in __init__"):

        @frozen_record()
        class BodyDefault:
            x: int = 0

            def __init__(self, x: int = 0) -> None:
                object.__setattr__(self, "x", x)


def test_every_field_is_set_by_init() -> None:
    for record in RECORDS:
        for name in type(record).__match_args__:  # type: ignore[attr-defined]
            getattr(record, name)  # an unset slot would raise AttributeError
