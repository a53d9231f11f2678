"""The three names joined: the live table with what the book calls each port, and your names.

The book, the live table and your names know nothing of each other; this
module is where they meet. :func:`list_sockets` reads the live table and
hands it the book's names for its ports; :func:`name_status` tells which of
your names a program serves right now; the tools around ports (``kill``,
``route``, ``wait``, ``ephemeral``) read the table through it.
"""

from __future__ import annotations

from portbook._exceptions import SocketTableError
from portbook._live.table import read_sockets, read_stream, read_table, socket_filter
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from ipaddress import IPv4Address, IPv6Address
    from typing import Any

    from portbook._live.backends.base import SocketBackend
    from portbook._live.build import Namer
    from portbook._live.records import Socket, SocketProcess, SocketState, SocketTable
    from portbook._live.table import SocketStream
    from portbook._live.watch import SocketChanges
    from portbook._names.assignments import Assignment
    from portbook._names.leases import Lease
    from portbook._names.picker import HolderCheck
    from portbook._names.store import Store
    from portbook._ports import Family, PortRange, Protocol

__all__ = [
    "NameStatus",
    "PortQuery",
    "find_sockets",
    "kept_by",
    "list_sockets",
    "name_status",
    "port_in_use",
    "resolve_ports",
    "single_port",
    "socket_stream",
    "socket_table",
    "sockets_on_port",
    "watch_sockets",
]


def _port_names(pairs: set[tuple[int, str]]) -> Namer:
    """What each (port, protocol) of a table is called: your name, and the book's with its source.

    One question to the book for the whole table (:meth:`Book.display_names`)
    and one read of your names; a store that cannot be read names nothing
    (a listing never fails for it).
    """
    from portbook._book.book import default_book

    book = default_book().display_names(pairs)
    yours = _your_names()
    nobody = (None, None)

    def name(port: int, protocol: Protocol) -> tuple[str | None, str | None, str | None]:
        found = book.get((port, protocol)) or nobody
        return found[0], found[1], yours.get((port, protocol.value))

    return name


def _your_names() -> dict[tuple[int, str], str]:
    import os

    from portbook._paths import default_store_name

    path = default_store_name()
    if not os.path.exists(path):
        return {}  # no store yet: nothing to open (nothing is created, nothing more imported)
    import _sqlite3 as sqlite3  # the sqlite3 package would import datetime (see registry.py)

    from portbook._exceptions import PortbookError
    from portbook._names.assignments import names_on_file

    try:
        return {(a.port, a.protocol.value): a.name for a in names_on_file(path)}
    except (OSError, sqlite3.Error, PortbookError):
        return {}  # a listing never fails for the store: it only names less


def list_sockets(
    *,
    protocols: Iterable[Protocol | str] | None = None,
    families: Iterable[Family | int] | None = None,
    states: Iterable[SocketState | str] | None = None,
    listening: bool = False,
    port: int | PortRange | None = None,
    pid: int | None = None,
    user: str | int | None = None,
    program: str | None = None,
    owners: bool = True,
    backend: SocketBackend | None = None,
    netns: str | None = None,
) -> list[Socket]:
    """Sockets of this machine, filtered; every filter given must hold.

    ``listening=True`` keeps TCP ``LISTEN`` and unconnected bound UDP
    (``UNCONN``) sockets. ``port`` is a local port or a :class:`PortRange`.
    ``pid``, ``user`` (name or uid of a holding process, or the socket's uid)
    and ``program`` (process name or command basename) select by holder.
    Every holder of every socket listed is found, whatever the filters:
    every process's descriptors are read. ``owners=False`` skips that walk
    (``processes`` stays empty). Without root, holders of other users'
    sockets cannot be seen: such sockets are still listed, with
    ``owner_note`` saying so.

    ``netns`` reads other network namespaces instead of the caller's own:
    ``"all"``, a name (``host``, an ``ip netns`` name, a container's name or
    id prefix), a pid or a namespace file; each socket's ``netns`` says
    which. :func:`socket_table` also says which namespaces could not be read.
    Raises :class:`NotFoundError` when ``netns`` names no namespace.
    """
    chosen = socket_filter(
        protocols=protocols,
        families=families,
        states=states,
        listening=listening,
        port=port,
        pid=pid,
        user=user,
        program=program,
        owners=owners,
        netns=netns,
    )
    return read_sockets(chosen, backend=backend, names=_port_names)


