"""Reading the live table: every TCP and UDP socket of this machine, and who holds it.

:func:`read_sockets` is the one path: it checks the filters, asks the backend
(the kernel filters by protocol, family, state and port where it can), finds
every holder of every socket (:mod:`portbook._live.owners`), has the records
built in one place (:func:`portbook._live.build.iter_sockets`) and keeps the
sockets the owner filters select. What a port is called comes from outside,
through ``names``: the live table knows nothing of the book or your names.
"""

from __future__ import annotations

import os

from portbook._exceptions import SocketTableError, UsageError
from portbook._live.backends.base import (
    ALL_STATES_MASK,
    TCP_CLOSE,
    TCP_LISTEN,
    RawRows,
    RawSocket,
    TableQuery,
    holder_keys,
    port_pairs,
)
from portbook._live.build import iter_sockets, state_mask, unnamed
from portbook._live.records import Socket, SocketState, SocketTable
from portbook._ports import Family, PortRange, Protocol, parse_protocol
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from portbook._live.backends.base import SocketBackend
    from portbook._live.behind import Looked, Tables
    from portbook._live.build import Namer
    from portbook._live.containers import ContainerIndex
    from portbook._live.netns import Netns
    from portbook._live.owners import OwnerScan
    from portbook._live.processes import ProcessInfo

    #: What the live table is handed to name its ports: the set of (port, protocol
    #: value) pairs of the table in, a namer of each pair out.
    PortNamer = Callable[[set[tuple[int, str]]], Namer]

__all__ = [
    "HOLDER_PROGRAMS",
    "SocketFilter",
    "SocketStream",
    "behind_wanted",
    "containers_running",
    "read_sockets",
    "read_stream",
    "read_table",
    "socket_backend",
    "socket_filter",
    "systemd_running",
]

_LIVE_PROTOCOLS = (Protocol.TCP, Protocol.UDP)
_LISTENING = frozenset({SocketState.LISTEN, SocketState.UNCONN})
_STATE_ALIASES = {"ESTABLISHED": "ESTAB", "UNCONNECTED": "UNCONN", "CLOSED": "CLOSE"}


def socket_backend() -> SocketBackend:
    """The backend portbook uses on this machine (netlink, procfs or psutil)."""
    from portbook._live.backends import choose_backend

    return choose_backend()


@record
class SocketFilter:
    """The filters of one listing, checked: what :func:`socket_filter` makes of the arguments."""

    protocols: frozenset[Protocol]
    families: frozenset[int]
    states: frozenset[SocketState] | None
    ports: tuple[int, int] | None
    pid: int | None
    user: str | int | None
    program: str | None
    owners: bool
    netns: str | None = None
    inside: bool = True  #: find who listens inside a container behind a published port


def socket_filter(
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
    netns: str | None = None,
    inside: bool = True,
) -> SocketFilter:
    """Check :func:`portbook.list_sockets`'s filters; :class:`UsageError` for a bad one."""
    if netns is not None and (not isinstance(netns, str) or not netns.strip() or "\0" in netns):
        raise UsageError(f"a network namespace is NAME, PID, PATH or all, not {netns!r}")
    wanted = _states(states)
    if listening:
        wanted = _LISTENING if wanted is None else wanted & _LISTENING
    if (pid is not None or user is not None or program is not None) and not owners:
        raise UsageError("selecting by pid, user or program needs owners=True")
    return SocketFilter(
        _protocols(protocols),
        _families(families),
        wanted,
        _ports(port),
        pid,
        user,
        program,
        owners,
        netns,
        inside,
    )


def read_sockets(
    chosen: SocketFilter,
    *,
    backend: SocketBackend | None = None,
    names: PortNamer | None = None,
) -> list[Socket]:
    """The sockets ``chosen`` selects, with every holder, each port named by ``names``.

    ``backend`` replaces the one chosen for this machine (then no fallback
    is tried). Raises :class:`SocketTableError` when no backend can read
    the table, :class:`NotFoundError` when ``chosen.netns`` names no
    namespace.
    """
    with _CollectorPaused():
        return list(_read(chosen, backend, names)[0])


def read_table(
    chosen: SocketFilter,
    *,
    backend: SocketBackend | None = None,
    names: PortNamer | None = None,
) -> SocketTable:
    """:func:`read_sockets` with the namespaces read and what could not be read or lies elsewhere.

    Without ``chosen.netns``, ``elsewhere`` names the other network
    namespaces that hold matching listening sockets, where any exist (a
    cheap test first: files in ``/run/netns`` or ``/run/docker/netns``).
    """
    with _CollectorPaused():
        stream = read_stream(chosen, backend=backend, names=names)
        sockets = tuple(stream)
    return SocketTable(sockets, stream.namespaces, stream.notes, stream.elsewhere)


