"""Network namespaces: find every one on this machine, name it, and read its socket table.

Each network namespace has its own sockets; the kernel's socket table seen
by a process is that of its own namespace only. A namespace lives as long as
a process is in it or a file holds it: the bind mounts ``ip netns`` makes in
``/run/netns`` (Podman's rootful ones are there too), Docker's in
``/run/docker/netns``. Its identity is the inode of that file, which is also
the inode behind ``/proc/PID/ns/net`` of every process in it.
:func:`find_namespaces` gathers them all and names each: the caller's own is
``host`` (the caller's, not pid 1's, which may be unreadable or elsewhere),
a file under ``/run/netns`` gives its name, a container (see
:mod:`portbook._live.containers`) its name, and any other is
``net:[INODE]`` as ``readlink`` shows it.

:func:`read_namespace_tables` reads one or many namespaces' socket tables.
With the privilege to enter them (``CAP_SYS_ADMIN``, i.e. root), a worker
thread enters each with ``setns(2)`` (Python 3.11 has no ``os.setns``: the
libc function through ctypes) and reads it over netlink with the same
backend as the host table: a netlink socket belongs to the namespace its
creating thread was in. The thread is private and ends after the read, so
no other code ever runs in a foreign namespace. Without that privilege the
kernel refuses ``setns`` (and joining a user namespace, which would grant it
for a user's own rootless namespaces, is refused to a thread of a process
that has several), so portbook reads ``/proc/PID/net/{tcp,udp}{,6}`` of a
process in the namespace instead: any user may read those, though not
``/proc/PID/ns/net`` of another user's process. A namespace with no such
process, or none visible, is reported with a note, not read.

A socket's namespace is that of the table it came from, never that of the
process holding it: ``rootlessport`` keeps its main thread in the
container's namespace while its listening socket lives in the host's.
"""

from __future__ import annotations

import enum
import os

from portbook._exceptions import NotFoundError, SocketTableError, UnsupportedError, UsageError
from portbook._live.backends.base import RawSocket, TableQuery
from portbook._proc import PROC
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import TypeVar

    _T = TypeVar("_T")

    from portbook._live.backends.base import SocketBackend
    from portbook._live.containers import Container, ContainerIndex

__all__ = [
    "NAMED_NETNS_DIRS",
    "Netns",
    "NetnsKind",
    "NetnsTable",
    "call_in_namespace",
    "find_namespaces",
    "read_namespace_tables",
    "select_namespaces",
]

NAMED_NETNS_DIRS = ("/run/netns", "/run/docker/netns")
CLONE_NEWNET = 0x40000000


class NetnsKind(enum.StrEnum):
    """What a network namespace is to this machine."""

    HOST = "host"  # the caller's own
    NAMED = "named"  # a file in /run/netns (ip netns add NAME)
    CONTAINER = "container"  # a container's
    OTHER = "other"  # only processes hold it


@record
class Netns:
    """One network namespace.

    ``inode`` is its identity (``net:[INODE]``), ``None`` where only a
    process of another user is known to be in it and this user may not read
    which namespace that is (then ``pids`` holds that process). ``name`` is
    what users call it (see the module doc); ``named`` its name under
    ``/run/netns`` if it has one; ``path`` a file that holds it (entered
    first: it cannot go away with a process); ``pids`` the processes whose
    main thread is in it, ascending; ``container`` the container it belongs
    to, when its processes are in one.
    """

    inode: int | None
    kind: NetnsKind
    name: str
    named: str | None
    path: str | None
    pids: tuple[int, ...]
    container: Container | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "inode": self.inode,
            "kind": self.kind.value,
            "name": self.name,
            "named": self.named,
            "path": self.path,
            "container": self.container.to_json() if self.container is not None else None,
        }


@record
class NetnsTable:
    """The sockets read in one namespace; ``note`` says why none could be read (no ``rows``)."""

    netns: Netns
    rows: tuple[RawSocket, ...]
    note: str | None = None
    method: str | None = None  #: "netlink" (setns) or "procfs" (/proc/PID/net)


def own_namespace(proc: str = PROC) -> int:
    """The inode of the calling thread's network namespace."""
    try:
        return os.stat(f"{proc}/thread-self/ns/net").st_ino
    except OSError:
        return os.stat(f"{proc}/self/ns/net").st_ino


