"""What is behind each socket: its holders' container and unit, and where a published port leads.

The process holding a port is often not the program a user means: a
container's server is held on the host by ``docker-proxy``, ``dockerd``,
``conmon`` or ``rootlessport`` (see :mod:`portbook._live.published`), and a
server on a systemd machine is a unit, not a pid. :func:`look_behind` answers
for one listing, after the owner walk: each holder's container and unit, each
published host socket's container, target and the processes listening on
that target inside the container's own network namespace.

It reads only where something can be told, decided cheaply first by the
live table (:func:`portbook._live.table.containers_running`,
:func:`~portbook._live.table.systemd_running`, or a holder that is a
runtime's helper), so that ``portbook`` on a machine with neither containers
nor systemd does not even import this module.
Read-only throughout: no runtime is started or asked through its API.
"""

from __future__ import annotations

import os

from portbook._live.backends.base import holder_keys
from portbook._live.table import HOLDER_PROGRAMS
from portbook._proc import PROC
from portbook._record import field, record, replace

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from portbook._live.backends.base import RawSocket, TableQuery
    from portbook._live.cgroups import CgroupContainer, Unit
    from portbook._live.containers import Container, ContainerIndex
    from portbook._live.netns import Netns
    from portbook._live.owners import OwnerScan
    from portbook._live.processes import ProcessInfo
    from portbook._live.published import Published
    from portbook._live.records import SocketProcess

    #: The rows of one namespace: its Netns (``None``: the caller's own, read without netns).
    Tables = Sequence[tuple[Netns | None, Iterable[RawSocket]]]

__all__ = ["Looked", "container_tables", "look_behind", "port_forwards"]

_TCP_LISTEN = 10
_CLOSE = 7


@record
class Looked:
    """What :func:`look_behind` found for one listing.

    ``processes`` maps a holder's pid to its (container, unit); ``published``
    a host socket's inode to where it leads; ``notes`` says what could not
    be read inside a container. ``shown`` are the namespace files of the
    containers the listing names (a hint need not point at them again).
    """

    processes: dict[int, tuple[Container | None, Unit | None]]
    published: dict[int, Published]
    details: dict[int, ProcessInfo]
    notes: tuple[str, ...] = ()
    shown: frozenset[str] = frozenset()
    #: socket inode -> (container, unit) of the cgroup that made it, for sockets no
    #: visible process holds (another user's, without root; pid 1's when /proc/1 is closed)
    sockets: dict[int, tuple[Container | None, Unit | None]] = field(default_factory=dict)


class _Describer:
    """Each pid's container and unit, read at most once (one per listing)."""

    def __init__(
        self, *, containers: bool, units: bool, proc: str, index: ContainerIndex | None
    ) -> None:
        self.proc = proc
        self.units = units
        self.index = index
        if containers and index is None:
            from portbook._live.containers import ContainerIndex

            self.index = ContainerIndex(proc)
        self.found: dict[int, tuple[Container | None, Unit | None]] = {}

    def describe(self, pid: int) -> tuple[Container | None, Unit | None]:
        found = self.found.get(pid)
        if found is None:
            container = self.index.container_of(pid) if self.index is not None else None
            found = self.found[pid] = (container, self._unit(pid))
        return found

    def _unit(self, pid: int) -> Unit | None:
        if not self.units:
            return None
        if self.index is not None:
            return self.index.unit_of(pid)
        from portbook._live.cgroups import read_cgroup, unit_from_cgroup

        paths = read_cgroup(pid, self.proc)
        return unit_from_cgroup(paths) if paths is not None else None


