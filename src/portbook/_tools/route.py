"""Which socket the kernel delivers a packet or a connection to, and why.

(protocol, address, port) is how one machine names its programs; this module
makes the naming rule explicit. It follows Linux's socket lookup
(``__inet_lookup_established``/``__inet_lookup_listener`` for TCP,
``__udp4_lib_lookup``/``__udp6_lib_lookup`` for UDP):

TCP
  1. An entry of the connection table matching all four values (local and
     remote address and port) takes the segment: ESTAB, SYN-RECV, FIN-WAIT,
     TIME-WAIT... A listener is never consulted then.
  2. Listeners are looked up in two hash buckets, first the one of the exact
     destination address, then the one of the wildcard (0.0.0.0 / ::). The
     first bucket with a match wins: an exact listener beats a wildcard one
     whatever their scores.
  3. Inside a bucket each listener gets a score: 1, or 2 when bound to the
     arriving device (SO_BINDTODEVICE); for an IPv4 packet an AF_INET socket
     gets +1 over an IPv6 dual-stack socket (``::`` with IPV6_V6ONLY off) that
     also accepts IPv4. A socket bound to another device never matches.
  4. When the best socket belongs to a SO_REUSEPORT group, one of the group is
     picked by a hash of the 4-tuple (keyed by a random boot-time secret, so
     no one outside the kernel can predict which).

UDP
  Same two buckets (exact address first, then wildcard), but the score also
  counts a connected socket's remote address and port, so a socket connected
  to the sender beats an unconnected one on the same address. Within a score
  tie the socket first in the kernel's chain wins: a SO_REUSEPORT group hashes,
  and sockets sharing the port through SO_REUSEADDR alone deliver unicast to
  the most recently bound one.

Nothing matching
  TCP answers a SYN with a reset (RST); UDP answers with ICMP port
  unreachable (ICMPv6 for IPv6).

The socket table (inet_diag) does not report SO_REUSEPORT or SO_REUSEADDR.
Several TCP listeners on the very same (address, port, device, family) can
only exist with SO_REUSEPORT, so they are one reuseport group. Several UDP
sockets on the same address and port need SO_REUSEPORT or SO_REUSEADDR: the
answer names the group and says which of the two rules applies to which option.

Containers
  A port a container runtime publishes leads on: :func:`route` follows it
  into the container's network namespace and routes the packet there again,
  to the target address and port the runtime forwards to (``inside``). A
  port no socket holds may still be taken by a DNAT rule before any socket
  lookup (Kubernetes, nerdctl, Docker for other hosts): as root the rules
  are read, and such a port answers ``dnat`` (the rule's conditions on
  interfaces and sources are not weighed).

The decision is pure: :func:`route_packet` takes socket records (the live
table's :class:`~portbook.Socket`, or anything with the same attributes) so it
can be checked against sockets a test opened itself; :func:`route` reads the
live table first.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import socket as _socket
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from portbook._addresses import address_text, endpoint_text, unmapped
from portbook._exceptions import InvalidPortSpecError, UsageError
from portbook._live.records import Socket, SocketState
from portbook._machine import bindv6only_default, loopback_index
from portbook._ports import Family, Protocol, parse_port_spec, parse_protocol
from portbook._record import public, record, replace

if TYPE_CHECKING:
    from portbook._live.backends.base import SocketBackend
    from portbook._live.netns import Netns
    from portbook._live.published import Published

__all__ = [
    "Endpoint",
    "Route",
    "RouteRule",
    "parse_route_args",
    "route",
    "route_packet",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RouteRule(enum.StrEnum):
    """The rule of the kernel's lookup that chose the receiving socket."""

    ESTABLISHED = "established"
    EXACT_LISTENER = "exact-listener"
    WILDCARD_LISTENER = "wildcard-listener"
    REUSEPORT_GROUP = "reuseport-group"
    NONE = "none"
    NOT_LOCAL = "not-local"  # the destination is not this machine's: the packet leaves
    DNAT = "dnat"  # a DNAT rule sends it elsewhere before any socket lookup


@record
class Endpoint:
    """An IP address and a port, as a packet carries them."""

    address: IPAddress
    port: int

    def __str__(self) -> str:
        return endpoint_text(self.address, self.port)


