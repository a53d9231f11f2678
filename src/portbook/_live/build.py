"""The one normaliser: raw socket rows, holders and names in, public :class:`Socket` records out.

Every backend returns :class:`~portbook.RawSocket` rows; :func:`build_sockets`
turns them, with the holders found in ``/proc`` and the names it is handed,
into records. Values repeated across thousands of sockets (addresses,
per-port facts, holder tuples) are computed once and shared, and each record
is built in one C call: this loop runs once per socket of the machine.
"""

from __future__ import annotations

from portbook._live.backends.base import (
    TCP_BOUND_INACTIVE,
    TCP_CLOSE,
    TCP_ESTABLISHED,
    TCP_NEW_SYN_RECV,
    TCP_SYN_RECV,
)
from portbook._live.records import (
    NOTE_NO_PROCESS,
    NOTE_NOT_FOUND,
    NOTE_NOT_VISIBLE,
    Exposure,
    Socket,
    SocketProcess,
    SocketState,
)
from portbook._ports import Family, PortClass, Protocol
from portbook._record import maker, values_of

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from ipaddress import IPv4Address, IPv6Address
    from typing import Any

    from portbook._live.backends.base import RawSocket
    from portbook._live.behind import Looked
    from portbook._live.cgroups import Unit
    from portbook._live.containers import Container
    from portbook._live.netns import Netns
    from portbook._live.owners import OwnerScan
    from portbook._live.processes import ProcessInfo
    from portbook._machine import LocalRanges

    IPAddress = IPv4Address | IPv6Address

__all__ = ["Namer", "build_sockets", "exposure", "iter_sockets", "state_mask", "unnamed"]

# Kernel state number -> state, for TCP; UDP differs only for TCP_CLOSE.
_TCP_STATE_BY_CODE: dict[int, SocketState] = dict(
    zip(range(1, 13), list(SocketState)[:12], strict=True)
)
_UDP_STATE_BY_CODE = {**_TCP_STATE_BY_CODE, TCP_CLOSE: SocketState.UNCONN}
_UNSPECIFIED = frozenset({bytes(4), bytes(16)})
# (protocol name, family number) of a raw row -> its Protocol, Family and state table.
_KINDS = {
    (proto, fam): (
        Protocol(proto),
        Family(fam),
        _UDP_STATE_BY_CODE if proto == "udp" else _TCP_STATE_BY_CODE,
    )
    for proto in ("tcp", "udp")
    for fam in (4, 6)
}
_make_socket = maker(Socket)


def state_mask(states: Iterable[SocketState], protocol: Protocol) -> int:
    """The kernel state bit mask that selects ``states`` for ``protocol``."""
    if protocol is Protocol.UDP:
        # A UDP socket is only ever connected or not: the kernel keeps it in
        # TCP_ESTABLISHED or TCP_CLOSE.
        table = {TCP_ESTABLISHED: SocketState.ESTAB, TCP_CLOSE: SocketState.UNCONN}
    else:
        table = _TCP_STATE_BY_CODE
    wanted = set(states)
    mask = 0
    for code, state in table.items():
        if state in wanted:
            mask |= 1 << code
    if protocol is Protocol.TCP and mask & (1 << TCP_SYN_RECV):
        # Half-open connections are request minisockets, kept by the kernel in
        # state NEW_SYN_RECV but reported as SYN_RECV; ask for both.
        mask |= 1 << TCP_NEW_SYN_RECV
    if protocol is Protocol.TCP and mask & (1 << TCP_CLOSE):
        # A TCP socket that is only bound is CLOSE too (Linux 6.9+ dumps it
        # when asked for TCP_BOUND_INACTIVE).
        mask |= 1 << TCP_BOUND_INACTIVE
    return mask


def exposure(address: IPAddress) -> Exposure:
    """Who can reach a socket bound to ``address``."""
    if address.is_unspecified:
        return Exposure.ALL
    if address.is_loopback:
        return Exposure.LOOPBACK
    if address.version == 6 and address.ipv4_mapped is not None:
        return exposure(address.ipv4_mapped)
    return Exposure.SPECIFIC


