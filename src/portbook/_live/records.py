"""The live table's public records, and the one normaliser that builds them from raw facts.

Every backend returns :class:`~portbook._live.backends.base.RawSocket` tuples;
:func:`build_sockets` turns them, with the owners found in ``/proc`` and the
book's annotations, into :class:`Socket` records. Nothing else creates a
``Socket``, so every backend gives the same records for the same sockets.
"""

from __future__ import annotations

import enum

from portbook._live.backends.base import TCP_CLOSE, TCP_ESTABLISHED, TCP_NEW_SYN_RECV, TCP_SYN_RECV
from portbook._ports import Family, PortClass, Protocol
from portbook._record import maker, public, record, values_of

# Not `from typing import TYPE_CHECKING`: see portbook._record. `portbook who`
# and `portbook ls` import this module; typing, dataclasses (with inspect) and
# ipaddress at import were a third of their fixed cost.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from ipaddress import IPv4Address, IPv6Address
    from typing import Any, TextIO

    from portbook._live.backends.base import RawSocket
    from portbook._live.owners import OwnerScan
    from portbook._live.processes import ProcessInfo
    from portbook._machine import LocalRanges

__all__ = [
    "Exposure",
    "Socket",
    "SocketProcess",
    "SocketState",
    "build_sockets",
    "sockets_json",
    "write_sockets_json",
]


class SocketState(enum.StrEnum):
    """A socket's state, by the names ``ss`` shows.

    UDP has no states of its own: an unconnected (bound) UDP socket is
    ``UNCONN`` and a connected one ``ESTAB``, as in ``ss``.
    """

    ESTAB = "ESTAB"
    SYN_SENT = "SYN-SENT"
    SYN_RECV = "SYN-RECV"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    TIME_WAIT = "TIME-WAIT"
    CLOSE = "CLOSE"
    CLOSE_WAIT = "CLOSE-WAIT"
    LAST_ACK = "LAST-ACK"
    LISTEN = "LISTEN"
    CLOSING = "CLOSING"
    NEW_SYN_RECV = "NEW-SYN-RECV"
    UNCONN = "UNCONN"


# Kernel state number -> state, for TCP; UDP differs only for TCP_CLOSE.
_TCP_STATE_BY_CODE: dict[int, SocketState] = dict(
    zip(range(1, 13), list(SocketState)[:12], strict=True)
)
_UDP_STATE_BY_CODE = {**_TCP_STATE_BY_CODE, TCP_CLOSE: SocketState.UNCONN}


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
    return mask


class Exposure(enum.StrEnum):
    """Who can reach a socket's local address."""

    LOOPBACK = "loopback"  # 127.0.0.0/8 or ::1: this machine only
    ALL = "all"  # 0.0.0.0 or ::: every interface
    SPECIFIC = "specific"  # one address of one interface


@record
class SocketProcess:
    """A process holding a socket. ``None`` fields could not be read."""

    pid: int
    name: str | None
    cmdline: tuple[str, ...] | None
    user: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "user": self.user,
            "cmdline": list(self.cmdline) if self.cmdline is not None else None,
        }


@record
class Socket:
    """One TCP or UDP socket of this machine, with its owners and what its port means.

    ``remote_address``/``remote_port`` are ``None`` when not connected.
    ``processes`` is empty when no owner could be seen; ``owner_note`` then
    says why. ``v6only`` is known only for IPv6 sockets read over netlink.
    ``interface`` is the index of the device the socket is bound to, if any.
    """

    protocol: Protocol
    family: Family
    state: SocketState
    local_address: IPv4Address | IPv6Address
    local_port: int
    remote_address: IPv4Address | IPv6Address | None
    remote_port: int | None
    inode: int
    uid: int
    recv_queue: int
    send_queue: int
    v6only: bool | None
    interface: int | None
    processes: tuple[SocketProcess, ...]
    owner_note: str | None
    service: str | None
    port_class: PortClass
    ephemeral: bool
    exposure: Exposure

    @property
    def listening(self) -> bool:
        """TCP LISTEN, or an unconnected bound UDP socket."""
        return self.state is SocketState.LISTEN or self.state is SocketState.UNCONN

    def to_json(self) -> dict[str, Any]:
        """The README's JSON contract for one socket."""
        return {
            "protocol": self.protocol.value,
            "family": self.family.value,
            "state": self.state.value,
            "local_address": str(self.local_address),
            "local_port": self.local_port,
            "remote_address": None if self.remote_address is None else str(self.remote_address),
            "remote_port": self.remote_port,
            "inode": self.inode,
            "uid": self.uid,
            "processes": [p.to_json() for p in self.processes],
            "owner_note": self.owner_note,
            "service": self.service,
            "exposure": self.exposure.value,
            "port_class": self.port_class.common_name,
            "ephemeral": self.ephemeral,
            "recv_queue": self.recv_queue,
            "send_queue": self.send_queue,
            "v6only": self.v6only,
            "interface": self.interface,
        }