@record
class Route:
    """The kernel's delivery decision for one packet.

    ``socket`` is the receiving socket, or for a ``reuseport-group`` one member
    (the group is ``candidates``, of which the kernel hashes to one);
    ``None`` for ``none`` and ``not-local``. ``dual_stack`` is true when an
    IPv6 socket takes an IPv4 packet. ``reason`` is one sentence saying why;
    ``notes`` lists what a reader should know (ties, device-bound sockets not
    considered, what an answer of ``none`` sends back). ``via`` is where this
    machine's routing table sends a packet that is not for it
    (``unicast dev eth0 via 10.0.0.1``). ``netns`` is the network namespace
    the packet was routed in (``None``: the caller's own); ``inside`` the
    same decision inside the container a published port or a DNAT rule
    leads into, and ``published`` where it leads.
    """

    protocol: Protocol
    source: Endpoint | None
    destination: Endpoint
    rule: RouteRule
    socket: Socket | None
    candidates: tuple[Socket, ...]
    dual_stack: bool
    device: int | None
    reason: str
    notes: tuple[str, ...] = ()
    via: str | None = None
    netns: Netns | None = None
    published: Published | None = None
    inside: Route | None = None

    @property
    def group_size(self) -> int:
        return len(self.candidates)

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.value,
            "source": _endpoint_json(self.source),
            "destination": _endpoint_json(self.destination),
            "rule": self.rule.value,
            "reason": self.reason,
            "dual_stack": self.dual_stack,
            "device": self.device,
            "group_size": self.group_size,
            "socket": self.socket.to_json() if self.socket is not None else None,
            "candidates": [s.to_json() for s in self.candidates],
            "notes": list(self.notes),
            "via": self.via,
            "netns": self.netns.to_json() if self.netns is not None else None,
            "published": self.published.to_json() if self.published is not None else None,
            "inside": self.inside.to_json() if self.inside is not None else None,
        }


def _endpoint_json(ep: Endpoint | None) -> dict[str, Any] | None:
    if ep is None:
        return None
    return {"address": address_text(ep.address), "port": ep.port}


# States that live in the connection (established) hash: everything but a
# listener, a closed socket and an unconnected UDP socket.
_NOT_CONNECTED = frozenset({SocketState.LISTEN, SocketState.UNCONN, SocketState.CLOSE})


@record
class _Candidate:
    sock: Socket
    exact: bool  # bound to the destination address itself (not a wildcard)
    score: int
    dual_stack: bool


@record
class _Packet:
    """One packet's question, checked: protocol, addresses on the wire, arriving device."""

    protocol: Protocol
    destination: Endpoint
    source: Endpoint | None
    device: int | None
    default_v6only: bool  # what IPV6_V6ONLY a socket has when the table does not say

    @property
    def v4(self) -> bool:
        return self.destination.address.version == 4


def route_packet(
    protocol: Protocol | str,
    destination: Endpoint,
    sockets: Iterable[Socket],
    *,
    source: Endpoint | None = None,
    device: int | None = None,
) -> Route:
    """Decide which of ``sockets`` receives a packet, as Linux does.

    ``device`` is the interface index the packet arrives on (loopback for a
    destination on this machine reached from this machine); ``None`` means
    unknown, and sockets bound to a device are then left out with a note.
    """
    packet = _packet(protocol, destination, source, device)
    same = [
        s
        for s in sockets
        if s.protocol == packet.protocol and s.local_port == packet.destination.port
    ]
    notes: list[str] = []
    skipped: set[int] = set()
    connection = _connection(packet, same, skipped, notes)
    if connection is not None:
        return connection
    candidates = _candidates(packet, same, skipped, notes)
    if skipped:
        names = ", ".join(sorted(_ifname(i) for i in skipped))
        notes.append(
            f"sockets bound to device {names} were left out: the arriving device is "
            "unknown (pass it to consider them)"
        )
    # The exact-address bucket first; the wildcard bucket only if it is empty.
    bucket = [c for c in candidates if c.exact] or [c for c in candidates if not c.exact]
    if not bucket:
        return _nothing(packet, notes)
    return _decide(packet, bucket, notes)


def _packet(
    protocol: Protocol | str, destination: Endpoint, source: Endpoint | None, device: int | None
) -> _Packet:
    proto = parse_protocol(protocol) if isinstance(protocol, str) else protocol
    if proto not in (Protocol.TCP, Protocol.UDP):
        raise UsageError(f"route knows the lookup rules of tcp and udp, not {proto.value}")
    dst = Endpoint(unmapped(destination.address), destination.port)
    src = Endpoint(unmapped(source.address), source.port) if source is not None else None
    if src is not None and src.address.version != dst.address.version:
        raise UsageError("source and destination must both be IPv4 or both IPv6")
    if dst.address.is_multicast or dst.address == ipaddress.IPv4Address("255.255.255.255"):
        # Multicast and broadcast datagrams go to every matching socket
        # (__udp4_lib_mcast_deliver), not to one chosen by these rules.
        raise UsageError("route shows unicast delivery; multicast and broadcast reach every member")
    return _Packet(proto, dst, src, device, bindv6only_default())