def look_behind(
    tables: Tables,
    scan: OwnerScan | None,
    details: Mapping[int, ProcessInfo],
    *,
    index: ContainerIndex | None = None,
    containers: bool | None = None,
    units: bool | None = None,
    inside: bool = True,
    queries: Sequence[TableQuery] = (),
    proc: str = PROC,
) -> Looked | None:
    """The containers, units and published ports behind the holders of ``tables``' sockets.

    ``None`` when nothing can be told here (no container runs, systemd does
    not manage the machine, and no holder is a runtime's helper): then not
    one file more is read. ``index`` (the listing reads other namespaces,
    and has named them with it) looks for containers whatever the cheap
    tests say; ``containers`` and ``units`` decide instead of those tests.
    ``inside=False`` leaves out who listens inside each container (each
    container's namespace read), for a caller that does not show it.
    ``queries`` are the listing's: the host sockets no visible process
    holds are named by the cgroup that made them (a second dump, for their
    ``INET_DIAG_CGROUP_ID``), where there are any.
    """
    helpers = any(info.name in HOLDER_PROGRAMS for info in details.values())
    if containers is None or units is None:
        from portbook._live.table import behind_wanted

        wanted = behind_wanted(details, index is not None)
        containers = wanted[0] if containers is None else containers
        units = wanted[1] if units is None else units
    if not containers and not units:
        return None
    describer = _Describer(containers=containers, units=units, proc=proc, index=index)
    for pid in details:
        describer.describe(pid)
    unseen = _unseen(tables, scan)
    by_socket = _by_cgroup(unseen, queries, describer) if unseen and queries else {}
    published: dict[int, Published] = {}
    notes: list[str] = []
    all_details = dict(details)
    if describer.index is not None and helpers:
        published = _published(tables, scan, details, describer.index)
        if published and scan is not None and inside:
            published, notes = _listeners_inside(published, tables, scan, describer, all_details)
    shown: frozenset[str] = frozenset()
    if describer.index is not None:
        idents = {c.id for c, _ in describer.found.values() if c is not None}
        idents |= {p.container.id for p in published.values() if p.container is not None}
        shown = frozenset(describer.index.netns_files(idents))
    return Looked(describer.found, published, all_details, tuple(notes), shown, by_socket)


def _unseen(tables: Tables, scan: OwnerScan | None) -> list[int]:
    """The inodes of the host's sockets that no visible process holds (TIME-WAIT aside)."""
    single = scan.single if scan is not None else {}
    shared = scan.shared if scan is not None else {}
    found: list[int] = []
    for ns, rows in tables:
        if ns is not None and ns.kind != "host":
            continue  # the cgroup ids are read in this namespace only
        for inode, pids in holder_keys(rows):
            if inode and not pids and inode not in single and inode not in shared:
                found.append(inode)
    return found


def _by_cgroup(
    unseen: list[int], queries: Sequence[TableQuery], describer: _Describer
) -> dict[int, tuple[Container | None, Unit | None]]:
    """Socket inode -> (container, unit) named by the cgroup v2 directory that made the socket.

    The kernel reports that cgroup's id with every socket (sock_diag's
    ``INET_DIAG_CGROUP_ID``, the directory's inode): it names a service or a
    container without reading any process's descriptors, so also for other
    users' sockets without root. It is the creating task's cgroup at
    creation time: a socket a helper made and handed on names the helper's.
    """
    from portbook._exceptions import SocketTableError
    from portbook._live.cgroup_ids import socket_cgroup_ids
    from portbook._live.cgroups import cgroup_paths_by_id, container_from_path, unit_from_path

    ids: dict[int, int] = {}
    try:
        for query in queries:
            ids.update(socket_cgroup_ids(query))
    except SocketTableError:
        return {}
    wanted = {ids[inode] for inode in unseen if inode in ids}
    paths = cgroup_paths_by_id(wanted) if wanted else {}
    found: dict[int, tuple[Container | None, Unit | None]] = {}
    named: dict[str, tuple[Container | None, Unit | None]] = {}
    for inode in unseen:
        path = paths.get(ids.get(inode, -1))
        if path is None or path == "/":
            continue
        if path not in named:
            unit = unit_from_path(path) if describer.units else None
            made = container_from_path(path) if describer.index is not None else None
            named[path] = (_known(made, describer.index) if made is not None else None, unit)
        if named[path] != (None, None):
            found[inode] = named[path]
    return found


def _known(made: CgroupContainer, index: ContainerIndex | None) -> Container:
    """The container a cgroup path names, with its name where the runtime's state says it."""
    from portbook._live.cgroups import Runtime
    from portbook._live.containers import Container

    if index is not None and made.runtime in (Runtime.DOCKER, None):
        known = index.docker_container(made.id)
        if known is not None:
            return index.from_runtime(known)
    if index is not None and made.runtime is Runtime.PODMAN:
        state = index.podman_state(None).get(made.id)
        if state is not None:
            return index.from_runtime(state)
    return Container(made.runtime, made.id, None, pod_uid=made.pod_uid)


