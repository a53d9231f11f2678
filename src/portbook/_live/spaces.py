"""The live table across network namespaces: the rows of the ones asked for, and the others.

:func:`namespace_rows` reads the namespaces a ``netns`` spec selects (see
:func:`portbook._live.netns.select_namespaces`), each row kept with its
namespace so that a socket no process holds (TIME-WAIT) keeps it too. The
caller's own namespace is read by the live table's own backend, the others
as :func:`portbook._live.netns.read_namespace_tables` reads them.

:func:`elsewhere` is the hint of a listing read without ``netns``: the other
namespaces that hold matching sockets. It looks only at the namespaces that
have a file (``/run/netns``: ``ip netns`` and rootful Podman;
``/run/docker/netns``: Docker); the live table calls it only when one of
those directories has an entry, so that a machine without any pays one
``scandir`` per directory and nothing else.
"""

from __future__ import annotations

import os

from portbook._proc import PROC

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from portbook._live.backends.base import RawSocket, TableQuery
    from portbook._live.behind import Tables
    from portbook._live.containers import Container, ContainerIndex
    from portbook._live.netns import Netns

__all__ = ["elsewhere", "namespace_rows"]

_NAMED_DIRS = ("/run/netns", "/run/docker/netns")  # as portbook._live.netns.NAMED_NETNS_DIRS


def namespace_rows(
    spec: str,
    queries: Sequence[TableQuery],
    host_rows: Callable[[], Iterable[RawSocket]],
    notes: list[str],
    *,
    index: ContainerIndex | None = None,
    proc: str = PROC,
) -> Tables:
    """The rows of every namespace ``spec`` selects, each with its :class:`Netns`.

    ``host_rows`` reads the caller's own namespace. A namespace that cannot
    be read gets no rows and a sentence in ``notes``. Raises
    :class:`NotFoundError` or :class:`UsageError` for a spec that names no
    namespace or several.
    """
    from portbook._live.netns import (
        find_namespaces,
        own_namespace,
        read_namespace_tables,
        select_namespaces,
    )

    chosen = select_namespaces(spec, find_namespaces(proc=proc, containers=index), proc=proc)
    own = own_namespace(proc)
    foreign = [ns for ns in chosen if ns.inode != own]
    read = iter(read_namespace_tables(foreign, queries, proc=proc) if foreign else ())
    tables: list[tuple[Netns | None, Iterable[RawSocket]]] = []
    for ns in chosen:
        if ns.inode == own:
            tables.append((ns, host_rows()))
            continue
        table = next(read)
        if table.note is not None:
            notes.append(f"network namespace {ns.name} not read: {table.note}")
        tables.append((ns, table.rows))
    return tables


def elsewhere(
    queries: Sequence[TableQuery],
    *,
    named_dirs: Sequence[str] = _NAMED_DIRS,
    skip: frozenset[str] = frozenset(),
    proc: str = PROC,
) -> tuple[tuple[Netns, int | None], ...]:
    """The other namespaces with a file, and how many sockets matching ``queries`` each holds.

    Only those that hold any are returned; ``None`` as the count where a
    namespace could not be read (entering one needs root). Read as
    :func:`portbook._live.netns.read_namespace_tables` reads: netlink from
    a thread inside, where the kernel filters by state and port (reading
    ``/proc/PID/net`` instead would walk every socket of the machine, once
    per namespace). Namespaces with a file in ``skip`` are left out.
    """
    from portbook._live.netns import (
        Netns,
        NetnsKind,
        _named_files,
        own_namespace,
        read_namespace_tables,
    )

    own = own_namespace(proc)
    files = _named_files(named_dirs, os.stat(f"{proc}/self/ns/net").st_dev)
    spaces: list[Netns] = []
    for inode, paths in sorted(files.items()):
        if inode == own or skip.intersection(paths):
            continue
        named = next((os.path.basename(p) for p in paths if p.startswith("/run/netns/")), None)
        if named is not None:
            spaces.append(Netns(inode, NetnsKind.NAMED, named, named, paths[0], ()))
        else:
            spaces.append(Netns(inode, NetnsKind.OTHER, f"net:[{inode}]", None, paths[0], ()))
    found: list[tuple[Netns, int | None]] = []
    for table in read_namespace_tables(spaces, queries, proc=proc) if spaces else ():
        if table.note is not None:
            found.append((table.netns, None))
        elif table.rows:
            found.append((table.netns, len(table.rows)))
    if any(count is not None for _, count in found):
        # Only the namespaces that hold something are named after their
        # containers: the runtimes' state is read for them alone.
        containers = _containers_by_file()
        found = [(_named_after(ns, containers), count) for ns, count in found]
    return tuple(found)


def _named_after(ns: Netns, containers: dict[str, Container]) -> Netns:
    from portbook._live.netns import Netns, NetnsKind

    container = containers.get(ns.path or "")
    if container is None:
        return ns
    label = container.name or container.short_id
    return Netns(ns.inode, NetnsKind.CONTAINER, label, ns.named, ns.path, ns.pids, container)


def _containers_by_file() -> dict[str, Container]:
    """Namespace file -> the container it belongs to, from the runtimes' state (root's)."""
    from portbook._live.containers import ContainerIndex

    index = ContainerIndex()
    found: dict[str, Container] = {}
    states = [index.docker_state(root) for root in index.docker_roots()]
    states.append(index.podman_state(None))
    for state in states:
        for known in state.values():
            if known.running and known.netns:
                # Docker records /var/run/docker/netns/X; /var/run is /run.
                path = known.netns.replace("/var/run/", "/run/", 1)
                found[path] = index.from_runtime(known)
    return found
