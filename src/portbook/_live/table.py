"""The live table: every TCP and UDP socket of this machine, with the processes that hold it.

Public functions: :func:`list_sockets`, :func:`sockets_on_port` and
:func:`socket_backend`. Filtering happens as early as possible: protocol,
family, state and port in the kernel (netlink) or the backend; owners are
looked up only for the sockets that survive, and only when asked for.
"""

from __future__ import annotations

import os

from portbook._exceptions import UsageError
from portbook._live.records import Socket, SocketState, build_sockets, state_mask
from portbook._ports import Family, PortRange, Protocol, parse_protocol
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    from portbook._live.backends.base import RawSocket, SocketBackend
    from portbook._live.owners import OwnerScan

__all__ = ["SocketChanges", "list_sockets", "socket_backend", "sockets_on_port", "watch_sockets"]

_LIVE_PROTOCOLS = (Protocol.TCP, Protocol.UDP)


def socket_backend() -> SocketBackend:
    """The backend portbook uses on this machine (netlink, procfs or psutil)."""
    from portbook._live.backends import choose_backend

    return choose_backend()


def _service_names(raws: list[RawSocket]) -> Callable[[int, Protocol], str | None]:
    """What the book calls each local port of ``raws`` (``service_name(port, protocol)``).

    One bulk question for the distinct (port, protocol) pairs of the table:
    cheaper than one query per port, and than loading the book's whole name
    table, for any table up to thousands of distinct ports.
    """
    from portbook._book.book import default_book

    names = default_book().service_names({(r.local_port, r.protocol) for r in raws})
    get = names.get

    def service(port: int, protocol: Protocol) -> str | None:
        return get((port, protocol))

    return service


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
    ``pid``, ``user`` (name or uid of an owning process, or the socket's uid)
    and ``program`` (process name or command basename) select by owner.
    ``owners=False`` skips the /proc walk (``processes`` stays empty). Without
    root, owners of other users' sockets cannot be seen: such sockets are
    still listed, with ``owner_note`` saying so.
    """
    protos = _protocols(protocols)
    fams = _families(families)
    wanted_states = _states(states)
    if listening:
        listen_states = {SocketState.LISTEN, SocketState.UNCONN}
        wanted_states = listen_states if wanted_states is None else wanted_states & listen_states
    ports: tuple[int, int] | None = None
    if isinstance(port, PortRange):
        ports = (port.first, port.last)
    elif port is not None:
        checked = PortRange(port, port)
        ports = (checked.first, checked.last)
    if (pid is not None or user is not None or program is not None) and not owners:
        raise UsageError("selecting by pid, user or program needs owners=True")
    chosen = backend if backend is not None else socket_backend()
    # The cyclic garbage collector is paused while the table is built: tens
    # of thousands of raw tuples and records (none in a reference cycle)
    # would otherwise set off collections that traverse all of them again
    # and again, about a tenth of a 20,000-socket listing. Reference
    # counting still frees everything; the collector resumes at the end.
    import gc

    paused = gc.isenabled()
    gc.disable()
    try:
        return _list(
            chosen,
            fallback=backend is None,
            protos=protos,
            fams=fams,
            wanted_states=wanted_states,
            ports=ports,
            pid=pid,
            user=user,
            program=program,
            owners=owners,
        )
    finally:
        if paused:
            gc.enable()


def _list(
    chosen: SocketBackend,
    *,
    fallback: bool,
    protos: frozenset[Protocol],
    fams: frozenset[Family] | None,
    wanted_states: set[SocketState] | None,
    ports: tuple[int, int] | None,
    pid: int | None,
    user: str | int | None,
    program: str | None,
    owners: bool,
) -> list[Socket]:
    """:func:`list_sockets` once its filters are checked (with the collector paused)."""

    def read() -> list[RawSocket]:
        return _read(protos, fams, wanted_states, ports, chosen, fallback=fallback)

    whole_table = owners and pid is None and ports is None and wanted_states is None
    service: Callable[[int, Protocol], str | None] | None = None
    if whole_table and not chosen.provides_owners:
        raws, scan, service = _read_and_walk_all(read)
    else:
        raws, scan = read(), None
    sockets = _annotate(raws, owners=owners, only_pid=pid, scan=scan, service=service)
    if pid is not None:
        sockets = [s for s in sockets if any(p.pid == pid for p in s.processes)]
    if user is not None:
        sockets = [s for s in sockets if _user_matches(s, user)]
    if program is not None:
        sockets = [s for s in sockets if _program_matches(s, program)]
    return sockets


def sockets_on_port(
    port: int,
    protocol: Protocol | str | None = None,
    *,
    owners: bool = True,
    backend: SocketBackend | None = None,
) -> list[Socket]:
    """Every socket whose local port is exactly ``port`` (any state), with owners."""
    return list_sockets(
        protocols=None if protocol is None else [protocol],
        port=port,
        owners=owners,
        backend=backend,
    )


def _read_and_walk_all(
    read: Callable[[], list[RawSocket]],
) -> tuple[list[RawSocket], OwnerScan, Callable[[int, Protocol], str | None]]:
    """The table from ``read()``, the walk of every process's descriptors, and the book's names.

    Every socket is asked for, so every link is read once, without probing.
    On a machine with many open files a helper process walks part of them
    on the other core while this one reads the kernel's table, looks up its
    ports' service names and then walks the rest; those two cost about as
    much as reading ``_NETLINK_WEIGHT`` tenths of a link per socket, which
    sets the split.
    """
    from portbook._live.owners import BackgroundWalk, merge_scans, scan_all, split_walk

    if _open_files() < _HELPER_FROM:
        raws = read()
        return raws, scan_all(), _service_names(raws)
    helper, ours = split_walk(own_work=_socket_count() * _NETLINK_WEIGHT // 10)
    walker = BackgroundWalk(pids=helper)
    try:
        raws = read()
        # While the helper walks: the names would otherwise wait for the walk.
        service = _service_names(raws)
        mine = scan_all(pids=ours)
    except BaseException:
        walker.cancel()  # an error or Ctrl-C: leave no helper behind
        raise
    return raws, merge_scans(walker.result(), mine), service


# Below this many open files on the machine the whole walk is short, and a
# helper process costs more to start than sharing the walk saves.
_HELPER_FROM = 4000
# Reading one socket from netlink and looking up its port's service name
# cost about this many tenths of reading one descriptor link (measured on
# 20,000 sockets: ~1.6 us and ~0.7 us against ~4.5 us).
_NETLINK_WEIGHT = 5


def _open_files() -> int:
    """Open files on the whole machine (/proc/sys/fs/file-nr): what a whole walk reads."""
    try:
        with open("/proc/sys/fs/file-nr", "rb") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 1 << 30


def _socket_count() -> int:
    """About how many TCP and UDP sockets this namespace has (/proc/net/sockstat*)."""
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
        return 1 << 30
    return total


def _protocols(protocols: Iterable[Protocol | str] | None) -> frozenset[Protocol]:
    if protocols is None:
        return frozenset(_LIVE_PROTOCOLS)
    chosen = frozenset(p if isinstance(p, Protocol) else parse_protocol(p) for p in protocols)
    unsupported = chosen - set(_LIVE_PROTOCOLS)
    if unsupported:
        names = ", ".join(sorted(p.value for p in unsupported))
        raise UsageError(f"the live table shows tcp and udp sockets, not {names}")
    return chosen


def _families(families: Iterable[Family | int] | None) -> frozenset[Family] | None:
    if families is None:
        return None
    try:
        return frozenset(Family(int(f)) for f in families)
    except (TypeError, ValueError):
        raise UsageError(f"address families are 4 and 6, not {families!r}") from None


def _states(states: Iterable[SocketState | str] | None) -> set[SocketState] | None:
    if states is None:
        return None
    chosen: set[SocketState] = set()
    for state in states:
        if isinstance(state, SocketState):
            chosen.add(state)
            continue
        key = state.strip().upper().replace("_", "-")
        aliases = {"ESTABLISHED": "ESTAB", "UNCONNECTED": "UNCONN", "CLOSED": "CLOSE"}
        key = aliases.get(key, key)
        try:
            chosen.add(SocketState(key))
        except ValueError:
            known = ", ".join(s.value for s in SocketState)
            raise UsageError(f"unknown socket state {state!r} (known: {known})") from None
    return chosen


def _read(
    protocols: frozenset[Protocol],
    families: frozenset[Family] | None,
    states: set[SocketState] | None,
    ports: tuple[int, int] | None,
    chosen: SocketBackend,
    *,
    fallback: bool,
) -> list[RawSocket]:
    from portbook._exceptions import SocketTableError
    from portbook._live.backends.base import ALL_STATES_MASK, TableQuery

    fams = frozenset(int(f) for f in (families if families is not None else (4, 6)))
    result: list[RawSocket] = []
    # TCP and UDP need different masks when states are given (UNCONN is
    # TCP_CLOSE for UDP), so each protocol is its own query.
    for protocol in _LIVE_PROTOCOLS:
        if protocol not in protocols:
            continue
        mask = ALL_STATES_MASK if states is None else state_mask(states, protocol)
        if mask == 0:
            continue
        query = TableQuery(
            protocols=frozenset({protocol.value}), families=fams, state_mask=mask, ports=ports
        )
        try:
            result.extend(chosen.sockets(query))
        except SocketTableError:
            if not fallback or chosen.name != "netlink":
                raise
            # Some sandboxes allow the netlink socket but refuse the dump:
            # /proc/net has the same table.
            from portbook._live.backends import ProcfsBackend

            chosen = ProcfsBackend()
            result.extend(chosen.sockets(query))
    if not type(chosen).__module__.startswith("portbook."):
        # A backend of the caller's may return rows as plain tuples in field order.
        from portbook._live.backends.base import RawSocket

        rows: list[Any] = result
        result = [r if type(r) is RawSocket else RawSocket(*r) for r in rows]
    return result


def _annotate(
    raws: list[RawSocket],
    *,
    owners: bool,
    only_pid: int | None,
    scan: OwnerScan | None,
    service: Callable[[int, Protocol], str | None] | None = None,
) -> list[Socket]:
    from portbook._live.owners import find_owners
    from portbook._live.processes import process_details
    from portbook._machine import local_ranges

    details = {}
    if owners:
        if scan is None:
            need = [r.inode for r in raws if r.pids is None and r.inode]
            if only_pid is not None and need:
                # Only this process's sockets matter: read its descriptors
                # first, then find every owner of just those.
                first = find_owners(need, pids=[only_pid])
                need = [*first.single, *first.shared]
            scan = find_owners(need)
        pids: set[int] = set()
        single_get, shared_get = scan.single.get, scan.shared.get
        for r in raws:
            if r.pids is not None:
                pids.update(r.pids)
            elif r.inode:
                pid = single_get(r.inode)
                if pid is not None:
                    pids.add(pid)
                else:
                    pids.update(shared_get(r.inode, ()))
        details = process_details(sorted(pids))
    return build_sockets(
        raws,
        scan=scan if owners else None,
        processes=details,
        ranges=local_ranges(),
        service=service if service is not None else _service_names(raws),
        viewer_uid=os.geteuid() if hasattr(os, "geteuid") else 0,
    )


def _user_matches(sock: Socket, user: str | int) -> bool:
    text = str(user)
    if text.isdigit():
        uid = int(text)
        return sock.uid == uid or any(_uid_of(p.pid) == uid for p in sock.processes)
    return any(p.user == text for p in sock.processes) or _uid_name(sock.uid) == text


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _uid_name(uid: int) -> str | None:
    if uid < 0:
        return None
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _program_matches(sock: Socket, program: str) -> bool:
    for proc in sock.processes:
        if proc.name == program:
            return True
        if proc.cmdline and os.path.basename(proc.cmdline[0]) == program:
            return True
    return False


@record
class SocketChanges:
    """One refresh of :func:`watch_sockets`: the table now, and what changed since the last one.

    On the first refresh ``opened`` holds every socket and ``closed`` is empty.
    """

    sockets: tuple[Socket, ...]
    opened: tuple[Socket, ...]
    closed: tuple[Socket, ...]
    first: bool


def _identity(s: Socket) -> tuple[object, ...]:
    # What makes "the same socket" across refreshes: its addresses, state and
    # inode (a state change, LISTEN to CLOSE say, counts as closed + opened).
    return (
        s.protocol,
        s.family,
        s.state,
        s.local_address,
        s.local_port,
        s.remote_address,
        s.remote_port,
        s.inode,
    )


def watch_sockets(
    *, interval: float = 1.0, count: int | None = None, **filters: Any
) -> Iterator[SocketChanges]:
    """Refresh :func:`list_sockets` (same filters) every ``interval`` seconds.

    Yields a :class:`SocketChanges` at once and then after each interval,
    ``count`` times in all (forever when ``None``). Raises
    :class:`UsageError` for an interval that is not positive or a count
    below 1, and whatever :func:`list_sockets` raises.
    """
    import time

    if not interval > 0:  # NaN included
        raise UsageError(f"the watch interval must be more than 0 seconds, not {interval}")
    if count is not None and count < 1:
        raise UsageError(f"the watch count must be at least 1, not {count}")
    previous: dict[tuple[object, ...], Socket] = {}
    refreshes = 0
    while True:
        current = {_identity(s): s for s in list_sockets(**filters)}
        refreshes += 1
        yield SocketChanges(
            sockets=tuple(current.values()),
            opened=tuple(s for k, s in current.items() if k not in previous),
            closed=tuple(s for k, s in previous.items() if k not in current),
            first=refreshes == 1,
        )
        previous = current
        if count is not None and refreshes >= count:
            return
        time.sleep(interval)


public(SocketChanges)