def find_namespaces(
    *,
    proc: str = PROC,
    containers: ContainerIndex | None = None,
    named_dirs: Iterable[str] = NAMED_NETNS_DIRS,
) -> list[Netns]:
    """Every network namespace this user can see, the caller's own first, then by inode.

    ``containers`` names the namespaces that belong to a container (pass the
    listing's index; without one, none is named as a container).
    """
    own = own_namespace(proc)
    nsfs_dev = os.stat(f"{proc}/self/ns/net").st_dev
    members, hidden = _members(proc)
    files = _named_files(named_dirs, nsfs_dev)
    inodes = sorted(set(members) | set(files) | {own}, key=lambda i: (i != own, i))
    found = [_describe(i, own, members.get(i, []), files.get(i, []), containers) for i in inodes]
    # Other users' processes in namespaces this user cannot identify: one
    # entry per distinct /proc/PID/net, known by that process only.
    found.extend(
        Netns(None, NetnsKind.OTHER, f"pid:{pids[0]}", None, None, tuple(pids))
        for pids in hidden.values()
    )
    return found


def _members(proc: str) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Pids by namespace inode, and (unreadable ones) by the inode of their ``net/tcp``."""
    from portbook._live.walk import all_pids

    members: dict[int, list[int]] = {}
    hidden: dict[int, list[int]] = {}
    for pid in sorted(all_pids(proc)):
        try:
            inode = os.stat(f"{proc}/{pid}/ns/net").st_ino
        except PermissionError:
            # Every namespace has its own /proc/net files, whose inode any
            # user may see: the same inode, the same namespace.
            try:
                key = os.stat(f"{proc}/{pid}/net/tcp").st_ino
            except OSError:
                continue
            hidden.setdefault(key, []).append(pid)
            continue
        except OSError:
            continue  # gone, or a kernel thread
        members.setdefault(inode, []).append(pid)
    if hidden:
        _drop_known(proc, members, hidden)
    return members, hidden


def _drop_known(proc: str, members: dict[int, list[int]], hidden: dict[int, list[int]]) -> None:
    """Forget the unreadable groups that share a namespace with a readable process."""
    for pids in members.values():
        try:
            key = os.stat(f"{proc}/{pids[0]}/net/tcp").st_ino
        except OSError:
            continue
        hidden.pop(key, None)


def _named_files(dirs: Iterable[str], nsfs_dev: int) -> dict[int, list[str]]:
    files: dict[int, list[str]] = {}
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            # A namespace file is a bind mount of nsfs; anything else (a
            # rootless runtime's mount point seen from outside its mount
            # namespace is an empty regular file) holds no namespace.
            if st.st_dev == nsfs_dev:
                files.setdefault(st.st_ino, []).append(path)
    return files


def _describe(
    inode: int, own: int, pids: list[int], paths: list[str], containers: ContainerIndex | None
) -> Netns:
    named = next(
        (os.path.basename(p) for p in paths if os.path.dirname(p) == NAMED_NETNS_DIRS[0]), None
    )
    path = paths[0] if paths else None
    if inode == own:
        return Netns(inode, NetnsKind.HOST, "host", named, path, tuple(pids))
    container = _container_of(pids, containers)
    if container is not None:
        label = container.name or container.short_id
        return Netns(inode, NetnsKind.CONTAINER, label, named, path, tuple(pids), container)
    if named is not None:
        return Netns(inode, NetnsKind.NAMED, named, named, path, tuple(pids))
    return Netns(inode, NetnsKind.OTHER, f"net:[{inode}]", None, path, tuple(pids))


def _container_of(pids: list[int], containers: ContainerIndex | None) -> Container | None:
    if containers is None:
        return None
    # A container's namespace may also hold helpers that are not in it
    # (rootlessport's main thread, slirp4netns's child): the first member
    # that is in a container names it.
    for pid in pids[:16]:
        found = containers.container_of(pid)
        if found is not None:
            return found
    return None


def select_namespaces(spec: str, found: list[Netns], *, proc: str = PROC) -> list[Netns]:
    """The namespaces ``spec`` names among ``found``: ``all``, a name, a pid, or a path.

    A name matches the host (``host``), a name under ``/run/netns``, a
    container's name or the start of its id (at least 4 characters). A pid
    means that process's namespace; a path (containing ``/``) a namespace
    file or ``/proc/PID/ns/net``. Raises :class:`NotFoundError` when nothing
    matches and :class:`UsageError` when a name matches several.
    """
    if spec == "all":
        return list(found)
    if spec.isdigit():
        return [_by_file(f"{proc}/{int(spec)}/ns/net", found, spec, pid=int(spec))]
    if "/" in spec:
        return [_by_file(spec, found, spec)]
    matches = [ns for ns in found if _matches(ns, spec)]
    if not matches:
        raise NotFoundError(f"no network namespace named {spec!r}")
    if len(matches) > 1:
        names = ", ".join(ns.name for ns in matches)
        raise UsageError(f"{spec!r} names several network namespaces: {names}")
    return matches


def _matches(ns: Netns, spec: str) -> bool:
    if spec in (ns.name, ns.named):
        return True
    container = ns.container
    if container is None:
        return False
    return spec == container.name or (len(spec) >= 4 and container.id.startswith(spec))


def _by_file(path: str, found: list[Netns], spec: str, *, pid: int | None = None) -> Netns:
    try:
        st = os.stat(path)
        inode = st.st_ino
    except PermissionError:
        if pid is not None:
            return Netns(None, NetnsKind.OTHER, f"pid:{pid}", None, None, (pid,))
        raise NotFoundError(f"cannot read network namespace {spec!r}: permission denied") from None
    except OSError as exc:
        raise NotFoundError(f"no network namespace {spec!r}: {exc.strerror}") from exc
    if st.st_dev != os.stat("/proc/self/ns/net").st_dev:
        # Only nsfs files hold a namespace (a rootless runtime's mount point,
        # seen from outside its mount namespace, is an empty regular file).
        raise NotFoundError(f"{spec!r} is not a network namespace file")
    for ns in found:
        if ns.inode == inode:
            return ns
    return Netns(inode, NetnsKind.OTHER, f"net:[{inode}]", None, path, (pid,) if pid else ())


# -- reading ---------------------------------------------------------------------------------


def read_namespace_tables(
    namespaces: Iterable[Netns],
    query: TableQuery | Sequence[TableQuery],
    *,
    proc: str = PROC,
    backend: Callable[[], SocketBackend] | None = None,
) -> list[NetnsTable]:
    """The socket table of each namespace, in order, each as its own :class:`NetnsTable`.

    The caller's own namespace is read in this thread; the others by one
    worker thread that enters each in turn (root), or from ``/proc/PID/net``
    (otherwise; see the module doc). ``backend`` makes the netlink reader
    (tests); a namespace that cannot be read at all has a ``note``. Raises
    :class:`SocketTableError` only when the caller's own table cannot be read.
    Several queries (one per protocol, as the live table asks: a TCP mask
    without TCP_CLOSE spares the kernel a walk of the whole connection hash)
    are answered together, each namespace entered once.
    """
    queries = (query,) if isinstance(query, TableQuery) else tuple(query)
    wanted = list(namespaces)
    make = backend if backend is not None else _netlink
    own = own_namespace(proc)
    results: dict[int, NetnsTable] = {}
    foreign: list[tuple[int, Netns]] = []
    for index, ns in enumerate(wanted):
        if ns.inode == own:
            results[index] = NetnsTable(ns, _rows(make(), queries), method="netlink")
        else:
            foreign.append((index, ns))
    if foreign:
        results.update(_read_foreign(foreign, queries, proc, make))
    return [results[i] for i in range(len(wanted))]


def read_namespace(
    ns: Netns,
    query: TableQuery | Sequence[TableQuery],
    *,
    proc: str = PROC,
    backend: Callable[[], SocketBackend] | None = None,
) -> NetnsTable:
    """One namespace's table; raises :class:`UnsupportedError` when it cannot be read."""
    table = read_namespace_tables([ns], query, proc=proc, backend=backend)[0]
    if table.note is not None:
        raise UnsupportedError(f"cannot read network namespace {ns.name}: {table.note}")
    return table