NOTE_NO_PROCESS = "held by the kernel, not by a process"
NOTE_NOT_VISIBLE = "not visible without root"
NOTE_NOT_FOUND = "no owning process found (gone, or outside this process namespace)"

_UNSPECIFIED = {bytes(4), bytes(16)}


def _exposure(address: IPv4Address | IPv6Address) -> Exposure:
    if address.is_unspecified:
        return Exposure.ALL
    if address.is_loopback:
        return Exposure.LOOPBACK
    if address.version == 6 and address.ipv4_mapped is not None:
        return _exposure(address.ipv4_mapped)
    return Exposure.SPECIFIC


_make_socket = maker(Socket)


def build_sockets(
    raws: Iterable[RawSocket],
    *,
    scan: OwnerScan | None,
    processes: Mapping[int, ProcessInfo],
    ranges: LocalRanges,
    service: Callable[[int, Protocol], str | None],
    viewer_uid: int = 0,
) -> list[Socket]:
    """The one place public :class:`Socket` records are made.

    ``scan`` is the owner walk (``None`` when owners were not asked for);
    ``processes`` the details of every owning pid; ``viewer_uid`` the
    effective uid of the reader (0: root, who sees every owner). Values
    repeated across thousands of sockets (addresses, per-port annotations,
    owner tuples) are computed once and shared.
    """
    # ipaddress (a millisecond or two) is imported on first use, not with the
    # module: the modules that import Socket only for its type never need it.
    from ipaddress import IPv4Address, IPv6Address

    address_types: dict[int, Callable[[bytes], IPv4Address | IPv6Address]] = {
        4: IPv4Address,
        6: IPv6Address,
    }
    addresses: dict[bytes, tuple[IPv4Address | IPv6Address, Exposure]] = {}
    owner_tuples: dict[tuple[int, ...], tuple[SocketProcess, ...]] = {}
    records: dict[int, SocketProcess] = {
        pid: SocketProcess(info.pid, info.name, info.cmdline, info.user)
        for pid, info in processes.items()
    }

    def owners_of(pids: tuple[int, ...]) -> tuple[SocketProcess, ...]:
        return tuple(records.get(pid) or SocketProcess(pid, None, None, None) for pid in pids)

    # One shared tuple per owning process (most sockets have exactly one owner).
    single: dict[int, tuple[SocketProcess, ...]] = {
        pid: (record,) for pid, record in records.items()
    }
    none_single: dict[int, int] = {}
    none_shared: dict[int, tuple[int, ...]] = {}
    single_get = (scan.single if scan is not None else none_single).get
    shared_get = (scan.shared if scan is not None else none_shared).get
    hidden = scan is not None and scan.hidden > 0
    make = _make_socket
    # Loop invariants as locals: a global or enum-class attribute lookup per
    # socket is a measurable part of a 50,000-socket table.
    walked = scan is not None
    closed = SocketState.CLOSE
    unspecified = _UNSPECIFIED
    out: list[Socket] = []
    append = out.append
    # Per (protocol, family) values, recomputed only when the kind changes:
    # backends return sockets grouped by kind.
    last_proto: str | None = None
    last_fam = 0
    protocol = Protocol.TCP
    family = Family.INET
    states = _TCP_STATE_BY_CODE
    ports: dict[int, tuple[str | None, PortClass, bool]] = {}
    system, user, dynamic = PortClass.SYSTEM, PortClass.USER, PortClass.DYNAMIC
    system_last, user_last = system.last, user.last
    eph_first, eph_last = ranges.ephemeral.first, ranges.ephemeral.last
    reserved = bool(ranges.reserved)
    ports_by_proto: dict[str, dict[int, tuple[str | None, PortClass, bool]]] = {}
    for (
        proto_name,
        fam,
        code,
        laddr,
        lport,
        raddr,
        rport,
        inode,
        uid,
        rq,
        sq,
        v6only,
        ifindex,
        raw_pids,
    ) in values_of(raws):
        if proto_name != last_proto or fam != last_fam:
            last_proto, last_fam = proto_name, fam
            protocol = Protocol.UDP if proto_name == "udp" else Protocol.TCP
            family = Family.INET6 if fam == 6 else Family.INET
            states = _UDP_STATE_BY_CODE if proto_name == "udp" else _TCP_STATE_BY_CODE
            ports = ports_by_proto.setdefault(proto_name, {})
        local = addresses.get(laddr)
        if local is None:
            address = address_types[fam](laddr)
            local = addresses[laddr] = (address, _exposure(address))
        annotation = ports.get(lport)
        if annotation is None:
            annotation = ports[lport] = (
                service(lport, protocol),
                # port_class() and is_ephemeral() inlined: thousands of
                # distinct ephemeral ports in a large table.
                system if lport <= system_last else user if lport <= user_last else dynamic,
                eph_first <= lport <= eph_last and (not reserved or not ranges.is_reserved(lport)),
            )
        if rport == 0 and raddr in unspecified:
            remote_address: IPv4Address | IPv6Address | None = None
            remote_port: int | None = None
        else:
            remote = addresses.get(raddr)
            if remote is None:
                address = address_types[fam](raddr)
                remote = addresses[raddr] = (address, _exposure(address))
            remote_address, remote_port = remote[0], rport
        note: str | None = None
        procs: tuple[SocketProcess, ...] = ()
        if raw_pids is None:
            if walked:
                pid = single_get(inode)
                if pid is not None:
                    procs = single.get(pid) or single.setdefault(pid, owners_of((pid,)))
                else:
                    key = shared_get(inode)
                    if key is not None:
                        procs = owner_tuples.get(key) or owner_tuples.setdefault(
                            key, owners_of(key)
                        )
                    elif inode == 0:
                        note = NOTE_NO_PROCESS
                    else:
                        # Without root, another user's socket whose owner
                        # was not seen is hidden from us, even where /proc
                        # does not list that user's processes at all
                        # (hidepid) and so no walk ever failed.
                        note = (
                            NOTE_NOT_VISIBLE
                            if hidden or viewer_uid not in (0, uid)
                            else NOTE_NOT_FOUND
                        )
        elif raw_pids:
            procs = owner_tuples.get(raw_pids) or owner_tuples.setdefault(
                raw_pids, owners_of(raw_pids)
            )
        else:
            note = NOTE_NOT_VISIBLE
        append(
            make(
                (
                    protocol,
                    family,
                    states.get(code, closed),
                    local[0],
                    lport,
                    remote_address,
                    remote_port,
                    inode,
                    uid,
                    rq,
                    sq,
                    v6only,
                    ifindex or None,
                    procs,
                    note,
                    annotation[0],
                    annotation[1],
                    annotation[2],
                    local[1],
                )
            )
        )
    return out


