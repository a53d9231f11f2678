"""How close this machine is to running out of ephemeral ports, per destination.

A TCP connection is named by its 4-tuple, so Linux hands the same local port
to connections toward *different* destinations (``__inet_hash_connect`` only
checks that the 4-tuple is unused). What runs out is therefore the set of
local ports toward one (remote address, remote port): at most the ephemeral
range, minus the reserved ports, minus the ports some socket holds through
``bind()`` (a listener in the range, for one), which ``connect()`` never
reuses. Connections in TIME-WAIT still hold their 4-tuple; with
``net.ipv4.tcp_tw_reuse`` (1 everywhere, 2 for loopback only, the default) a
new connection may take over a TIME-WAIT one when TCP timestamps allow.

UDP does not share: an unbound UDP socket gets a local port no other UDP
socket uses, so UDP ports are counted for the whole machine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portbook._exceptions import UsageError
from portbook._machine import LocalRanges, local_ranges
from portbook._ports import Protocol
from portbook._record import public, record

if TYPE_CHECKING:
    from portbook._live.records import Socket

__all__ = [
    "DEFAULT_THRESHOLD",
    "DestinationUsage",
    "EphemeralUsage",
    "ephemeral_usage",
    "summarize_ephemeral",
]

DEFAULT_THRESHOLD = 0.8

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@record
class DestinationUsage:
    """Local ephemeral ports in use toward one (protocol, remote address, remote port)."""

    protocol: Protocol
    remote_address: IPAddress
    remote_port: int
    in_use: int
    time_wait: int
    capacity: int

    @property
    def ratio(self) -> float:
        return self.in_use / self.capacity if self.capacity else 1.0

    def to_json(self, threshold: float) -> dict[str, Any]:
        return {
            "protocol": self.protocol.value,
            "remote_address": str(self.remote_address),
            "remote_port": self.remote_port,
            "in_use": self.in_use,
            "time_wait": self.time_wait,
            "capacity": self.capacity,
            "ratio": round(self.ratio, 4),
            "warning": self.ratio >= threshold,
        }


@record
class EphemeralUsage:
    """The ephemeral range of this machine and how much of it is used.

    ``capacity`` is the number of ports ``connect()`` may pick (range minus
    reserved ports); ``bound`` counts ports of the range held through
    ``bind()`` (listeners, bound UDP sockets), lost to every destination.
    ``destinations`` is sorted by use, highest first. ``warnings`` are the
    destinations (and UDP, as a whole) at or above ``threshold``.
    """

    ranges: LocalRanges
    capacity: int
    bound: int
    udp_in_use: int
    threshold: float
    tw_reuse: int | None
    destinations: tuple[DestinationUsage, ...]

    @property
    def udp_ratio(self) -> float:
        return self.udp_in_use / self.capacity if self.capacity else 1.0

    @property
    def warnings(self) -> tuple[str, ...]:
        out = [
            f"{d.protocol.value} to {_ep(d.remote_address, d.remote_port)}: "
            f"{d.in_use} of {d.capacity} local ports in use ({d.ratio:.0%})"
            for d in self.destinations
            if d.ratio >= self.threshold
        ]
        if self.udp_ratio >= self.threshold:
            out.append(
                f"udp: {self.udp_in_use} of {self.capacity} local ports in use "
                f"({self.udp_ratio:.0%})"
            )
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "ephemeral": {"first": self.ranges.ephemeral.first, "last": self.ranges.ephemeral.last},
            "reserved": [str(r) for r in self.ranges.reserved],
            "ranges_source": self.ranges.source,
            "capacity": self.capacity,
            "bound": self.bound,
            "tcp_tw_reuse": self.tw_reuse,
            "threshold": self.threshold,
            "udp": {
                "in_use": self.udp_in_use,
                "capacity": self.capacity,
                "ratio": round(self.udp_ratio, 4),
                "warning": self.udp_ratio >= self.threshold,
            },
            "destinations": [d.to_json(self.threshold) for d in self.destinations],
            "warnings": list(self.warnings),
        }


def _ep(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _tw_reuse(proc: Path = Path("/proc/sys/net/ipv4/tcp_tw_reuse")) -> int | None:
    try:
        return int(proc.read_text().strip())
    except (OSError, ValueError):
        return None


def summarize_ephemeral(
    sockets: Iterable[Socket],
    ranges: LocalRanges,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    tw_reuse: int | None = None,
) -> EphemeralUsage:
    """Count ephemeral ports in use in ``sockets`` (pure: no I/O)."""
    from portbook._live.records import SocketState

    if not 0 < threshold <= 1:
        raise UsageError(f"threshold must be above 0 and at most 1, not {threshold}")
    socks = list(sockets)
    capacity = len(ranges.ephemeral) - ranges.reserved_in_ephemeral()
    # A TCP port held by a listener (or a bound, unconnected socket) is a
    # server's port: connections on it are accepted ones, not outgoing.
    tcp_bound = {
        s.local_port
        for s in socks
        if s.protocol is Protocol.TCP
        and s.state in (SocketState.LISTEN, SocketState.CLOSE)
        and ranges.is_ephemeral(s.local_port)
    }
    udp_ports: set[int] = set()
    per_dest: dict[tuple[Protocol, IPAddress, int], tuple[set[int], set[int]]] = {}
    for s in socks:
        if not ranges.is_ephemeral(s.local_port):
            continue
        if s.protocol is Protocol.UDP:
            udp_ports.add(s.local_port)
            continue
        if s.protocol is not Protocol.TCP or s.local_port in tcp_bound:
            continue
        if s.remote_address is None or s.remote_port is None:
            continue
        key = (Protocol.TCP, _unmapped(s.remote_address), s.remote_port)
        ports, tw = per_dest.setdefault(key, (set(), set()))
        ports.add(s.local_port)
        if s.state is SocketState.TIME_WAIT:
            tw.add(s.local_port)
    tcp_capacity = max(capacity - len(tcp_bound), 0)
    destinations = sorted(
        (
            DestinationUsage(proto, addr, port, len(ports), len(tw), tcp_capacity)
            for (proto, addr, port), (ports, tw) in per_dest.items()
        ),
        key=lambda d: (-d.in_use, str(d.remote_address), d.remote_port),
    )
    return EphemeralUsage(
        ranges=ranges,
        capacity=capacity,
        bound=len(tcp_bound),
        udp_in_use=len(udp_ports),
        threshold=threshold,
        tw_reuse=tw_reuse,
        destinations=tuple(destinations),
    )


def ephemeral_usage(
    *, threshold: float = DEFAULT_THRESHOLD, sockets: Iterable[Socket] | None = None
) -> EphemeralUsage:
    """This machine's ephemeral range and its use per destination, from the live table.

    ``sockets``: a reading of the table already made (every state; ports outside
    the range are ignored), so that a caller that has one does not read it twice.
    """
    ranges = local_ranges()
    if sockets is None:
        from portbook._joined import list_sockets

        sockets = list_sockets(port=ranges.ephemeral, owners=False)
    return summarize_ephemeral(sockets, ranges, threshold=threshold, tw_reuse=_tw_reuse())


public(DestinationUsage, EphemeralUsage)
