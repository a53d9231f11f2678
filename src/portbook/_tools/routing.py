"""Where this machine's routing table sends a packet: the kernel's own answer, as ``ip route get``.

One ``RTM_GETROUTE`` request over ``NETLINK_ROUTE`` for one destination. The
answer's type says whether the address is this machine's (``local``), a
broadcast address (``127.255.255.255`` is one, on ``lo``), or one the packet
would leave for (``unicast``: through which device, which gateway, from which
source address), or none at all. Written by hand because no maintained
library makes this one request without pulling in a whole netlink stack;
it is the same kind of message the socket table's netlink backend sends.
"""

from __future__ import annotations

import os
import socket
import struct

from portbook._record import record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

__all__ = ["RouteLookup", "lookup_route"]

_RTM_NEWROUTE, _RTM_GETROUTE = 24, 26
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_PREFSRC = 1, 4, 5, 7
# rtm_type values (linux/rtnetlink.h), by the words ip(8) uses.
_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
}
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_ATTR = struct.Struct("=HH")


@record
class RouteLookup:
    """The routing table's answer for one destination.

    ``kind`` is ``local``, ``broadcast``, ``unicast``, ``unreachable``, ...
    (ip(8)'s words); ``device``, ``gateway`` and ``source`` are set when the
    table names them. ``error`` says why there is no route at all.
    """

    kind: str
    device: str | None = None
    gateway: str | None = None
    source: str | None = None
    error: str | None = None

    def __str__(self) -> str:
        parts = [self.kind]
        if self.device:
            parts.append(f"dev {self.device}")
        if self.gateway:
            parts.append(f"via {self.gateway}")
        if self.source:
            parts.append(f"src {self.source}")
        return " ".join(parts)


def lookup_route(address: IPv4Address | IPv6Address) -> RouteLookup | None:
    """Ask the kernel where it would send a packet for ``address``; ``None`` without netlink."""
    af = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    packed = address.packed
    attr = _ATTR.pack(4 + len(packed), _RTA_DST) + packed
    body = _RTMSG.pack(af, len(packed) * 8, 0, 0, 0, 0, 0, 0, 0) + attr
    request = _HEADER.pack(_HEADER.size + len(body), _RTM_GETROUTE, _NLM_F_REQUEST, 1, 0) + body
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(2.0)
            sock.send(request)
            reply = sock.recv(65536)
    except (OSError, AttributeError):
        return None  # no netlink here (another system, or a sandbox refusing it)
    return _parse(reply, af)


def _parse(reply: bytes, af: int) -> RouteLookup | None:
    if len(reply) < _HEADER.size:
        return None
    _length, kind, _flags, _seq, _pid = _HEADER.unpack_from(reply, 0)
    if kind == _NLMSG_ERROR:
        code = -struct.unpack_from("=i", reply, _HEADER.size)[0]
        return RouteLookup("unreachable", error=os.strerror(code))
    if kind != _RTM_NEWROUTE or len(reply) < _HEADER.size + _RTMSG.size:
        return None
    fields = _RTMSG.unpack_from(reply, _HEADER.size)
    attrs = _attributes(reply, _HEADER.size + _RTMSG.size)
    device = None
    if _RTA_OIF in attrs:
        index = struct.unpack_from("=I", attrs[_RTA_OIF])[0]
        try:
            device = socket.if_indextoname(index)
        except OSError:
            device = f"#{index}"
    return RouteLookup(
        _TYPES.get(fields[7], str(fields[7])),
        device,
        _address(attrs.get(_RTA_GATEWAY), af),
        _address(attrs.get(_RTA_PREFSRC), af),
    )


def _attributes(reply: bytes, pos: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    while pos + _ATTR.size <= len(reply):
        length, kind = _ATTR.unpack_from(reply, pos)
        if length < _ATTR.size:
            break
        attrs.setdefault(kind, reply[pos + _ATTR.size : pos + length])
        pos += (length + 3) & ~3
    return attrs


def _address(data: bytes | None, af: int) -> str | None:
    if not data:
        return None
    try:
        return socket.inet_ntop(af, data)
    except (OSError, ValueError):
        return None