class _Addresses(dict[bytes, tuple["IPAddress", Exposure]]):
    """Packed address bytes -> (address, exposure), each made once (``ipaddress`` is slow)."""

    def __init__(self) -> None:
        super().__init__()
        # ipaddress (a millisecond or two) is imported on first use: the
        # modules that import Socket only for its type never need it.
        from ipaddress import IPv4Address, IPv6Address

        self._types: dict[int, Callable[[bytes], IPAddress]] = {4: IPv4Address, 6: IPv6Address}

    def make(self, packed: bytes, family: int) -> tuple[IPAddress, Exposure]:
        address = self._types[family](packed)
        made = self[packed] = (address, exposure(address))
        return made


_Facts = tuple["str | None", PortClass, bool, "str | None", "str | None"]


class _PortFacts(dict[int, _Facts]):
    """Local port -> (service, port class, ephemeral?, your name, service source), one protocol."""

    def __init__(self, protocol: Protocol, ranges: LocalRanges, names: Namer) -> None:
        super().__init__()
        self._protocol = protocol
        self._ranges = ranges
        self._names = names

    def make(self, port: int) -> _Facts:
        cls = (
            PortClass.SYSTEM
            if port <= PortClass.SYSTEM.last
            else PortClass.USER
            if port <= PortClass.USER.last
            else PortClass.DYNAMIC
        )
        service, source, yours = self._names(port, self._protocol)
        made = self[port] = (service, cls, self._ranges.is_ephemeral(port), yours, source)
        return made


#: A socket's holders, with the container and unit of the first holder that has one.
_Held = tuple[tuple[SocketProcess, ...], "Container | None", "Unit | None"]
_NOBODY: _Held = ((), None, None)


class _Holders:
    """Who holds each socket, as shared tuples of :class:`SocketProcess`, or why nobody is seen."""

    def __init__(
        self,
        scan: OwnerScan | None,
        processes: Mapping[int, ProcessInfo],
        viewer_uid: int,
        behind: Mapping[int, tuple[Container | None, Unit | None]],
    ) -> None:
        self.walked = scan is not None
        self.single = scan.single if scan is not None else {}
        self._shared = scan.shared if scan is not None else {}
        self._refused = scan.refused if scan is not None else ()
        self._viewer = viewer_uid
        self._tuples: dict[tuple[int, ...], _Held] = {}
        nothing = (None, None)
        self.by_pid: dict[int, _Held] = {}
        for pid, info in processes.items():
            container, unit = behind.get(pid, nothing)
            proc = SocketProcess(pid, info.name, info.cmdline, info.user, container, unit)
            self.by_pid[pid] = ((proc,), container, unit)
        self._refused_uids: dict[int, list[int]] | None = None

    def of_pids(self, pids: tuple[int, ...]) -> _Held:
        """The shared holder tuple of ``pids`` (a pid without details gets ``None`` fields)."""
        found = self._tuples.get(pids)
        if found is None:
            procs = tuple(
                self.by_pid[p][0][0] if p in self.by_pid else SocketProcess(p, None, None, None)
                for p in pids
            )
            container = next((p.container for p in procs if p.container is not None), None)
            unit = next((p.unit for p in procs if p.unit is not None), None)
            found = self._tuples[pids] = (procs, container, unit)
        return found

    def other(
        self, inode: int, uid: int, raw_pids: tuple[int, ...] | None
    ) -> tuple[_Held, str | None]:
        """(holders, note) of a socket not held by exactly one walked process."""
        if raw_pids is not None:  # the backend named the holders itself
            return (self.of_pids(raw_pids), None) if raw_pids else (_NOBODY, NOTE_NOT_VISIBLE)
        if not self.walked:
            return _NOBODY, None
        pids = self._shared.get(inode)
        if pids is not None:
            return self.of_pids(pids), None
        return _NOBODY, self._missing(inode, uid)

    def _missing(self, inode: int, uid: int) -> str:
        if inode == 0:
            return NOTE_NO_PROCESS
        if self._viewer not in (0, uid):
            # Another user's socket, and we are not root: its holder is hidden
            # from us, even where /proc does not list that user's processes at
            # all (hidepid) and so no read was refused.
            return NOTE_NOT_VISIBLE
        refused = self._refused_of(uid)
        if refused:
            pids = ", ".join(map(str, refused[:5])) + (", ..." if len(refused) > 5 else "")
            return f"held by a process whose descriptors cannot be read (pid {pids})"
        return NOTE_NOT_FOUND

    def _refused_of(self, uid: int) -> list[int]:
        """The refused processes that run as ``uid`` (any refused process if ``uid`` is unknown)."""
        if self._refused_uids is None:
            from portbook._proc import process_uid

            by_uid: dict[int, list[int]] = {}
            for pid in self._refused:
                owner = process_uid(pid)
                by_uid.setdefault(-1 if owner is None else owner, []).append(pid)
            self._refused_uids = by_uid
        if uid < 0:
            return sorted(p for pids in self._refused_uids.values() for p in pids)
        return self._refused_uids.get(uid, [])


