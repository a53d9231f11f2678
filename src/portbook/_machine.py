"""This machine: its own port ranges and the network facts every part of portbook asks.

The ranges: where the kernel picks ephemeral ports, and which ports it never
picks on its own (``ip_local_reserved_ports``). The facts, each read once per
process: whether IPv6 works at all, the loopback device's index, and what
``IPV6_V6ONLY`` a new socket gets.

On Linux both come from ``/proc/sys/net/ipv4``. Other systems have no single
file to read; there portbook answers with the IANA dynamic range
(49152-65535), which is what Windows, macOS and the BSDs use by default, and
says so in ``source``.
"""

from __future__ import annotations

import os
import sys

from portbook._ports import PortClass, PortRange
from portbook._record import public, record

__all__ = [
    "LocalRanges",
    "bindv6only_default",
    "ipv6_available",
    "local_ranges",
    "loopback_index",
]

# Plain strings and os.path rather than pathlib: this runs on every cold
# `portbook lookup`, and pathlib (with urllib.parse and ipaddress) costs about
# a quarter of an interpreter start to import.
_PROC = "/proc/sys/net/ipv4"


@record
class LocalRanges:
    """The ephemeral range and reserved ports of one machine.

    ``source`` says where the numbers came from: ``"/proc/sys/net/ipv4"`` on
    Linux or ``"default"`` where portbook fell back to the IANA dynamic range.
    """

    ephemeral: PortRange
    reserved: tuple[PortRange, ...]
    source: str

    def is_ephemeral(self, port: int) -> bool:
        """True when the kernel may hand ``port`` out as a local port of its own."""
        return port in self.ephemeral and not self.is_reserved(port)

    def is_reserved(self, port: int) -> bool:
        """True when ``port`` is listed in ``ip_local_reserved_ports``."""
        return any(port in r for r in self.reserved)

    def reserved_in_ephemeral(self) -> int:
        """How many ports of the ephemeral range are reserved (overlapping entries count once)."""
        count, upto = 0, self.ephemeral.first - 1  # ports up to ``upto`` are counted
        for r in sorted(self.reserved, key=lambda r: r.first):
            first, last = max(r.first, upto + 1), min(r.last, self.ephemeral.last)
            if first <= last:
                count += last - first + 1
                upto = last
        return count


def local_ranges(proc_dir: str | os.PathLike[str] | None = None) -> LocalRanges:
    """Read this machine's ephemeral range and reserved ports.

    ``proc_dir`` replaces ``/proc/sys/net/ipv4`` (tests point it at fixtures).
    Never raises for a missing or unreadable file: the defaults are returned
    with ``source="default"``.
    """
    base = os.fspath(proc_dir) if proc_dir is not None else _PROC
    if proc_dir is None and not sys.platform.startswith("linux"):
        return _default()
    try:
        lo_text, hi_text = _read(os.path.join(base, "ip_local_port_range")).split()
        ephemeral = PortRange(int(lo_text), int(hi_text))
    except (OSError, ValueError):
        return _default()
    try:
        reserved = parse_port_list(_read(os.path.join(base, "ip_local_reserved_ports")))
    except (OSError, ValueError):
        reserved = ()
    return LocalRanges(ephemeral=ephemeral, reserved=reserved, source=base)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_port_list(text: str) -> tuple[PortRange, ...]:
    """Parse the kernel's ``8080,9000-9010`` list format (empty gives ``()``)."""
    ranges: list[PortRange] = []
    for raw in text.replace("\n", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        lo, _, hi = item.partition("-")
        ranges.append(PortRange(int(lo), int(hi or lo)))
    return tuple(sorted(ranges))


def _default() -> LocalRanges:
    return LocalRanges(ephemeral=PortClass.DYNAMIC.range, reserved=(), source="default")


_ipv6: bool | None = None


def ipv6_available() -> bool:
    """True when this machine can make IPv6 sockets at all (checked once)."""
    global _ipv6
    if _ipv6 is None:
        import socket

        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
                sock.bind(("::1", 0))
            _ipv6 = True
        except OSError:
            _ipv6 = False
    return _ipv6


def loopback_index() -> int | None:
    """The interface index of the loopback device ``lo``, or ``None`` where it has none."""
    import socket

    try:
        return socket.if_nametoindex("lo")
    except OSError:
        return None


def bindv6only_default() -> bool:
    """``net.ipv6.bindv6only``: whether a new IPv6 socket takes only IPv6 (default: no)."""
    try:
        with open("/proc/sys/net/ipv6/bindv6only", encoding="ascii") as fh:
            return fh.read().strip() == "1"
    except OSError:
        return False


public(LocalRanges)