def socket_table(
    query: PortQuery | None = None,
    *,
    netns: str | None = None,
    backend: SocketBackend | None = None,
    **filters: Any,
) -> SocketTable:
    """:func:`list_sockets` (same ``filters``), with what was read and what was not.

    ``query`` (from :func:`resolve_ports`) limits the table to its ports and
    address, as :func:`find_sockets` does. The answer's ``namespaces`` are
    those read (with ``netns``), its ``notes`` what could not be read and
    why, and, without ``netns``, ``elsewhere`` the other network namespaces
    that hold sockets these filters select. ``inside=False`` (a filter
    :func:`list_sockets` does not take) spares reading each container's
    namespace for who listens behind a published port:
    ``published.listeners`` stays empty.
    """
    from portbook._live.records import SocketTable

    if query is None:
        chosen = socket_filter(netns=netns, **filters)
        return read_table(chosen, backend=backend, names=_port_names)
    if query.protocol is not None:
        filters["protocols"] = [query.protocol]
    sockets: list[Socket] = []
    spaces: dict[int | None, Any] = {}
    notes: dict[str, None] = {}
    others: dict[Any, int | None] = {}
    for ports in query.ports:
        chosen = socket_filter(port=ports, netns=netns, **filters)
        table = read_table(chosen, backend=backend, names=_port_names)
        sockets.extend(table.sockets)
        spaces.update((ns.inode, ns) for ns in table.namespaces)
        notes.update(dict.fromkeys(table.notes))
        for ns, count in table.elsewhere:
            before = others.get(ns, 0)
            others[ns] = None if count is None or before is None else before + count
    return SocketTable(
        tuple(_on_host(sockets, query)),
        tuple(spaces.values()),
        tuple(notes),
        tuple(others.items()),
    )


def socket_stream(
    *, netns: str | None = None, backend: SocketBackend | None = None, **filters: Any
) -> SocketStream:
    """:func:`socket_table` (same filters, no ``query``) with each socket built as it is iterated.

    For a caller that handles each socket once and drops it, as ``ls --json``
    writes the table out: the records are never all alive together (at
    50,000 sockets, about 13 MiB less). Everything is read before this
    returns, so the errors are raised here; the stream's ``namespaces``,
    ``notes`` and ``elsewhere`` are known before the first socket. Iterate
    it once, as a file is read.
    """
    chosen = socket_filter(netns=netns, **filters)
    return read_stream(chosen, backend=backend, names=_port_names)


def sockets_on_port(
    port: int,
    protocol: Protocol | str | None = None,
    *,
    owners: bool = True,
    backend: SocketBackend | None = None,
    netns: str | None = None,
) -> list[Socket]:
    """Every socket whose local port is exactly ``port`` (any state), with its holders."""
    return list_sockets(
        protocols=None if protocol is None else [protocol],
        port=port,
        owners=owners,
        backend=backend,
        netns=netns,
    )


def watch_sockets(
    *, interval: float = 1.0, count: int | None = None, **filters: Any
) -> Iterator[SocketChanges]:
    """Refresh :func:`list_sockets` (same filters) every ``interval`` seconds.

    Yields a :class:`SocketChanges` at once and then after each interval,
    ``count`` times in all (forever when ``None``). Raises
    :class:`UsageError` for an interval that is not a positive number or a
    count below 1, and whatever :func:`list_sockets` raises.
    """
    from portbook._live.watch import watch

    socket_filter(**{k: v for k, v in filters.items() if k != "backend"})  # fail now, not later
    return watch(lambda: list_sockets(**filters), interval=interval, count=count)