def read_stream(
    chosen: SocketFilter,
    *,
    backend: SocketBackend | None = None,
    names: PortNamer | None = None,
) -> SocketStream:
    """:func:`read_table` with each record built only as the caller iterates.

    The rows, holders and names are read before this returns (and so are
    the errors); each record is made when it is asked for, so a caller that
    writes each socket out and drops it never holds the whole table.
    """
    shown: list[frozenset[str]] = []
    with _CollectorPaused():
        sockets, spaces, notes = _read(chosen, backend, names, shown)
    others: tuple[tuple[Netns, int | None], ...] = ()
    if chosen.netns is None and any(map(_has_entries, _NAMESPACE_DIRS)):
        from portbook._live.spaces import elsewhere

        # The namespaces of the containers the table already names are not
        # pointed at again (nor read for it).
        skip = shown[0] if shown else frozenset()
        others = elsewhere(_listening(chosen), named_dirs=_NAMESPACE_DIRS, skip=skip)
    return SocketStream(sockets, spaces, notes, others)


class SocketStream:
    """The sockets of one listing, each built as it is asked for, and what was read and what not.

    Iterate it once, as a file is read: a second pass yields nothing.
    ``namespaces``, ``notes`` and ``elsewhere`` are those of
    :class:`SocketTable`, known before the first socket.
    """

    def __init__(
        self,
        sockets: Iterator[Socket],
        namespaces: tuple[Netns, ...],
        notes: tuple[str, ...],
        elsewhere: tuple[tuple[Netns, int | None], ...],
    ) -> None:
        self._sockets = sockets
        self.namespaces = namespaces
        self.notes = notes
        self.elsewhere = elsewhere

    def __iter__(self) -> Iterator[Socket]:
        return self._sockets


public(SocketStream)

# Where other network namespaces have files (ip netns and rootful Podman; Docker):
# as portbook._live.netns.NAMED_NETNS_DIRS, not imported for one listdir each.
_NAMESPACE_DIRS = ("/run/netns", "/run/docker/netns")