def _rows(backend: SocketBackend, queries: tuple[TableQuery, ...]) -> tuple[RawSocket, ...]:
    rows: list[RawSocket] = []
    for query in queries:
        rows.extend(backend.sockets(query))
    return tuple(rows)


def _netlink() -> SocketBackend:
    from portbook._live.backends.netlink import NetlinkBackend

    return NetlinkBackend()


def _read_foreign(
    foreign: list[tuple[int, Netns]],
    queries: tuple[TableQuery, ...],
    proc: str,
    make: Callable[[], SocketBackend],
) -> dict[int, NetnsTable]:
    entered = _read_entering(foreign, queries, proc, make) if _may_enter() else {}
    results: dict[int, NetnsTable] = {}
    for index, ns in foreign:
        table = entered.get(index)
        if table is None or table.note is not None:
            fallback = _read_procfs(ns, queries, proc)
            if fallback is not None:
                table = fallback
            elif table is None:
                table = NetnsTable(ns, (), _cannot_enter(ns))
        results[index] = table
    return results


def _may_enter() -> bool:
    # setns(CLONE_NEWNET) needs CAP_SYS_ADMIN; a process without it is
    # refused for every namespace, so do not try one by one.
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> 21 & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def _cannot_enter(ns: Netns) -> str:
    if os.geteuid() != 0:
        return "entering another network namespace needs root, and no readable process is in it"
    return "cannot enter it, and no process is in it"