@record
class NameStatus:
    """A name, and whether a program is listening on its port right now (and which).

    ``processes`` may be empty while ``listening`` is true: the socket is
    there but its owner is not visible (another user's process without root).
    ``held_by`` is the live ``run`` lease on the name, if any.
    """

    assignment: Assignment
    listening: bool
    processes: tuple[SocketProcess, ...]
    held_by: Lease | None = None

    def to_json(self) -> dict[str, Any]:
        """One entry of ``names --json``: the assignment, ``listening`` and ``processes``."""
        return {
            **self.assignment.to_json(),
            "listening": self.listening,
            "processes": [p.to_json() for p in self.processes],
        }


def name_status(
    *, store: Store | None = None, listeners: HolderCheck | None = None
) -> list[NameStatus]:
    """Every name, with whether a program listens on its port now, and which.

    One read of the live table answers for every name; ``listeners``
    replaces it with a check of one (port, protocol) at a time.
    """
    import time

    from portbook._names.assignments import all_names
    from portbook._names.leases import is_live, leases_by_port
    from portbook._names.store import default_store

    with (store or default_store()).read() as conn:
        names = all_names(conn)
        leases = leases_by_port(conn)
    check = listeners or _listeners_now({(a.port, a.protocol.value) for a in names})
    now = time.time()
    result = []
    for a in names:
        listening, procs = check(a.port, a.protocol)
        lease = leases.get(a.port)
        if lease is not None and (lease.name != a.name or not is_live(lease, now)):
            lease = None
        result.append(NameStatus(a, listening, procs, lease))
    return result


def _listeners_now(wanted: set[tuple[int, str]]) -> HolderCheck:
    """Who listens on each wanted (port, protocol), from one read of the live table."""
    found: dict[tuple[int, str], list[Socket]] = {}
    if wanted:
        try:
            for sock in list_sockets(listening=True):
                key = (sock.local_port, sock.protocol.value)
                if key in wanted:
                    found.setdefault(key, []).append(sock)
        except SocketTableError:
            return _probing_check
    return lambda port, protocol: _holders_of(found.get((port, protocol.value), []))


def kept_by(port: int, *, store: Store | None = None) -> tuple[Assignment | None, Lease | None]:
    """The name and the live lease that keep ``port`` in the store (``None`` where none does).

    A store that cannot be read keeps nothing.
    """
    import time

    from portbook._exceptions import PortbookError
    from portbook._names.assignments import name_on_port
    from portbook._names.leases import live_lease_on
    from portbook._names.store import default_store

    try:
        with (store or default_store()).read() as conn:
            return name_on_port(conn, port), live_lease_on(conn, port, time.time())
    except PortbookError:
        return None, None


def port_in_use(port: int, protocol: Protocol) -> tuple[bool, tuple[SocketProcess, ...]]:
    """Does a program hold ``protocol``/``port`` (any socket but TIME-WAIT), and which.

    The default of :attr:`PickPolicy.holders`.
    """
    from portbook._live.records import SocketState

    try:
        sockets = sockets_on_port(port, protocol)
    except SocketTableError:
        return _probing_check(port, protocol)
    return _holders_of([s for s in sockets if s.state is not SocketState.TIME_WAIT])


def _probing_check(port: int, protocol: Protocol) -> tuple[bool, tuple[SocketProcess, ...]]:
    # No socket table on this system: a port that cannot be bound is taken
    # by someone we cannot name.
    from portbook._names.names import families
    from portbook._names.picker import probe_free

    return (not probe_free(port, (protocol,), families()), ())


def _holders_of(sockets: list[Socket]) -> tuple[bool, tuple[SocketProcess, ...]]:
    procs: dict[int, SocketProcess] = {}
    for sock in sockets:
        for proc in sock.processes:
            procs.setdefault(proc.pid, proc)
    return bool(sockets), tuple(sorted(procs.values(), key=lambda p: p.pid))


@record
class PortQuery:
    """What a user named a port by, resolved: the ports, protocol and address it means.

    ``source`` says how: ``"number"`` (a port or range), ``"name"`` (one of
    your names, from the store) or ``"service"`` (a service name of the
    book: every port it names, as ``http-alt`` is 591, 8008 and 8080).
    ``host`` is an IP address, ``"localhost"``, or ``None`` for any address.
    """

    text: str
    ports: tuple[PortRange, ...]
    protocol: Protocol | None
    host: IPv4Address | IPv6Address | str | None
    source: str

    def __str__(self) -> str:
        return ", ".join(str(r) for r in self.ports)