def _device_ok(s: Socket, packet: _Packet, skipped: set[int]) -> bool:
    """False for a socket bound to another device (or to any, when the device is unknown)."""
    bound = s.interface or 0
    if not bound:
        return True
    if packet.device is None:
        skipped.add(bound)
        return False
    return bound == packet.device


def _connection(
    packet: _Packet, same: list[Socket], skipped: set[int], notes: list[str]
) -> Route | None:
    """Rule 1 for TCP: a connection matching all four values takes the segment."""
    src, dst = packet.source, packet.destination
    if packet.protocol is not Protocol.TCP or src is None:
        return None
    for s in same:
        ra = s.remote_address
        if s.state in _NOT_CONNECTED or ra is None:
            continue
        if (
            unmapped(s.local_address) == dst.address
            and unmapped(ra) == src.address
            and s.remote_port == src.port
            and _device_ok(s, packet, skipped)
        ):
            if s.state is SocketState.TIME_WAIT:
                notes.append(
                    "a TIME-WAIT entry holds this 4-tuple: a new SYN reopens it only "
                    "if its sequence number is above the old connection's"
                )
            return Route(
                packet.protocol,
                src,
                dst,
                RouteRule.ESTABLISHED,
                s,
                (s,),
                s.family == Family.INET6 and packet.v4,
                packet.device,
                f"the connection {dst} <-> {src} ({s.state}) matches all four values",
                tuple(notes),
            )
    return None


def _local_match(s: Socket, packet: _Packet) -> tuple[bool, bool] | None:
    """(exact, dual_stack) when the local side of ``s`` takes the destination, else None."""
    addr, dst = s.local_address, packet.destination.address
    v6only = s.v6only if s.v6only is not None else packet.default_v6only
    if s.family == Family.INET6:
        if not isinstance(addr, ipaddress.IPv6Address):
            return None
        if packet.v4:
            if addr.ipv4_mapped is not None:
                # Bound to ::ffff:a.b.c.d: the kernel keeps a.b.c.d as its
                # IPv4 receive address, so it is an exact IPv4 listener.
                return (True, True) if addr.ipv4_mapped == dst else None
            if addr.is_unspecified and not v6only:
                return (False, True)
            return None
        if addr.is_unspecified:
            return (False, False)
        return (True, False) if addr == dst else None
    if not packet.v4:
        return None  # an AF_INET socket never sees an IPv6 packet
    if addr.is_unspecified:
        return (False, False)
    return (True, False) if addr == dst else None


def _candidates(
    packet: _Packet, same: list[Socket], skipped: set[int], notes: list[str]
) -> list[_Candidate]:
    """Every socket the lookup may choose, with the kernel's score."""
    out: list[_Candidate] = []
    for s in same:
        if packet.protocol is Protocol.TCP:
            if s.state is not SocketState.LISTEN:
                continue
        elif s.state not in (SocketState.UNCONN, SocketState.ESTAB):
            continue
        match = _local_match(s, packet)
        if match is None or not _device_ok(s, packet, skipped):
            continue
        score = _score(s, packet, notes)
        if score is not None:
            out.append(_Candidate(s, match[0], score, match[1]))
    return out


def _score(s: Socket, packet: _Packet, notes: list[str]) -> int | None:
    """The kernel's score of a matching socket (None: a connected UDP socket of another peer)."""
    bound_dev = bool(s.interface)
    if packet.protocol is Protocol.TCP:
        return (2 if bound_dev else 1) + (1 if packet.v4 and s.family == Family.INET else 0)
    # Kernel weights (IPv4): family 2/1, remote address +4, remote port +4,
    # device +4; IPv6 counts each by 1 but in the same order.
    src = packet.source
    score = 2 if (not packet.v4 or s.family == Family.INET) else 1
    ra = s.remote_address
    if ra is not None and not ra.is_unspecified:
        if src is None:
            notes.append(
                f"a UDP socket connected to {endpoint_text(unmapped(ra), s.remote_port or 0)} "
                "receives only from that peer; give a source to consider it"
            )
            return None
        if unmapped(ra) != src.address:
            return None
        score += 4
    if s.remote_port:
        if src is None or s.remote_port != src.port:
            return None
        score += 4
    return score + (4 if bound_dev else 0)


