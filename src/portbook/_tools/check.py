"""Why can't I bind this port? Every reason, per protocol and family, and whether bind() works.

The answer has two parts. The *verdict* is the kernel's own: a real
``bind()`` to the address asked (the wildcard address by default), without
``SO_REUSEADDR``, as :func:`portbook.pick_port` probes. The *reasons* say why,
from the live table and this machine's settings:

* a socket on the port whose address overlaps the one asked: a listener, a
  connection (an accepted one shares its listener's port; a client's source
  port is bound too), a TCP socket that is only bound, a UDP socket; an IPv6
  socket on ``::`` without ``IPV6_V6ONLY`` takes the IPv4 port too, and an
  IPv6 program binding ``::`` takes IPv4 as well unless it sets the option;
* connections in TIME-WAIT: a ``bind()`` without ``SO_REUSEADDR`` fails until
  they end (Linux keeps them 60 seconds);
* a privileged port: below ``net.ipv4.ip_unprivileged_port_start`` only a
  process with ``CAP_NET_BIND_SERVICE`` may bind;
* and, as facts that do *not* stop a ``bind()``: the port is in this
  machine's ephemeral range (the kernel may give it to an outgoing
  connection at any moment) or in ``ip_local_reserved_ports`` (the kernel
  never picks it by itself), or portbook's store gives it to a name or a
  lease (portbook's own picks keep away from it).

In another network namespace (``netns``) the sockets, the bind and the
namespace's own ranges (``ip_local_port_range`` and the privileged-port
limit are per namespace) are read by a worker thread that has entered it,
which needs root.

:func:`blockers` is the rule over the table that ``wait --closed`` uses too.
"""

from __future__ import annotations

import errno
import socket

from portbook._addresses import address_text, endpoint_text, unmapped
from portbook._exceptions import UsageError
from portbook._ports import Family, Protocol
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from ipaddress import IPv4Address, IPv6Address
    from typing import Any

    from portbook._live.netns import Netns
    from portbook._live.records import Socket
    from portbook._machine import LocalRanges
    from portbook._names.store import Store

    IPAddress = IPv4Address | IPv6Address

__all__ = ["BindReason", "PortCheck", "blockers", "check_port"]

TIME_WAIT_SECONDS = 60  # TCP_TIMEWAIT_LEN: fixed in Linux
_CAP_NET_BIND_SERVICE = 10


@record
class BindReason:
    """One reason a port may not be bound, or a fact about it.

    ``kind`` is ``listener``, ``connection``, ``bound``, ``udp``, ``time-wait``,
    ``dual-stack``, ``privileged``, ``ephemeral``, ``reserved``, ``name``,
    ``lease`` or ``refused`` (the kernel refused for a reason portbook could not
    see). ``blocks`` is false for facts that do not stop a ``bind()``.
    ``socket`` is the socket in the way, if one is.
    """

    kind: str
    blocks: bool
    message: str
    socket: Socket | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "blocks": self.blocks,
            "message": self.message,
            "socket": self.socket.to_json() if self.socket is not None else None,
        }


@record
class PortCheck:
    """Whether ``protocol``/``port`` can be bound on ``address`` (IPv4 or IPv6) right now."""

    port: int
    protocol: Protocol
    family: Family
    address: IPAddress
    bindable: bool
    error: str | None
    reasons: tuple[BindReason, ...]
    netns: Netns | None = None  #: where it was checked (``None``: this process's own namespace)

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "protocol": self.protocol.value,
            "family": self.family.value,
            "address": address_text(self.address),
            "bindable": self.bindable,
            "error": self.error,
            "reasons": [r.to_json() for r in self.reasons],
            "netns": self.netns.to_json() if self.netns is not None else None,
        }