def resolve_ports(text: str, *, store: Store | None = None) -> PortQuery:
    """Resolve ``who``'s argument: ``5432``, ``tcp/5432``, ``[::1]:8080``, ``8000-8100``,
    one of your names (``api``: the store first) or a service name (``postgresql``).

    Raises :class:`InvalidPortSpecError` for text that is none of these and
    :class:`NotFoundError` for a name neither you nor the book know.
    """
    from portbook._exceptions import NotFoundError, UsageError
    from portbook._ports import Protocol, parse_port_spec

    spec = parse_port_spec(text)
    if spec.protocol is not None and spec.protocol not in (Protocol.TCP, Protocol.UDP):
        raise UsageError(f"the live table shows tcp and udp sockets, not {spec.protocol.value}")
    if spec.host is not None and isinstance(spec.host, str) and spec.host != "localhost":
        raise UsageError("give an IP address (or localhost), not a host name, before the port")
    if spec.ports is not None:
        return PortQuery(text, (spec.ports,), spec.protocol, spec.host, "number")
    assert spec.name is not None
    mine = _your_name(spec.name, store)
    if mine is not None and spec.protocol in (None, mine.protocol):
        from portbook._ports import PortRange

        return PortQuery(text, (PortRange(mine.port, mine.port),), mine.protocol, None, "name")
    ports = _service_ports(spec.name, spec.protocol)
    if not ports:
        raise NotFoundError(f"no port is known by the name {spec.name!r}")
    return PortQuery(text, ports, spec.protocol, None, "service")


def _your_name(name: str, store: Store | None) -> Assignment | None:
    from portbook._exceptions import PortbookError, UsageError
    from portbook._names.names import get

    try:
        return get(name, store=store)
    except UsageError:
        return None  # not a valid name of yours ("914c/g"): only the book's
    except PortbookError:
        return None  # not one of yours, or no store to read: the book answers


def _service_ports(name: str, protocol: Protocol | None) -> tuple[PortRange, ...]:
    """Every port or range the book gives ``name`` (an alias too), in port order."""
    from portbook._book.book import lookup

    found = {s.ports for s in lookup(name, protocol) if s.ports is not None}
    return tuple(sorted(p for p in found if p is not None))


def single_port(text: str, *, store: Store | None = None) -> tuple[int, Protocol | None]:
    """One port named by ``text``: a number, one of your names, or a service with one port.

    Raises :class:`InvalidPortSpecError` when ``text`` names a range or a
    service with several ports (``http-alt`` is 591, 8008 and 8080).
    """
    from portbook._exceptions import InvalidPortSpecError

    query = resolve_ports(text, store=store)
    if len(query.ports) != 1 or not query.ports[0].single:
        raise InvalidPortSpecError(text, f"expected one port, and {text!r} is {query}")
    return query.ports[0].first, query.protocol


def find_sockets(
    query: PortQuery, *, backend: SocketBackend | None = None, netns: str | None = None
) -> list[Socket]:
    """Every socket (any state) on the ports ``query`` names, on its address if it has one."""
    protocols = None if query.protocol is None else [query.protocol]
    found: list[Socket] = []
    for ports in query.ports:
        found.extend(list_sockets(protocols=protocols, port=ports, backend=backend, netns=netns))
    return _on_host(found, query)


def _on_host(found: list[Socket], query: PortQuery) -> list[Socket]:
    """The sockets of ``found`` on ``query``'s address (all of them when it has none)."""
    from ipaddress import ip_address

    from portbook._addresses import unmapped
    from portbook._live.records import Exposure

    if query.host == "localhost":
        return [s for s in found if s.exposure is Exposure.LOOPBACK]
    if query.host is not None:
        host = ip_address(query.host)
        return [s for s in found if unmapped(s.local_address) == unmapped(host)]
    return found


public(NameStatus, PortQuery)