if TYPE_CHECKING:
    #: What a port is called: (port, protocol) -> (the book's name, its source, your name).
    Namer = Callable[[int, Protocol], tuple[str | None, str | None, str | None]]


def unnamed(port: int, protocol: Protocol) -> tuple[None, None, None]:
    """A :data:`Namer` that names nothing."""
    return (None, None, None)


def build_sockets(raws: Iterable[RawSocket], **how: Any) -> list[Socket]:
    """:func:`iter_sockets` (the same keywords) as a list."""
    return list(iter_sockets(raws, **how))


def iter_sockets(
    raws: Iterable[RawSocket],
    *,
    scan: OwnerScan | None,
    processes: Mapping[int, ProcessInfo],
    ranges: LocalRanges,
    names: Namer = unnamed,
    viewer_uid: int = 0,
    netns: Netns | None = None,
    behind: Looked | None = None,
) -> Iterator[Socket]:
    """The one place public :class:`Socket` records are made, one per row, as they are asked for.

    ``scan`` is the owner walk (``None`` when owners were not asked for);
    ``processes`` the details of every holding pid; ``names`` names a port;
    ``viewer_uid`` is the effective uid of the reader (0: root, who sees
    every holder). ``netns`` is the namespace ``raws`` were read in (``None``:
    read without one); ``behind`` the containers, units and published ports
    found for the listing (:func:`portbook._live.behind.look_behind`).
    """
    from portbook._proc import user_name

    holders = _Holders(scan, processes, viewer_uid, behind.processes if behind else {})
    single_get, by_pid, other = holders.single.get, holders.by_pid, holders.other
    published = behind.published if behind is not None else {}
    published_get = published.get
    by_socket = behind.sockets if behind is not None else {}
    space_container = netns.container if netns is not None else None
    addresses = _Addresses()
    address_get, address_make = addresses.get, addresses.make
    facts = {p: _PortFacts(p, ranges, names) for p in (Protocol.TCP, Protocol.UDP)}
    users: dict[int, str | None] = {}
    unspecified, closed, make = _UNSPECIFIED, SocketState.CLOSE, _make_socket
    # The fields of each row and each record, in their classes' field order.
    # fmt: off
    for (proto, fam, code, laddr, lport, raddr, rport, inode, uid, rq, sq, v6only, ifindex,
         pids) in values_of(raws):
        # fmt: on
        protocol, family, states = _KINDS[proto, fam]
        local = address_get(laddr) or address_make(laddr, fam)
        ports = facts[protocol]
        named, port_cls, ephemeral, yours, source = ports.get(lport) or ports.make(lport)
        if rport == 0 and raddr in unspecified:
            remote: IPAddress | None = None
            remote_port: int | None = None
        else:
            remote, remote_port = (address_get(raddr) or address_make(raddr, fam))[0], rport
        pid = single_get(inode) if pids is None else None
        if pid is not None and pid in by_pid:
            (procs, container, unit), note = by_pid[pid], None
        else:
            (procs, container, unit), note = other(inode, uid, pids if pid is None else (pid,))
        user = users[uid] if uid in users else users.setdefault(uid, user_name(uid))
        if by_socket and not procs:
            container, unit = by_socket.get(inode) or (container, unit)
        leads = published_get(inode) if published else None
        if container is None:
            container = leads.container if leads is not None else space_container
        # fmt: off
        yield make((
            protocol, family, states.get(code, closed), local[0], lport, remote, remote_port,
            inode, uid, rq, sq, v6only, ifindex or None, procs, note, named, port_cls, ephemeral,
            local[1], user, yours, source, netns, container, unit, leads,
        ))
        # fmt: on