def sockets_json(sockets: Iterable[Socket], *, indent: int | None = None) -> str:
    """The JSON array of ``sockets`` (each as :meth:`Socket.to_json`), as text.

    Equal to ``json.dumps([s.to_json() for s in sockets], indent=indent,
    ensure_ascii=False)``, but several times faster for large tables: the
    pieces shared between sockets (addresses, owner lists, notes) are encoded
    once, and each socket is one string format.
    """
    if indent is not None:
        import json

        return json.dumps([s.to_json() for s in sockets], indent=indent, ensure_ascii=False)
    return "".join(_json_chunks(sockets))


def write_sockets_json(
    sockets: Iterable[Socket], stream: TextIO, *, indent: int | None = None
) -> None:
    """Write :func:`sockets_json` of ``sockets`` to the text ``stream``, a piece at a time.

    A large table's JSON runs to megabytes (every socket repeats its owners'
    command lines); built whole, each copy of it (joining, adding a newline,
    encoding for the stream) costs milliseconds, mostly the kernel handing
    fresh pages to the new buffer. Pieces of ``_JSON_CHUNK`` sockets reuse
    the same memory instead.
    """
    if indent is not None:
        stream.write(sockets_json(sockets, indent=indent))
        return
    write = stream.write
    for chunk in _json_chunks(sockets):
        write(chunk)