def _read_entering(
    foreign: list[tuple[int, Netns]],
    queries: tuple[TableQuery, ...],
    proc: str,
    make: Callable[[], SocketBackend],
) -> dict[int, NetnsTable]:
    """Read each namespace from one worker thread that ``setns``-es into it in turn."""

    def work() -> dict[int, NetnsTable]:
        return {index: _read_one_entered(ns, queries, proc, make) for index, ns in foreign}

    return _on_worker(work)


def _read_one_entered(
    ns: Netns, queries: tuple[TableQuery, ...], proc: str, make: Callable[[], SocketBackend]
) -> NetnsTable:
    """In the worker thread: enter ``ns`` and read its table there."""
    fd = _open_namespace(ns, proc)
    if fd is None:
        return NetnsTable(ns, (), "it is gone (no file or process holds it any more)")
    try:
        error = _setns(fd)
    finally:
        os.close(fd)
    if error is not None:
        return NetnsTable(ns, (), f"cannot enter it: {os.strerror(error)}")
    try:
        rows = _rows(make(), queries)
    except SocketTableError as exc:
        return NetnsTable(ns, (), str(exc))
    return NetnsTable(ns, rows, method="netlink")


def call_in_namespace(ns: Netns, function: Callable[[], _T], *, proc: str = PROC) -> _T:
    """``function()`` run by a private worker thread that has entered ``ns``; its result.

    What the function opens there (sockets, ``/proc/sys/net`` files) belongs
    to ``ns``. Raises :class:`UnsupportedError` when ``ns`` cannot be entered
    (entering another namespace needs root), and whatever ``function`` raises.
    """
    if ns.inode is not None and ns.inode == own_namespace(proc):
        return function()
    if not _may_enter():
        raise UnsupportedError(f"entering network namespace {ns.name} needs root")

    def work() -> _T:
        fd = _open_namespace(ns, proc)
        if fd is None:
            raise UnsupportedError(f"network namespace {ns.name} is gone")
        try:
            error = _setns(fd)
        finally:
            os.close(fd)
        if error is not None:
            raise UnsupportedError(
                f"cannot enter network namespace {ns.name}: {os.strerror(error)}"
            )
        return function()

    return _on_worker(work)


def _on_worker(work: Callable[[], _T]) -> _T:
    """``work()`` run by a fresh thread, its result or its exception handed back here.

    A thread of its own because setns() moves only the calling thread, and a
    thread that has entered another namespace must never run anything else:
    it ends with ``work``.
    """
    import threading

    result: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="portbook-netns", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def _open_namespace(ns: Netns, proc: str) -> int | None:
    """An open descriptor of ``ns``'s namespace, checked to be that namespace."""
    candidates = [ns.path] if ns.path is not None else []
    candidates += [f"{proc}/{pid}/ns/net" for pid in ns.pids]
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        # A pid may have been reused by another process since it was seen.
        if ns.inode is None or os.fstat(fd).st_ino == ns.inode:
            return fd
        os.close(fd)
    return None


_libc_setns: Callable[[int, int], int] | None = None


def _setns(fd: int) -> int | None:
    """``setns(fd, CLONE_NEWNET)`` for the calling thread; the errno on failure, else ``None``."""
    global _libc_setns
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        try:
            setns(fd, CLONE_NEWNET)
        except OSError as exc:
            return exc.errno or 1
        return None
    if _libc_setns is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.setns
        function.argtypes = (ctypes.c_int, ctypes.c_int)
        function.restype = ctypes.c_int

        def call(fd: int, kind: int) -> int:
            if function(fd, kind) == 0:
                return 0
            return ctypes.get_errno() or 1

        _libc_setns = call
    error = _libc_setns(fd, CLONE_NEWNET)
    return error or None


def _read_procfs(ns: Netns, queries: tuple[TableQuery, ...], proc: str) -> NetnsTable | None:
    """``ns``'s table from ``/proc/PID/net`` of one of its processes, or ``None``."""
    from portbook._live.backends.procfs import ProcfsBackend

    for pid in ns.pids:
        root = f"{proc}/{pid}/net"
        if ns.inode is not None:
            try:
                if os.stat(f"{proc}/{pid}/ns/net").st_ino != ns.inode:
                    continue  # the pid went and came back as another process
            except PermissionError:
                pass
            except OSError:
                continue
        try:
            rows = _rows(ProcfsBackend(root), queries)
        except SocketTableError:
            continue
        return NetnsTable(ns, rows, method="procfs")
    return None


public(Netns, NetnsKind)