def _has_entries(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


class _CollectorPaused:
    """The cyclic garbage collector paused for the ``with`` block, as it was after.

    Tens of thousands of raw rows and records (none in a reference cycle)
    would otherwise set off collections that traverse all of them again and
    again, about a tenth of a 20,000-socket listing. Reference counting
    still frees everything. (A class, not contextlib: `portbook who` does
    not otherwise import contextlib.)
    """

    def __enter__(self) -> None:
        import gc

        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was:
            import gc

            gc.enable()


def _read(
    chosen: SocketFilter,
    backend: SocketBackend | None,
    names: PortNamer | None,
    shown: list[frozenset[str]] | None = None,
) -> tuple[Iterator[Socket], tuple[Netns, ...], tuple[str, ...]]:
    """Rows, names and holders read (the walk side by side with the rest: see ``walk_during``).

    Returns the records to come (built as they are iterated, the owner
    filters applied), the namespaces read and the notes. ``shown`` receives
    the namespace files of the containers found behind the holders.
    """
    source = backend if backend is not None else socket_backend()
    fallback = backend is None
    notes: list[str] = []
    index: ContainerIndex | None = None
    if chosen.netns is not None:
        from portbook._live.containers import ContainerIndex

        index = ContainerIndex()  # names the namespaces, then the holders

    def rows_and_names() -> tuple[Tables, Namer]:
        tables: Tables
        if chosen.netns is None:
            tables = [(None, _rows(chosen, source, fallback=fallback))]
        else:
            from portbook._live.spaces import namespace_rows

            tables = namespace_rows(
                chosen.netns,
                _queries(chosen),
                lambda: _rows(chosen, source, fallback=fallback),
                notes,
                index=index,
            )
        pairs: set[tuple[int, str]] = set()
        for _, rows in tables:
            pairs |= port_pairs(rows)
        return tables, (names(pairs) if names is not None and pairs else unnamed)

    scan: OwnerScan | None = None
    if chosen.owners and not source.provides_owners:
        from portbook._live.owners import walk_during

        (tables, named), scan = walk_during(rows_and_names, work_units=_socket_count_work)
    else:
        tables, named = rows_and_names()
    from portbook._live.processes import process_details

    details = process_details(_owning_pids(tables, scan)) if chosen.owners else {}
    behind: Looked | None = None
    # Even with no holder seen, a socket's cgroup may name its unit or container.
    wanted = behind_wanted(details, index is not None) if chosen.owners else (False, False)
    if wanted != (False, False):
        from portbook._live.behind import look_behind

        behind = look_behind(tables, scan, details, index=index, containers=wanted[0],
                             units=wanted[1], inside=chosen.inside,
                             queries=_queries(chosen))  # fmt: skip
        if behind is not None:
            details = behind.details
            notes.extend(behind.notes)
            if shown is not None:
                shown.append(behind.shown)
    spaces = tuple(ns for ns, _ in tables if ns is not None)
    built = _built(list(tables), scan=scan, details=details, names=named, behind=behind)
    return _selected(built, chosen), spaces, tuple(dict.fromkeys(notes))


def _built(
    tables: list[tuple[Netns | None, Iterable[RawSocket]]],
    *,
    scan: OwnerScan | None,
    details: Mapping[int, ProcessInfo],
    names: Namer,
    behind: Looked | None,
) -> Iterator[Socket]:
    """The records of ``tables``, in order; each table is let go once its records are made."""
    from portbook._machine import local_ranges

    ranges = local_ranges()
    viewer = os.geteuid() if hasattr(os, "geteuid") else 0
    tables.reverse()
    while tables:
        ns, rows = tables.pop()
        yield from iter_sockets(rows, scan=scan, processes=details, ranges=ranges, names=names,
                                viewer_uid=viewer, netns=ns, behind=behind)  # fmt: skip


#: The programs that hold published ports for a container runtime (their ``comm``).
HOLDER_PROGRAMS = frozenset({"docker-proxy", "dockerd", "conmon", "rootlessport", "slirp4netns"})

# The state directories of the OCI runtimes: one entry per running container.
# Docker's runc keeps them under its own root; containerd's per containerd
# namespace (k8s.io, default, moby); Podman and CRI-O use runc's or crun's
# default root; a rootless Podman its user's runtime directory.
_RUNTIME_ROOTS = ("/run/docker/runtime-runc/moby", "/run/runc", "/run/crun")
_NAMESPACED_ROOTS = ("/run/containerd/runc",)
_USER_RUNTIME_DIRS = ("runc", "crun")


def behind_wanted(details: Mapping[int, ProcessInfo], netns: bool) -> tuple[bool, bool]:
    """(look for containers, look for units): what can be told behind these holders, cheaply.

    Containers where the listing reads other namespaces (``netns``), a
    holder is a runtime's helper, or a container runs; units where systemd
    manages the machine. Decided here, in a few ``stat``-sized reads, so
    that a machine with neither imports none of their readers.
    """
    helpers = any(info.name in HOLDER_PROGRAMS for info in details.values())
    return netns or helpers or containers_running(), systemd_running()


def containers_running() -> bool:
    """Whether any container seems to run here, from the runtimes' state directories (cheap).

    Root also looks at every user's runtime directory (rootless Podman),
    others at their own.
    """
    if any(_has_entries(root) for root in _RUNTIME_ROOTS):
        return True
    for root in _NAMESPACED_ROOTS:
        try:
            spaces = os.listdir(root)
        except OSError:
            continue
        if any(_has_entries(os.path.join(root, space)) for space in spaces):
            return True
    uid = os.geteuid()
    try:
        users = os.listdir("/run/user") if uid == 0 else [str(uid)]
    except OSError:
        return False
    return any(
        _has_entries(os.path.join("/run/user", user, name))
        for user in users
        for name in _USER_RUNTIME_DIRS
    )


def systemd_running() -> bool:
    """Whether systemd manages this machine (``sd_booted()``'s test), so cgroups name units."""
    return os.path.isdir("/run/systemd/system")


def _listening(chosen: SocketFilter) -> list[TableQuery]:
    """``chosen``'s queries for listening sockets only (TCP LISTEN, UDP unconnected).

    The kernel keeps listeners in a table of their own, which it walks
    instead of every connection of the machine (one hash table for all
    namespaces): the hint of other namespaces costs one small walk each.
    """
    wanted = {"tcp": 1 << TCP_LISTEN, "udp": 1 << TCP_CLOSE}
    found = []
    for query in _queries(chosen):
        (protocol,) = query.protocols
        mask = query.state_mask & wanted[protocol]
        if mask:
            found.append(TableQuery(query.protocols, query.families, mask, query.ports))
    return found


def _queries(chosen: SocketFilter) -> list[TableQuery]:
    """One query per protocol ``chosen`` asks for (TCP and UDP need different state masks)."""
    queries = []
    for protocol in _LIVE_PROTOCOLS:
        if protocol not in chosen.protocols:
            continue
        mask = ALL_STATES_MASK if chosen.states is None else state_mask(chosen.states, protocol)
        if mask:
            queries.append(
                TableQuery(frozenset({protocol.value}), chosen.families, mask, chosen.ports)
            )
    return queries


def _rows(chosen: SocketFilter, source: SocketBackend, *, fallback: bool) -> RawRows:
    """The backend's rows for ``chosen``, one query per protocol."""
    result = RawRows()
    # TCP and UDP need different masks when states are given (UNCONN is
    # TCP_CLOSE for UDP), so each protocol is its own query.
    for query in _queries(chosen):
        try:
            result.add(source.sockets(query))
        except SocketTableError:
            if not fallback or source.name != "netlink":
                raise
            # Some sandboxes allow the netlink socket but refuse the dump:
            # /proc/net has the same table.
            from portbook._live.backends import ProcfsBackend

            source = ProcfsBackend()
            result.add(source.sockets(query))
    return result


def _owning_pids(tables: Tables, scan: OwnerScan | None) -> list[int]:
    """Every pid that holds one of the rows of ``tables``, for reading its details once."""
    pids: set[int] = set()
    single: dict[int, int] = scan.single if scan is not None else {}
    shared: dict[int, tuple[int, ...]] = scan.shared if scan is not None else {}
    single_get, shared_get = single.get, shared.get
    for _, rows in tables:
        for inode, holders in holder_keys(rows):
            if holders is not None:
                pids.update(holders)
            elif inode:
                pid = single_get(inode)
                if pid is not None:
                    pids.add(pid)
                else:
                    pids.update(shared_get(inode, ()))
    return sorted(pids)


def _selected(sockets: Iterator[Socket], chosen: SocketFilter) -> Iterator[Socket]:
    """The sockets whose holders match the owner filters (pid, user, program)."""
    tests: list[Callable[[Socket], bool]] = []
    if chosen.pid is not None:
        pid = chosen.pid
        tests.append(lambda s: any(p.pid == pid for p in s.processes))
    if chosen.user is not None:
        user = chosen.user
        tests.append(lambda s: _user_matches(s, user))
    if chosen.program is not None:
        program = chosen.program
        tests.append(lambda s: _program_matches(s, program))
    if not tests:
        return sockets
    return (s for s in sockets if all(test(s) for test in tests))


def _socket_count_work() -> int:
    """About how many TCP and UDP sockets this namespace has (/proc/net/sockstat*), as work.

    Reading one socket from netlink and naming its port cost about half of
    reading one descriptor link (measured on 20,000 sockets: ~1.6 us and
    ~0.7 us against ~4.5 us), so each socket counts 5 tenths of a link.
    """
    total = 0
    try:
        for name in ("/proc/net/sockstat", "/proc/net/sockstat6"):
            with open(name, "rb") as fh:
                for line in fh:
                    # "TCP: inuse N orphan N tw N ...", "UDP6: inuse N"
                    fields = line.split()
                    if fields and fields[0] in (b"TCP:", b"UDP:", b"TCP6:", b"UDP6:"):
                        for key in (b"inuse", b"tw"):
                            if key in fields:
                                total += int(fields[fields.index(key) + 1])
    except (OSError, ValueError, IndexError):
        return 0
    return total * 5


def _protocols(protocols: Iterable[Protocol | str] | None) -> frozenset[Protocol]:
    if protocols is None:
        return frozenset(_LIVE_PROTOCOLS)
    chosen = frozenset(p if isinstance(p, Protocol) else parse_protocol(p) for p in protocols)
    unsupported = chosen - set(_LIVE_PROTOCOLS)
    if unsupported:
        names = ", ".join(sorted(p.value for p in unsupported))
        raise UsageError(f"the live table shows tcp and udp sockets, not {names}")
    return chosen


def _families(families: Iterable[Family | int] | None) -> frozenset[int]:
    if families is None:
        return frozenset({4, 6})
    try:
        return frozenset(int(Family(int(f))) for f in families)
    except (TypeError, ValueError):
        raise UsageError(f"address families are 4 and 6, not {families!r}") from None


def _states(states: Iterable[SocketState | str] | None) -> frozenset[SocketState] | None:
    if states is None:
        return None
    chosen: set[SocketState] = set()
    for state in states:
        if isinstance(state, SocketState):
            chosen.add(state)
            continue
        key = state.strip().upper().replace("_", "-")
        try:
            chosen.add(SocketState(_STATE_ALIASES.get(key, key)))
        except ValueError:
            known = ", ".join(s.value for s in SocketState)
            raise UsageError(f"unknown socket state {state!r} (known: {known})") from None
    return frozenset(chosen)


def _ports(port: int | PortRange | None) -> tuple[int, int] | None:
    if port is None:
        return None
    checked = port if isinstance(port, PortRange) else PortRange(port, port)
    return (checked.first, checked.last)


def _user_matches(sock: Socket, user: str | int) -> bool:
    from portbook._proc import process_uid, user_name

    text = str(user)
    if text.isdigit():
        uid = int(text)
        return sock.uid == uid or any(process_uid(p.pid) == uid for p in sock.processes)
    return any(p.user == text for p in sock.processes) or user_name(sock.uid) == text


def _program_matches(sock: Socket, program: str) -> bool:
    for proc in sock.processes:
        if proc.name == program:
            return True
        if proc.cmdline and os.path.basename(proc.cmdline[0]) == program:
            return True
    return False