def check_port(
    port: int,
    *,
    protocols: Sequence[Protocol | str] = (Protocol.TCP,),
    families: Sequence[Family | int] | None = None,
    host: str | None = None,
    store: Store | None = None,
    netns: str | None = None,
) -> list[PortCheck]:
    """Can ``port`` be bound right now? One :class:`PortCheck` per protocol and family.

    ``host`` is the address a program would bind (an IP address; default
    the wildcard, which conflicts with every address on the port); it picks
    the family. Without it, IPv4 and IPv6 (where the machine has it) are
    checked. ``netns`` checks in other network namespaces (a name, pid, file
    or ``all``: one set of checks per namespace; root for any but this
    process's own). Raises :class:`UsageError` for a bad port, protocol or
    host, :class:`UnsupportedError` for a namespace that cannot be entered.
    """
    from portbook._ports import PortRange, parse_protocol

    PortRange(port, port)  # checks the number
    protos = [p if isinstance(p, Protocol) else parse_protocol(p) for p in protocols]
    if any(p not in (Protocol.TCP, Protocol.UDP) for p in protos):
        raise UsageError("check knows tcp and udp")
    targets = _targets(host, families)
    protos = list(dict.fromkeys(protos))
    if netns is None:
        from portbook._joined import sockets_on_port

        sockets = [s for p in protos for s in sockets_on_port(port, p)]
        local = _here(port, protos, targets)
        return _checks(port, protos, targets, sockets, local, store=store, netns=None)
    return _checks_in(port, protos, targets, store, netns)


if TYPE_CHECKING:
    #: What only the namespace itself can say: each (protocol, family)'s bind
    #: result, its ranges and its privileged-port limit.
    _Local = tuple[dict[tuple[Protocol, Family], tuple[bool, str | None]], LocalRanges, int]


def _here(port: int, protos: list[Protocol], targets: list[tuple[Family, IPAddress]]) -> _Local:
    """The bind of every target, and the ranges, in the calling thread's namespace."""
    from portbook._machine import local_ranges

    probes = {
        (protocol, family): _probe(protocol, family, address, port)
        for protocol in protos
        for family, address in targets
    }
    return probes, local_ranges(), _unprivileged_start()


def _checks(
    port: int,
    protos: list[Protocol],
    targets: list[tuple[Family, IPAddress]],
    sockets: list[Socket],
    local: _Local,
    *,
    store: Store | None,
    netns: Netns | None,
) -> list[PortCheck]:
    probes, ranges, unprivileged = local
    facts = _facts(port, store, ranges)
    checks = []
    for protocol in protos:
        for family, address in targets:
            found = blockers(sockets, protocol, family, address)
            ok, error = probes[protocol, family]
            reasons = list(found)
            if port < unprivileged:
                reasons.insert(0, _privileged(port, unprivileged))
            checks.append(
                _verdict(port, protocol, family, address, ok=ok, error=error, found=reasons,
                         facts=facts, netns=netns)
            )  # fmt: skip
    return checks


def _checks_in(
    port: int,
    protos: list[Protocol],
    targets: list[tuple[Family, IPAddress]],
    store: Store | None,
    netns: str,
) -> list[PortCheck]:
    """:func:`check_port` in each namespace ``netns`` selects: read there by a worker thread."""
    from portbook._exceptions import UnsupportedError
    from portbook._joined import socket_table
    from portbook._live.netns import call_in_namespace

    table = socket_table(port=port, protocols=protos, netns=netns)
    checks: list[PortCheck] = []
    for ns in table.namespaces:
        sockets = [s for s in table.sockets if s.netns == ns]
        try:
            local = call_in_namespace(ns, lambda: _here(port, protos, targets))
        except UnsupportedError:
            if len(table.namespaces) == 1:
                raise
            continue  # of all namespaces, the ones that can be entered (one went meanwhile)
        checks.extend(_checks(port, protos, targets, sockets, local, store=store, netns=ns))
    return checks


