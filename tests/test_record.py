"""Every public record is made one way (``portbook._record.record``): as a frozen dataclass."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
from datetime import date
from ipaddress import ip_address
from typing import Any

import pytest

import portbook
from portbook import (
    Assignment,
    BindReason,
    Container,
    DestinationUsage,
    DnatRule,
    Endpoint,
    EphemeralUsage,
    Exposure,
    Family,
    Holder,
    KillResult,
    Lease,
    LocalRanges,
    NameStatus,
    Netns,
    NetnsKind,
    PickPolicy,
    PortCheck,
    PortClass,
    PortHolder,
    PortQuery,
    PortRange,
    PortSpec,
    Protocol,
    Published,
    RawSocket,
    RegistryInfo,
    Route,
    RouteRule,
    Runtime,
    Service,
    ServiceSource,
    ServiceStatus,
    Socket,
    SocketChanges,
    SocketProcess,
    SocketState,
    SocketTable,
    TableQuery,
    Unit,
    WaitTarget,
    lookup,
    parse_port_spec,
    registry_info,
)
from portbook._record import field, maker, record

RANGES = LocalRanges(PortRange(32768, 60999), (PortRange(8080, 8080),), "/proc/sys/net/ipv4")
PROC = SocketProcess(4242, "nginx", ("nginx", "-g", "daemon off;"), "www-data")
SOCKET = Socket(
    Protocol.TCP,
    Family.INET,
    SocketState.LISTEN,
    ip_address("127.0.0.1"),
    8080,
    None,
    None,
    777,
    33,
    0,
    128,
    None,
    None,
    (PROC,),
    None,
    "http-alt",
    PortClass.USER,
    False,
    Exposure.LOOPBACK,
)
SERVICE = Service(
    "https",
    443,
    443,
    Protocol.TCP,
    "http protocol over TLS/SSL",
    ServiceSource.IANA,
    ServiceStatus.ASSIGNED,
    registered=date(2000, 1, 2),
    aliases=("ssl",),
)
ASSIGNMENT = Assignment("api", 24117, Protocol.TCP)
LEASE = Lease(17, 24117, (Protocol.TCP,), (Family.INET, Family.INET6), 4242, 99, None)
DESTINATION = DestinationUsage(Protocol.TCP, ip_address("10.0.0.1"), 5432, 3, 1, 28000)
ENDPOINT = Endpoint(ip_address("::1"), 53)
CONTAINER = Container(Runtime.DOCKER, "ab" * 32, "web", pid=4242)
UNIT = Unit("nginx.service", "service", "system", None, "system.slice", None, "/system.slice/x")
NETNS = Netns(
    4026532185, NetnsKind.CONTAINER, "web", None, "/run/docker/netns/x", (4242,), CONTAINER
)
RULE = DnatRule("tcp", None, 8080, 8080, "172.17.0.2", 80, None, "ip nat", "DOCKER", "nft")
PUBLISHED = Published("dnat", None, "tcp", 8080, CONTAINER, "172.17.0.2", 80, (PROC,), RULE)

# One of every public record class; test_every_public_record_is_here keeps it whole.
RECORDS: list[object] = [
    PortRange(80, 90),
    parse_port_spec("tcp/[::1]:8080"),
    parse_port_spec("https"),
    RANGES,
    SERVICE,
    RegistryInfo("/r", "packaged", "x.xml", "ab", "xml", None, 1, 1, 0, 0, 0, None, None, 0, 0),
    PROC,
    SOCKET,
    SocketChanges((SOCKET,), (SOCKET,), (), True),
    RawSocket("tcp", 4, 10, bytes(4), 80, bytes(4), 0, 1, 0, 0, 0, None, 0, None),
    TableQuery(),
    ASSIGNMENT,
    NameStatus(ASSIGNMENT, True, (PROC,)),
    LEASE,
    Holder(4242, 99),
    PickPolicy(ranges=RANGES, is_assigned=lambda port, proto: False),
    PortHolder(PROC, (SOCKET,)),
    KillResult(8080, Protocol.TCP, 15, ()),
    ENDPOINT,
    Route(Protocol.TCP, None, ENDPOINT, RouteRule.NONE, None, (), False, None, "none"),
    WaitTarget("8080", 8080),
    PortQuery("8080", (PortRange(8080, 8080),), None, None, "number"),
    BindReason("listener", True, "nginx[1] listens on 0.0.0.0:80", SOCKET),
    PortCheck(80, Protocol.TCP, Family.INET, ip_address("0.0.0.0"), False, "EADDRINUSE", ()),
    DESTINATION,
    EphemeralUsage(RANGES, 28231, 0, 0, 0.8, 2, (DESTINATION,)),
    CONTAINER,
    UNIT,
    NETNS,
    RULE,
    PUBLISHED,
    SocketTable((SOCKET,), (NETNS,), ("a note",), ((NETNS, 2),)),
]
PICKLABLE = [r for r in RECORDS if not isinstance(r, PickPolicy)]  # it holds functions


def _ids(r: object) -> str:
    return type(r).__name__


def test_every_public_record_is_here_and_says_portbook() -> None:
    public = {
        name
        for name in portbook.__all__
        if isinstance(getattr(portbook, name), type) and issubclass(getattr(portbook, name), tuple)
    }
    assert public == {type(r).__name__ for r in RECORDS}
    for name in portbook.__all__:
        value = getattr(portbook, name)
        if isinstance(value, type):
            assert value.__module__ == "portbook", name


@pytest.mark.parametrize("rec", RECORDS, ids=_ids)
def test_fields_cannot_be_assigned_or_deleted(rec: object) -> None:
    name = type(rec).__match_args__[0]  # type: ignore[attr-defined]
    before = getattr(rec, name)
    with pytest.raises(dataclasses.FrozenInstanceError, match=name):
        setattr(rec, name, before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(rec, name)
    with pytest.raises(AttributeError):
        rec.not_a_field = 1  # type: ignore[attr-defined]
    assert getattr(rec, name) == before
    assert not hasattr(rec, "__dict__")  # nowhere to put another attribute


@pytest.mark.parametrize("rec", PICKLABLE, ids=_ids)
def test_equal_hash_copy_and_pickle_by_value(rec: object) -> None:
    for same in (copy.copy(rec), copy.deepcopy(rec), pickle.loads(pickle.dumps(rec))):
        assert same == rec and hash(same) == hash(rec)
        assert type(same) is type(rec)
    assert {rec: 1}[pickle.loads(pickle.dumps(rec))] == 1


@pytest.mark.parametrize("rec", RECORDS, ids=_ids)
def test_dataclasses_functions_work_on_every_record(rec: Any) -> None:
    assert dataclasses.is_dataclass(type(rec))
    names = [f.name for f in dataclasses.fields(rec)]
    assert tuple(names) == type(rec).__match_args__
    first = names[0]
    changed = dataclasses.replace(rec, **{first: getattr(rec, first)})
    assert changed == rec and changed is not rec
    if not isinstance(rec, PickPolicy):  # asdict deep-copies the policy's functions
        assert list(dataclasses.asdict(rec)) == names
    if sys.version_info >= (3, 13):
        assert copy.replace(rec) == rec  # type: ignore[attr-defined, unused-ignore]


def test_replace_changes_only_what_is_asked_and_validates() -> None:
    values: list[Any] = [getattr(SOCKET, n) for n in Socket.__match_args__]
    values[Socket.__match_args__.index("local_port")] = 9
    assert dataclasses.replace(SOCKET, local_port=9) == Socket(*values)
    assert dataclasses.replace(LEASE, pid=None).pid is None
    with pytest.raises(ValueError, match="range start is above its end"):
        dataclasses.replace(PortRange(1, 2), first=5)
    assert dataclasses.asdict(SOCKET)["processes"] == (dataclasses.asdict(PROC),)


def test_equality_is_per_field_and_per_class_never_with_a_plain_tuple() -> None:
    plain: Any = (80, 90)
    other: Any = Endpoint(5, 1)  # type: ignore[arg-type]
    assert PortRange(80, 90) == PortRange(first=80, last=90)
    assert PortRange(80, 90) != PortRange(80, 91)
    assert PortRange(80, 90) != plain and plain != PortRange(80, 90)
    assert not PortRange(80, 90).__eq__(plain)
    assert Holder(5, 1) != other
    assert dataclasses.replace(SERVICE) == SERVICE
    assert dataclasses.replace(SERVICE, aliases=()) != SERVICE
    assert len({PortRange(1, 2), PortRange(1, 2), PortRange(2, 3)}) == 2


def test_repr_names_every_field_in_order() -> None:
    assert repr(PortRange(80, 90)) == "PortRange(first=80, last=90)"
    assert repr(parse_port_spec("https")) == (
        "PortSpec(text='https', protocol=None, ports=None, name='https', host=None)"
    )
    assert repr(SERVICE).startswith("Service(name='https', port=443, port_end=443, protocol=")
    assert repr(SERVICE).endswith("aliases=('ssl',), software=None)")


def test_ordering_only_where_asked_and_only_among_the_same_class() -> None:
    assert sorted([PortRange(9, 9), PortRange(1, 5), PortRange(1, 2)]) == [
        PortRange(1, 2),
        PortRange(1, 5),
        PortRange(9, 9),
    ]
    assert PortRange(1, 2) <= PortRange(1, 2) < PortRange(1, 3)
    assert PortRange(5, 6) >= PortRange(5, 6) > PortRange(4, 9)
    plain: Any = (1, 2)
    service: Any = SERVICE
    with pytest.raises(TypeError):
        _ = PortRange(1, 2) < plain
    with pytest.raises(TypeError):
        _ = plain < PortRange(1, 2)
    with pytest.raises(TypeError):
        _ = service < dataclasses.replace(SERVICE)


def test_constructor_binds_like_a_dataclass_and_runs_post_init() -> None:
    with pytest.raises(TypeError, match="missing argument 'last'"):
        PortRange(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes 2 arguments"):
        PortRange(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected argument 'lst'"):
        PortRange(1, lst=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        PortRange(1, first=2)  # type: ignore[misc, call-arg]
    with pytest.raises(ValueError, match="range start is above its end"):
        PortRange(9, 1)
    with pytest.raises(portbook.UsageError, match="never exits"):
        Holder(1, 0)
    spec = PortSpec("x", name="x")  # defaults by keyword
    assert (spec.protocol, spec.ports, spec.host) == (None, None, None)
    assert PortRange.__match_args__ == ("first", "last")


def test_a_record_is_the_tuple_of_its_values() -> None:
    assert tuple(LEASE) == tuple(getattr(LEASE, n) for n in Lease.__match_args__)  # type: ignore[arg-type]
    assert len(SOCKET) == len(Socket.__match_args__)  # type: ignore[arg-type]
    fast = maker(Socket)(tuple(SOCKET))  # type: ignore[arg-type]
    assert fast == SOCKET and type(fast) is Socket and hash(fast) == hash(SOCKET)


def test_factories_give_each_record_its_own_default() -> None:
    @record
    class Bag:
        name: str
        items: list[int] = field(default_factory=list)

    one, two = Bag("a"), Bag("b")
    one.items.append(1)
    assert two.items == [] and one.items == [1]


def test_records_from_the_book_are_frozen() -> None:
    found = lookup(443)
    assert found and all(isinstance(s, Service) for s in found)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0].port = 1  # type: ignore[misc]
    info = registry_info()
    assert isinstance(info, RegistryInfo) and pickle.loads(pickle.dumps(info)) == info


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

        @record
        class Child(Base):
            x: int

    with pytest.raises(TypeError, match="no __init__"):

        @record
        class WithInit:
            x: int

            def __init__(self, x: int) -> None:
                pass

    with pytest.raises(TypeError, match="without a default follows"):

        @record
        class Order:
            x: int = 0
            y: int  # type: ignore[misc]


@pytest.mark.parametrize(
    "error",
    [
        portbook.InvalidPortSpecError("70000", "port must be 0-65535"),
        portbook.InvalidNameError("", "empty"),
        portbook.PortUnavailableError("taken", port=80, protocol="tcp", holder="nginx"),
        portbook.StoreLockedError("locked", path="/s"),
        portbook.WaitTimeoutError("late", pending=("8080",)),
        portbook.ProcessSignalError("no", pid=4),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle_with_their_fields(error: portbook.PortbookError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert back.__dict__ == error.__dict__