def _nothing(packet: _Packet, notes: list[str]) -> Route:
    answer = (
        "TCP answers RST"
        if packet.protocol is Protocol.TCP
        else "UDP answers ICMP port unreachable"
    )
    notes.append(answer)
    return Route(
        packet.protocol,
        packet.source,
        packet.destination,
        RouteRule.NONE,
        None,
        (),
        False,
        packet.device,
        f"no socket takes {packet.protocol.value} {packet.destination}: {answer}",
        tuple(dict.fromkeys(notes)),
    )


def _decide(packet: _Packet, bucket: list[_Candidate], notes: list[str]) -> Route:
    """Rules 3 and 4: the best score wins; a group of equals is a reuseport group."""
    best = max(c.score for c in bucket)
    top = [c for c in bucket if c.score == best]
    if len(top) > 1:
        groups = _groups(top)
        if len(groups) > 1:
            # Different groups with the same score: the kernel takes the first in
            # its hash chain, where newer sockets are inserted at the head.
            groups.sort(key=lambda g: max(c.sock.inode for c in g), reverse=True)
            notes.append(
                f"{len(groups)} sockets score equally; the kernel takes the first in its "
                "hash chain, normally the most recently bound"
            )
        top = groups[0]
    winner = top[0]
    members = tuple(c.sock for c in top)
    dual = winner.dual_stack and packet.v4 and winner.sock.family == Family.INET6
    rule, reason = _why(packet, winner, members, dual)
    return Route(
        packet.protocol,
        packet.source,
        packet.destination,
        rule,
        winner.sock,
        members,
        dual,
        packet.device,
        reason,
        tuple(dict.fromkeys(notes)),
    )


def _why(
    packet: _Packet, winner: _Candidate, members: tuple[Socket, ...], dual: bool
) -> tuple[RouteRule, str]:
    """The rule that chose ``winner`` and the sentence that says why."""
    where = "bound to that exact address" if winner.exact else "bound to the wildcard address"
    if dual:
        where = "IPv6 on :: and also accepting IPv4 (IPV6_V6ONLY off)"
        if winner.exact:
            where = "IPv6, bound to the IPv4-mapped address"
    tcp = packet.protocol is Protocol.TCP
    if len(members) > 1:
        shared, n = endpoint_text(winner.sock.local_address, packet.destination.port), len(members)
        if tcp:
            return RouteRule.REUSEPORT_GROUP, (
                f"{n} listeners share {shared} ({where}) through SO_REUSEPORT; the kernel "
                f"picks one of the {n} by a hash of the source and destination"
            )
        return RouteRule.REUSEPORT_GROUP, (
            f"{n} sockets share {shared} ({where}): with SO_REUSEPORT one of the {n} is "
            "chosen by a hash of the source; with SO_REUSEADDR alone the most recently bound "
            "receives"
        )
    ra = winner.sock.remote_address
    if not tcp and ra is not None and not ra.is_unspecified:
        return (
            RouteRule.ESTABLISHED,
            f"a UDP socket connected to {packet.source} matches all four values",
        )
    rule = RouteRule.EXACT_LISTENER if winner.exact else RouteRule.WILDCARD_LISTENER
    kind = "listener" if tcp else "socket"
    reason = (
        f"a {kind} ({where}) takes {packet.destination}"
        if dual
        else (f"a {kind} {where} takes {packet.destination}")
    )
    if winner.sock.interface:
        reason += (
            f" (bound to device {_ifname(winner.sock.interface)}, which outranks unbound sockets)"
        )
    return rule, reason


def _groups(cands: Sequence[_Candidate]) -> list[list[_Candidate]]:
    """Split equal-score candidates into groups sharing (family, address, device, v6only)."""
    groups: dict[tuple[Any, ...], list[_Candidate]] = {}
    for c in cands:
        s = c.sock
        key = (s.family, s.local_address, s.interface or 0, s.v6only)
        groups.setdefault(key, []).append(c)
    return list(groups.values())


def _ifname(index: int) -> str:
    try:
        return _socket.if_indextoname(index)
    except OSError:
        return f"#{index}"