def _targets(
    host: str | None, families: Sequence[Family | int] | None
) -> list[tuple[Family, IPAddress]]:
    from ipaddress import ip_address

    from portbook._machine import ipv6_available

    if host is not None:
        try:
            address = ip_address(host.strip("[]"))
        except ValueError:
            raise UsageError(f"expected an IP address to bind, not {host!r}") from None
        return [(Family(address.version), address)]
    wanted = [Family(int(f)) for f in families] if families else [Family.INET, Family.INET6]
    if Family.INET6 in wanted and not ipv6_available():
        wanted = [f for f in wanted if f is not Family.INET6]
    return [(f, ip_address("0.0.0.0" if f is Family.INET else "::")) for f in wanted]


def _verdict(
    port: int,
    protocol: Protocol,
    family: Family,
    address: IPAddress,
    *,
    ok: bool,
    error: str | None,
    found: list[BindReason],
    facts: list[BindReason],
    netns: Netns | None = None,
) -> PortCheck:
    reasons = list(found)
    if not ok and not any(r.blocks for r in reasons):
        reasons.append(
            BindReason("refused", True, f"bind() failed ({error}) for a reason portbook cannot see")
        )
    return PortCheck(port, protocol, family, address, ok, error, tuple(reasons + facts), netns)


def blockers(
    sockets: Iterable[Socket],
    protocol: Protocol,
    family: Family,
    address: IPAddress,
    *,
    reuseaddr: bool = False,
) -> list[BindReason]:
    """The sockets that stop a ``bind()`` of ``protocol`` on ``address`` (of ``family``).

    The kernel's conflict rule without ``SO_REUSEADDR`` on the new socket:
    any socket on the port whose bound address overlaps, including
    connections and TIME-WAIT entries (``reuseaddr=True`` leaves TIME-WAIT
    out, as a server that sets the option may bind over it). ``address`` is the wildcard for
    "any address of this machine".
    """
    from portbook._live.records import SocketState
    from portbook._machine import bindv6only_default

    new_dual = family is Family.INET6 and address.is_unspecified and not bindv6only_default()
    found = []
    for s in sockets:
        if s.protocol is not protocol or not _overlaps(s, family, address, new_dual):
            continue
        if reuseaddr and s.state is SocketState.TIME_WAIT:
            continue
        found.append(_reason(s, family, new_dual))
    return found


def _overlaps(s: Socket, family: Family, address: IPAddress, new_dual: bool) -> bool:
    """Whether socket ``s`` holds an address a new bind to ``address`` would also take."""
    held = s.local_address
    if s.family is Family.INET6 and held.version == 6 and held.ipv4_mapped is None:
        if family is Family.INET6:
            return held.is_unspecified or address.is_unspecified or held == address
        # An IPv6 socket on :: without V6ONLY takes every IPv4 address too.
        v6only = s.v6only if s.v6only is not None else False
        return held.is_unspecified and not v6only
    wire = unmapped(held)  # an IPv4 socket, or IPv6 bound to ::ffff:a.b.c.d
    if family is Family.INET:
        return wire.is_unspecified or address.is_unspecified or wire == address
    if new_dual:
        return True  # a dual-stack :: takes every IPv4 address of the port
    mapped = address.ipv4_mapped if address.version == 6 else None
    return mapped is not None and (wire.is_unspecified or wire == mapped)