def _holder_rows(
    tables: Tables, scan: OwnerScan | None, details: Mapping[int, ProcessInfo]
) -> Iterable[tuple[RawSocket, int]]:
    """(row, holder pid) of each host socket a runtime's helper holds."""
    single = scan.single if scan is not None else {}
    shared = scan.shared if scan is not None else {}
    for ns, rows in tables:
        if ns is not None and ns.kind != "host":
            continue  # published ports are the host's; a container's own sockets are not
        for row in rows:
            if not row.inode:
                continue
            if row.pids is not None:
                pids: tuple[int, ...] = row.pids
            else:
                one = single.get(row.inode)
                pids = (one,) if one is not None else shared.get(row.inode, ())
            for pid in pids:
                info = details.get(pid)
                if info is not None and info.name in HOLDER_PROGRAMS:
                    yield row, pid
                    break


def _published(
    tables: Tables,
    scan: OwnerScan | None,
    details: Mapping[int, ProcessInfo],
    index: ContainerIndex,
) -> dict[int, Published]:
    """Socket inode -> where it leads, for the host sockets the runtimes' helpers hold.

    Listening sockets first; a helper's connections on the same host port
    (``docker-proxy``'s accepted ones) lead where its listener does.
    """
    from portbook._live.published import published_by

    found: dict[int, Published] = {}
    by_port: dict[tuple[int, str, int], Published] = {}
    later: list[tuple[RawSocket, int]] = []
    for row, pid in _holder_rows(tables, scan, details):
        if not _listening(row):
            later.append((row, pid))
            continue
        answer = published_by(index, pid, row.protocol, _text(row), row.local_port)
        if answer is not None and answer.host_port == row.local_port:
            found[row.inode] = answer
            by_port[(pid, row.protocol, row.local_port)] = answer
    for row, pid in later:
        answer = by_port.get((pid, row.protocol, row.local_port))
        if answer is not None:
            found[row.inode] = answer
    return found


def _listening(row: RawSocket) -> bool:
    return row.state == _TCP_LISTEN if row.protocol == "tcp" else row.state == _CLOSE


def _text(row: RawSocket) -> str:
    import _socket

    family = _socket.AF_INET if row.family == 4 else _socket.AF_INET6
    text = _socket.inet_ntop(family, row.local_address)
    return text[7:] if text.startswith("::ffff:") and "." in text else text


def _listeners_inside(
    published: dict[int, Published],
    tables: Tables,
    scan: OwnerScan,
    describer: _Describer,
    details: dict[int, ProcessInfo],
) -> tuple[dict[int, Published], list[str]]:
    """``published`` with the processes that listen on each target inside its container."""
    proc = describer.proc
    inside, notes = container_tables(set(published.values()), tables, proc=proc)
    wanted: dict[Published, list[int]] = {}
    for answer in set(published.values()):
        rows = inside.get(answer.container.id) if answer.container is not None else None
        if rows is None or answer.target_port is None:
            continue
        pids: list[int] = []
        for row in rows:
            if (row.protocol, row.local_port) == (
                answer.protocol,
                answer.target_port,
            ) and _listening(row):
                holders = scan.shared.get(row.inode) or (
                    (scan.single[row.inode],) if row.inode in scan.single else ()
                )
                pids.extend(p for p in holders if p not in pids)
        wanted[answer] = pids
    missing = sorted({p for pids in wanted.values() for p in pids} - details.keys())
    if missing:
        from portbook._live.processes import process_details

        details.update(process_details(missing, proc=proc))
    made = {
        answer: replace(answer, listeners=tuple(_process(p, details, describer) for p in pids))
        for answer, pids in wanted.items()
    }
    return {inode: made.get(a, a) for inode, a in published.items()}, notes