def _not_for_this_machine(
    proto: Protocol, dst: Endpoint, src: Endpoint | None, device: int | None
) -> Route | None:
    """A route answer for a destination this machine does not own; ``None`` when it does.

    The routing table decides (``ip route get``): a local address is
    delivered to a socket by the rules above; a broadcast address reaches
    every socket bound to the port, which these rules do not choose; any
    other address leaves the machine, and no socket here takes it.
    """
    from portbook._tools.routing import lookup_route

    answer = lookup_route(unmapped(dst.address))
    if answer is None or answer.kind == "local":
        return None
    if answer.kind in ("broadcast", "multicast"):
        raise UsageError(
            f"{address_text(dst.address)} is a {answer.kind} address ({answer}): every socket "
            "on the port receives such a datagram; route shows unicast delivery"
        )
    where = (
        f"the routing table sends it out: {answer}"
        if answer.error is None
        else (f"the routing table has no route for it: {answer.error}")
    )
    reason = f"{address_text(dst.address)} is not an address of this machine; {where}"
    note = "no socket of this machine takes the packet (a NAT rule may still forward it)"
    return Route(
        proto, src, dst, RouteRule.NOT_LOCAL, None, (), False, device, reason, (note,), str(answer)
    )


def _parse_endpoint(text: str) -> Endpoint:
    """``ADDR:PORT``, ``localhost:PORT``, or one of your names (on 127.0.0.1)."""
    spec = parse_port_spec(text)
    if spec.name is not None:
        from portbook._joined import single_port

        return Endpoint(ipaddress.IPv4Address("127.0.0.1"), single_port(text)[0])
    if spec.ports is None or not spec.ports.single:
        raise InvalidPortSpecError(text, "expected ADDRESS:PORT with one port number")
    if spec.host is None or isinstance(spec.host, str):
        if isinstance(spec.host, str) and spec.host == "localhost":
            return Endpoint(ipaddress.IPv4Address("127.0.0.1"), spec.ports.first)
        raise InvalidPortSpecError(text, "expected an IP address before the port")
    return Endpoint(spec.host, spec.ports.first)


def parse_route_args(words: Sequence[str]) -> tuple[Endpoint | None, Endpoint]:
    """Split ``SRC -> DST`` (``->`` alone or joined) or a lone ``DST`` into endpoints."""
    # "→" is accepted as typed, and is how the CLI passes a "->" word on.
    text = " ".join(words).replace("\u2192", "->").strip()
    if "->" in text:
        left, _, right = text.partition("->")
        if "->" in right:
            raise UsageError("expected at most one '->' between source and destination")
        left, right = left.strip(), right.strip()
        if not left or not right:
            raise UsageError("expected SRC_ADDR:SRC_PORT -> DST_ADDR:DST_PORT")
        return _parse_endpoint(left), _parse_endpoint(right)
    if len(words) != 1:
        raise UsageError("expected [SRC_ADDR:SRC_PORT ->] DST_ADDR:DST_PORT")
    return None, _parse_endpoint(text)


def route(
    protocol: Protocol | str,
    destination: Endpoint | str,
    *,
    source: Endpoint | str | None = None,
    device: int | str | None = None,
    backend: SocketBackend | None = None,
    netns: str | None = None,
) -> Route:
    """Which socket on this machine receives that packet, read from the live table.

    ``destination``/``source`` are :class:`Endpoint` or text (``127.0.0.1:80``,
    ``[::1]:53``). ``device`` (index or name) is the interface the packet
    arrives on; by default loopback for a loopback destination or a source
    on this machine's loopback, else unknown. ``netns`` routes it in another
    network namespace (a name, pid or file, as :func:`list_sockets` takes;
    not ``"all"``: a packet arrives in one). A published port is followed
    into its container (``inside``).
    """
    from portbook._joined import sockets_on_port

    dst = _parse_endpoint(destination) if isinstance(destination, str) else destination
    src = _parse_endpoint(source) if isinstance(source, str) else source
    proto = parse_protocol(protocol) if isinstance(protocol, str) else protocol
    if netns is not None and netns.strip() == "all":
        raise UsageError("a packet arrives in one network namespace: name it, not all")
    dev = _device(device, dst, src, netns)
    if netns is None:
        elsewhere = _not_for_this_machine(proto, dst, src, dev)
        if elsewhere is not None:
            return elsewhere
    socks = sockets_on_port(dst.port, proto, owners=True, backend=backend, netns=netns)
    decided = route_packet(proto, dst, socks, source=src, device=dev)
    space = next((s.netns for s in socks if s.netns is not None), None)
    if space is not None:
        note = "the destination is taken to be an address of that namespace"
        decided = replace(decided, netns=space, notes=(*decided.notes, note))
    decided = _follow(decided, proto, backend, host=netns is None)
    if not sys.platform.startswith("linux"):
        note = "these are Linux's lookup rules; this system's kernel may choose differently"
        decided = replace(decided, notes=(*decided.notes, note))
    return decided