def _reason(s: Socket, family: Family, new_dual: bool) -> BindReason:
    from portbook._live.records import SocketState

    holders = ", ".join(f"{p.name or '?'}[{p.pid}]" for p in s.processes) or (
        f"a process portbook cannot name ({s.owner_note})" if s.owner_note else "the kernel"
    )
    where = endpoint_text(s.local_address, s.local_port)
    state = s.state
    many = len(s.processes) > 1  # "nginx[1], nginx[2] listen", "python[3] listens"
    listens, has = ("listen", "have") if many else ("listens", "has")
    if new_dual and s.family is Family.INET and family is Family.INET6:
        message = (
            f"an IPv6 program binding :: without IPV6_V6ONLY takes IPv4 too, and {where} "
            f"is held by {holders}"
        )
        return BindReason("dual-stack", True, message, s)
    if s.family is Family.INET6 and family is Family.INET and s.local_address.is_unspecified:
        message = f"{holders} {listens} on [::] without IPV6_V6ONLY, which takes IPv4 too"
        return BindReason("dual-stack", True, message, s)
    if state is SocketState.TIME_WAIT:
        message = (
            f"a connection on {where} is in TIME-WAIT: bind() fails until it ends (at most "
            f"{TIME_WAIT_SECONDS} s), unless the new socket and the old one both set SO_REUSEADDR"
        )
        return BindReason("time-wait", True, message, s)
    if s.protocol is Protocol.UDP:
        return BindReason("udp", True, f"{holders} {has} a UDP socket on {where}", s)
    if state is SocketState.LISTEN:
        return BindReason("listener", True, f"{holders} {listens} on {where}", s)
    if state is SocketState.CLOSE:
        message = f"{holders} {has} bound {where} without listening or connecting"
        return BindReason("bound", True, message, s)
    return BindReason(
        "connection", True, f"a {state.value} connection of {holders} uses {where}", s
    )


def _probe(
    protocol: Protocol, family: Family, address: IPAddress, port: int
) -> tuple[bool, str | None]:
    """The kernel's answer: a real bind(), without SO_REUSEADDR, closed at once."""
    from portbook._machine import bindv6only_default

    af = socket.AF_INET6 if family is Family.INET6 else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol is Protocol.TCP else socket.SOCK_DGRAM
    try:
        with socket.socket(af, kind) as probe:
            if family is Family.INET6:
                # As a program would have it: the system's default V6ONLY.
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(bindv6only_default()))
            probe.bind((address_text(address), port))
    except OSError as exc:
        return False, errno.errorcode.get(exc.errno or 0, str(exc))
    return True, None


def _facts(port: int, store: Store | None, ranges: LocalRanges) -> list[BindReason]:
    """What is true of the port but does not stop a bind: ranges, names and leases."""
    facts = []
    if ranges.is_reserved(port):
        facts.append(
            BindReason(
                "reserved",
                False,
                f"{port} is in ip_local_reserved_ports: the kernel never hands it out by "
                "itself, but a program may bind it",
            )
        )
    elif port in ranges.ephemeral:
        facts.append(
            BindReason(
                "ephemeral",
                False,
                f"{port} is in this machine's ephemeral range {ranges.ephemeral}: a bind works "
                "now, but any outgoing connection may take the port first",
            )
        )
    facts.extend(_store_facts(port, store))
    return facts


def _store_facts(port: int, store: Store | None) -> list[BindReason]:
    from portbook._joined import kept_by

    named, lease = kept_by(port, store=store)
    facts = []
    if named is not None:
        message = f"{port} is the port of your name {named.name!r} ({named.protocol})"
        facts.append(BindReason("name", False, message))
    if lease is not None:
        who = f"pid {lease.pid}" if lease.pid is not None else "a timed lease"
        facts.append(BindReason("lease", False, f"{port} is leased to {who} (portbook pick)"))
    return facts


def _unprivileged_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 1024


def _can_bind_privileged() -> bool:
    """Whether this process may bind below ``ip_unprivileged_port_start`` (CAP_NET_BIND_SERVICE)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_BIND_SERVICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def _privileged(port: int, start: int) -> BindReason:
    return BindReason(
        "privileged",
        not _can_bind_privileged(),
        f"{port} is below net.ipv4.ip_unprivileged_port_start ({start}): only a process with "
        "CAP_NET_BIND_SERVICE (root, or a file capability) may bind it"
        + ("" if not _can_bind_privileged() else "; this process has it"),
    )


public(BindReason, PortCheck)