_JSON_CHUNK = 512  # sockets per piece: ~300 KB of text with long command lines


def _json_chunks(sockets: Iterable[Socket]) -> Iterator[str]:
    """The compact JSON array of ``sockets`` in pieces (``"[" ... "]"`` once joined)."""
    import json

    dumps = json.dumps
    by_id: dict[int, str] = {}
    names: dict[str | None, str] = {None: "null"}
    keep: list[object] = []  # keeps id() keys unique: the objects stay alive
    parts: list[str] = []
    append = parts.append
    separator = "["  # before the next piece: "[" first, then ", "
    # Enum members as plain strings: an f-string formats an exact str
    # directly, but a str or int subclass member through its __format__
    # and __str__ methods, which cost a third of this loop.
    protocols = {m: m.value for m in Protocol}
    families = {m: str(m.value) for m in Family}
    states = {m: m.value for m in SocketState}
    exposures = {m: m.value for m in Exposure}
    classes = {m: m.common_name for m in PortClass}
    for s in sockets:
        procs = s.processes
        owners = by_id.get(id(procs))
        if owners is None:
            keep.append(procs)
            owners = by_id[id(procs)] = dumps([p.to_json() for p in procs], ensure_ascii=False)
        local = s.local_address
        local_text = by_id.get(id(local))
        if local_text is None:
            keep.append(local)
            local_text = by_id[id(local)] = f'"{local}"'
        remote = s.remote_address
        if remote is None:
            remote_text = "null"
        else:
            remote_text = by_id.get(id(remote)) or ""
            if not remote_text:
                keep.append(remote)
                remote_text = by_id[id(remote)] = f'"{remote}"'
        service = names.get(s.service)
        if service is None:
            service = names[s.service] = dumps(s.service, ensure_ascii=False)
        note = names.get(s.owner_note)
        if note is None:
            note = names[s.owner_note] = dumps(s.owner_note, ensure_ascii=False)
        remote_port = s.remote_port
        v6only = s.v6only
        interface = s.interface
        append(
            f'{{"protocol": "{protocols[s.protocol]}", "family": {families[s.family]}, '
            f'"state": "{states[s.state]}", "local_address": {local_text}, '
            f'"local_port": {s.local_port}, "remote_address": {remote_text}, '
            f'"remote_port": {"null" if remote_port is None else remote_port}, '
            f'"inode": {s.inode}, "uid": {s.uid}, "processes": {owners}, '
            f'"owner_note": {note}, "service": {service}, '
            f'"exposure": "{exposures[s.exposure]}", "port_class": "{classes[s.port_class]}", '
            f'"ephemeral": {"true" if s.ephemeral else "false"}, '
            f'"recv_queue": {s.recv_queue}, "send_queue": {s.send_queue}, '
            f'"v6only": {"null" if v6only is None else "true" if v6only else "false"}, '
            f'"interface": {"null" if interface is None else interface}}}'
        )
        if len(parts) == _JSON_CHUNK:
            yield separator
            yield ", ".join(parts)
            separator = ", "
            parts.clear()
    if parts:
        yield separator
        yield ", ".join(parts)
    elif separator == "[":
        yield "["  # no socket at all
    yield "]"


public(Exposure, Socket, SocketProcess, SocketState)
