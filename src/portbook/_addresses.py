"""How portbook writes addresses and endpoints, and reads an IPv4 address inside IPv6.

One text for each: an IPv4-mapped IPv6 address is ``::ffff:127.0.0.1`` on
every Python version (as ``ss`` and psutil write it; Python before 3.13
writes ``::ffff:7f00:1``), an endpoint is ``127.0.0.1:80`` or ``[::1]:80``.
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

    IPAddress = IPv4Address | IPv6Address

__all__ = ["address_text", "endpoint_text", "unmapped"]


def address_text(address: IPAddress) -> str:
    """``address`` as text; an IPv4-mapped IPv6 address ends in dotted IPv4."""
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return f"::ffff:{mapped}"
    return str(address)


def endpoint_text(address: IPAddress, port: int) -> str:
    """``127.0.0.1:80`` or ``[::1]:80``."""
    text = address_text(address)
    return f"[{text}]:{port}" if address.version == 6 else f"{text}:{port}"


def unmapped(address: IPAddress) -> IPAddress:
    """The address as it is on the wire: ``::ffff:a.b.c.d`` is IPv4 ``a.b.c.d``."""
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
    return address
