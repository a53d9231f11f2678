"""The three names joined: the live table with what the book calls each port, and your names.

The book, the live table and your names know nothing of each other; this
module is where they meet. :func:`list_sockets` reads the live table and
hands it the book's names for its ports; :func:`name_status` tells which of
your names a program serves right now; the tools around ports (``kill``,
``route``, ``wait``, ``ephemeral``) read the table through it.
"""

from __future__ import annotations

from portbook._exceptions import SocketTableError
from portbook._live.table import read_sockets, socket_filter
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Any

    from portbook._live.backends.base import SocketBackend
    from portbook._live.records import Socket, SocketProcess, SocketState
    from portbook._live.watch import SocketChanges
    from portbook._names.assignments import Assignment
    from portbook._names.leases import Lease
    from portbook._names.picker import HolderCheck
    from portbook._names.store import Store
    from portbook._ports import Family, PortRange, Protocol

__all__ = [
    "NameStatus",
    "list_sockets",
    "name_status",
    "port_in_use",
    "sockets_on_port",
    "watch_sockets",
]


def _book_names(pairs: set[tuple[int, str]]) -> Mapping[tuple[int, str], str | None]:
    """What the book calls each (port, protocol): one bulk question for a whole table."""
    from portbook._book.book import default_book

    return default_book().service_names(pairs)


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
    )
    return read_sockets(chosen, backend=backend, names=_book_names)


def sockets_on_port(
    port: int,
    protocol: Protocol | str | None = None,
    *,
    owners: bool = True,
    backend: SocketBackend | None = None,
) -> list[Socket]:
    """Every socket whose local port is exactly ``port`` (any state), with its holders."""
    return list_sockets(
        protocols=None if protocol is None else [protocol],
        port=port,
        owners=owners,
        backend=backend,
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


public(NameStatus)