def _device(
    device: int | str | None, dst: Endpoint, src: Endpoint | None, netns: str | None
) -> int | None:
    if isinstance(device, str):
        if netns is not None:
            raise UsageError("--device names a device of this namespace; give its index instead")
        try:
            return _socket.if_nametoindex(device)
        except OSError:
            raise UsageError(f"no network device named {device!r}") from None
    if device is None and (
        unmapped(dst.address).is_loopback or (src is not None and unmapped(src.address).is_loopback)
    ):
        # Loopback destinations arrive on lo; so does any packet this machine
        # sends to one of its own addresses (the kernel routes it via lo).
        # lo is the first device of every namespace: index 1 in another one.
        return loopback_index() if netns is None else 1
    return device


# Where each runtime's helper really sends local traffic (measured on the runtimes).
_BY_DNAT = {
    "dockerd": "dockerd only reserves the port: a DNAT rule sends the traffic into the "
    "container before any socket lookup",
    "conmon": "conmon only holds the port open for Podman: netavark's DNAT rule sends the "
    "traffic into the container before any socket lookup",
}


def _follow(decided: Route, proto: Protocol, backend: SocketBackend | None, *, host: bool) -> Route:
    """``decided`` with the route inside the container a published port or DNAT rule leads to.

    The DNAT rules are read (two commands) only where they can be: as root,
    for the host's own table, when no socket takes the packet.
    """
    published = decided.socket.published if decided.socket is not None else None
    notes: tuple[str, ...] = ()
    if published is None and decided.rule is RouteRule.NONE:
        if host and backend is None and hasattr(os, "geteuid") and os.geteuid() == 0:
            return _by_rule(decided, proto)
        return decided
    if published is None or published.container is None or published.target_port is None:
        return decided
    if published.by in _BY_DNAT:
        notes = (_BY_DNAT[published.by],)
    inside = _route_inside(proto, published)
    return replace(decided, published=published, inside=inside, notes=(*decided.notes, *notes))


def _by_rule(decided: Route, proto: Protocol) -> Route:
    """A port no socket takes, forwarded by a DNAT rule (read as root): rule ``dnat``."""
    from portbook._exceptions import UnsupportedError
    from portbook._live.behind import port_forwards

    dst = decided.destination
    try:
        forwards = port_forwards(dst.port, proto.value)
    except UnsupportedError:
        return decided  # the rules need root: the answer stands on the sockets alone
    wanted = address_text(dst.address)
    for published in forwards:
        rule = published.rule
        if rule is None or rule.host_address not in (None, wanted):
            continue
        where = f"{published.target_address}:{published.target_port}"
        reason = (
            f"a DNAT rule ({rule.source}: {rule.table}, chain {rule.chain}) forwards "
            f"{proto.value} {dst} to {where} before any socket lookup"
        )
        inside = _route_inside(proto, published) if published.container is not None else None
        note = "the rule's conditions on interfaces and sources are not weighed"
        return Route(
            proto,
            decided.source,
            dst,
            RouteRule.DNAT,
            None,
            (),
            False,
            decided.device,
            reason,
            (note,),
            netns=decided.netns,
            published=published,
            inside=inside,
        )
    return decided


def _route_inside(proto: Protocol, published: Published) -> Route | None:
    """The route of the forwarded packet inside the container's own namespace."""
    from portbook._exceptions import NotFoundError, UnsupportedError

    container = published.container
    pid = container.pid if container is not None else None
    if pid is None and published.by == "rootlessport":
        pid = published.holder  # its main thread sits in the container's namespace
    if pid is None and published.listeners:
        pid = published.listeners[0].pid
    if pid is None or published.target_port is None:
        return None
    address = published.target_address or "127.0.0.1"
    try:
        target = Endpoint(unmapped(ipaddress.ip_address(address)), published.target_port)
        inside = route(proto, target, netns=str(pid))
    except (NotFoundError, UnsupportedError, ValueError):
        return None
    if published.target_address is None:
        note = f"where {published.by} connects inside is not recorded: {address} is assumed"
        inside = replace(inside, notes=(*inside.notes, note))
    return inside


public(Endpoint, Route, RouteRule)