def _process(pid: int, details: Mapping[int, ProcessInfo], describer: _Describer) -> SocketProcess:
    from portbook._live.records import SocketProcess

    info = details.get(pid)
    container, unit = describer.describe(pid)
    if info is None:
        return SocketProcess(pid, None, None, None, container, unit)
    return SocketProcess(pid, info.name, info.cmdline, info.user, container, unit)


def container_tables(
    published: Iterable[Published],
    tables: Tables = (),
    *,
    queries: Sequence[TableQuery] | None = None,
    proc: str = PROC,
) -> tuple[dict[str, Iterable[RawSocket]], list[str]]:
    """Container id -> the listening sockets of its network namespace, for each published port.

    A namespace already in ``tables`` (read for ``netns``) is not read
    again. The others are entered through a process in the container (its
    main process, else ``rootlessport`` when its main thread sits there)
    and read as :func:`portbook._live.netns.read_namespace_tables` reads:
    over netlink from a thread inside (root), where the kernel walks only
    the listening sockets; ``/proc/PID/net`` otherwise, which walks every
    socket of the machine. ``notes`` says which could not be read.
    """
    from portbook._live.backends.base import TableQuery
    from portbook._live.netns import Netns, NetnsKind, read_namespace_tables

    found: dict[str, Iterable[RawSocket]] = {}
    for ns, rows in tables:
        if ns is not None and ns.container is not None:
            found.setdefault(ns.container.id, rows)
    wanted: dict[str, Netns] = {}
    for answer in published:
        container = answer.container
        if container is None or container.id in found or container.id in wanted:
            continue
        entry = _inside(answer, proc)
        if entry is None:
            continue
        pid, inode = entry
        name = container.name or container.short_id
        wanted[container.id] = Netns(
            inode, NetnsKind.CONTAINER, name, None, None, (pid,), container
        )
    notes: list[str] = []
    if wanted:
        asked = queries or (
            TableQuery(frozenset({"tcp"}), state_mask=1 << _TCP_LISTEN),
            TableQuery(frozenset({"udp"}), state_mask=1 << _CLOSE),
        )
        for ident, table in zip(
            wanted, read_namespace_tables(list(wanted.values()), asked, proc=proc), strict=True
        ):
            if table.note is not None:
                notes.append(f"inside container {table.netns.name}: {table.note}")
            else:
                found[ident] = table.rows
    return found, notes


def _inside(answer: Published, proc: str) -> tuple[int, int | None] | None:
    """(pid, namespace inode) of a process in the container's namespace, never the caller's own.

    The inode is ``None`` for another user's process (only root may read it).
    """
    container = answer.container
    candidates = [container.pid] if container is not None and container.pid else []
    if answer.by == "rootlessport" and answer.holder is not None:
        # Its main thread is in the container's namespace, or in the host's (Go
        # enters the namespace from whichever thread runs the goroutine).
        candidates.append(answer.holder)
    try:
        own = os.stat(f"{proc}/thread-self/ns/net").st_ino
    except OSError:
        own = None
    for pid in candidates:
        try:
            inode: int | None = os.stat(f"{proc}/{pid}/ns/net").st_ino
        except PermissionError:
            inode = None  # another user's process: its /proc/PID/net is still readable
        except OSError:
            continue  # gone
        if inode is None or inode != own:
            return pid, inode
    return None


def port_forwards(port: int, protocol: str | None = None) -> list[Published]:
    """The DNAT rules that forward host ``port`` (no socket needed), each with where it leads.

    Reads the rules with ``iptables-save`` and ``nft`` (root). Raises
    :class:`~portbook.UnsupportedError` when rules exist to be read but none
    could be (without root, every tool is refused).
    """
    from portbook._exceptions import UnsupportedError
    from portbook._live.containers import ContainerIndex
    from portbook._live.nat import read_dnat_rules, rules_for_port
    from portbook._live.published import published_by_rule

    read = read_dnat_rules()
    if not read.rules and read.notes:
        raise UnsupportedError("cannot read the DNAT rules: " + "; ".join(read.notes))
    index = ContainerIndex()
    found: list[Published] = []
    for proto in (protocol,) if protocol is not None else ("tcp", "udp"):
        for rule in rules_for_port(read.rules, proto, port):
            answer = published_by_rule(index, rule, port)
            if answer not in found:
                found.append(answer)
    return found
