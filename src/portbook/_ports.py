"""The port model: protocols, families, port classes, ranges, and what users type.

Everything here is pure (no I/O) and cheap to import: the CLI parses its
arguments with these functions before it decides what else to load.
"""

from __future__ import annotations

import enum

from portbook._exceptions import InvalidPortSpecError, UsageError
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Iterator

__all__ = [
    "MAX_PORT",
    "Family",
    "PortClass",
    "PortRange",
    "PortSpec",
    "Protocol",
    "parse_host",
    "parse_port",
    "parse_port_range",
    "parse_port_spec",
    "parse_protocol",
    "port_class",
]

MAX_PORT = 65535
# What a person plausibly types; anything longer is refused before parsing so
# that a pasted blob gets one short error line, not a slow parse.
_MAX_SPEC_LEN = 300


class Protocol(enum.StrEnum):
    """Transport protocols that have port numbers in the IANA registry."""

    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"
    DCCP = "dccp"


class Family(enum.IntEnum):
    """Address family, by IP version number (as ``ss -4/-6`` and JSON show it)."""

    INET = 4
    INET6 = 6


class PortClass(enum.Enum):
    """IANA's three port classes (RFC 6335 section 6).

    ``iana_name`` is the registry's own term; ``common_name`` the older
    vocabulary most people use.
    """

    SYSTEM = (0, 1023, "System", "well-known")
    USER = (1024, 49151, "User", "registered")
    DYNAMIC = (49152, 65535, "Dynamic/Private", "dynamic-private")

    def __init__(self, first: int, last: int, iana_name: str, common_name: str) -> None:
        self.first = first
        self.last = last
        self.iana_name = iana_name
        self.common_name = common_name

    @property
    def range(self) -> PortRange:
        return PortRange(self.first, self.last)


def port_class(port: int) -> PortClass:
    """The IANA class of ``port``; raises :class:`InvalidPortSpecError` outside 0-65535."""
    _check_port(port, str(port))
    if port <= PortClass.SYSTEM.last:
        return PortClass.SYSTEM
    if port <= PortClass.USER.last:
        return PortClass.USER
    return PortClass.DYNAMIC


@record(order=True)
class PortRange:
    """An inclusive range of port numbers; a single port has ``first == last``."""

    first: int
    last: int

    def __post_init__(self) -> None:
        _check_port(self.first, str(self.first))
        _check_port(self.last, str(self.last))
        if self.first > self.last:
            raise InvalidPortSpecError(f"{self.first}-{self.last}", "range start is above its end")

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.first, self.last + 1))

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    @property
    def single(self) -> bool:
        return self.first == self.last


@record
class PortSpec:
    """What a user typed to name a port, parsed.

    Exactly one of ``ports`` and ``name`` is set. ``host`` is an IP address
    (``ipaddress`` object) or a host name string when the text had one, and
    ``None`` for a bare port; ``":8080"`` gives ``host=None``.
    """

    text: str
    protocol: Protocol | None = None
    ports: PortRange | None = None
    name: str | None = None
    host: ipaddress.IPv4Address | ipaddress.IPv6Address | str | None = None


def parse_protocol(text: str) -> Protocol:
    """``"tcp"``/``"TCP"`` -> :class:`Protocol`; anything else is an error."""
    try:
        return Protocol(text.strip().lower())
    except ValueError:
        known = ", ".join(p.value for p in Protocol)
        raise InvalidPortSpecError(text, f"unknown protocol (known: {known})") from None


def parse_port(text: str) -> int:
    """A decimal port number 0-65535."""
    _check_length(text)
    stripped = text.strip()
    if not stripped:
        raise InvalidPortSpecError(text, "empty port")
    if not stripped.isascii() or not stripped.lstrip("-+").isdigit():
        raise InvalidPortSpecError(text, "not a port number")
    value = int(stripped)
    _check_port(value, text)
    return value


def parse_port_range(text: str) -> PortRange:
    """``"8080"`` or ``"8000-8100"`` (inclusive)."""
    _check_length(text)
    stripped = text.strip()
    first, sep, last = stripped.partition("-")
    if sep and first:  # "-1" is a negative number, not a range
        lo, hi = parse_port(first), parse_port(last)
        if lo > hi:
            raise InvalidPortSpecError(text, "range start is above its end")
        return PortRange(lo, hi)
    port = parse_port(stripped)
    return PortRange(port, port)


def parse_port_spec(text: str) -> PortSpec:
    """Parse what a user types to name a port.

    Accepted forms: ``443``, ``tcp/443``, ``443/udp``, ``https``,
    ``https/tcp``, ``8000-8100``, ``127.0.0.1:5432``, ``[::1]:8080``,
    ``:8080``, ``localhost:8080``. Raises :class:`InvalidPortSpecError` (a
    :class:`ValueError`) with a one-line reason for anything else.
    """
    _check_length(text)
    stripped = text.strip()
    if not stripped:
        raise InvalidPortSpecError(text, "empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in stripped) or " " in stripped:
        raise InvalidPortSpecError(text, "contains spaces or control characters")

    protocol, body = _split_protocol(stripped, text)
    host, body = _split_host(body, text)
    if _looks_numeric(body):
        return PortSpec(text=text, protocol=protocol, ports=_parse_range_in(body, text), host=host)
    if host is not None:
        # host:name is legal for services (getaddrinfo resolves it) but ambiguous
        # here; a port number is what every caller of host:port wants.
        raise InvalidPortSpecError(text, "expected a port number after the address")
    if not _is_service_name(body):
        raise InvalidPortSpecError(text, "not a port, range or service name")
    return PortSpec(text=text, protocol=protocol, name=body.lower())


_PROTOCOL_NAMES = frozenset(p.value for p in Protocol)


def _split_protocol(stripped: str, text: str) -> tuple[Protocol | None, str]:
    """``tcp/443`` or ``443/tcp`` -> (tcp, ``443``); no protocol -> (None, as given)."""
    if "/" not in stripped or stripped.startswith("["):
        return None, stripped
    head, _, tail = stripped.partition("/")
    if head.lower() in _PROTOCOL_NAMES:
        protocol, body = Protocol(head.lower()), tail
    elif tail.lower() in _PROTOCOL_NAMES:
        protocol, body = Protocol(tail.lower()), head
    elif _looks_numeric(head) or _looks_numeric(tail):
        bad = tail if _looks_numeric(head) else head
        known = ", ".join(p.value for p in Protocol)
        raise InvalidPortSpecError(text, f"unknown protocol {bad!r} (known: {known})")
    else:
        return None, stripped  # a service name containing "/" (the registry has "914c/g")
    if not body:
        raise InvalidPortSpecError(text, "missing port after the protocol")
    return protocol, body


def _split_host(
    body: str, text: str
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address | str | None, str]:
    """``[::1]:8080``, ``127.0.0.1:80``, ``:80``, ``localhost:80`` -> (host, port text)."""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or not body[end + 1 :].startswith(":"):
            raise InvalidPortSpecError(text, "expected [IPv6-address]:port")
        import ipaddress  # only for a spec with an address: it costs a millisecond to import

        try:
            host = ipaddress.IPv6Address(body[1:end])
        except ValueError:
            raise InvalidPortSpecError(text, "not an IPv6 address inside [...]") from None
        if not body[end + 2 :]:
            raise InvalidPortSpecError(text, "missing port after the address")
        return host, body[end + 2 :]
    if body.count(":") > 1:
        raise InvalidPortSpecError(text, "write an IPv6 address in brackets: [::1]:8080")
    if ":" not in body:
        return None, body
    host_text, _, port_text = body.rpartition(":")
    if not port_text:
        raise InvalidPortSpecError(text, "missing port after ':'")
    return (_parse_host(host_text, text) if host_text else None), port_text


def _looks_numeric(body: str) -> bool:
    # Names may start with a digit ("3com-tsmux", "914c/g"), so a port or range
    # is recognised by its whole shape, not its first character.
    return all(c in "0123456789-+" for c in body)


def _parse_range_in(body: str, text: str) -> PortRange:
    try:
        return parse_port_range(body)
    except InvalidPortSpecError as exc:
        raise InvalidPortSpecError(text, exc.reason) from None


def parse_host(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    """An IP address (``[::1]`` brackets allowed) or a host name as DNS allows it, lower case.

    Raises :class:`UsageError` for anything else: an empty label
    (``a..b``), a label over 63 characters, a name over 253, characters no
    host name has.
    """
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    try:
        _check_length(body)
        return _parse_host(body, text)
    except InvalidPortSpecError as exc:
        raise UsageError(exc.reason) from None


def _parse_host(host_text: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    import ipaddress  # only for a spec with an address: it costs a millisecond to import

    try:
        return ipaddress.ip_address(host_text)
    except ValueError:
        pass
    labels = host_text.rstrip(".").split(".")
    if len(host_text) > 253 or not all(
        label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    ):
        raise InvalidPortSpecError(text, f"not an IP address or host name: {host_text!r}")
    if all(label.isdigit() for label in labels):
        raise InvalidPortSpecError(text, f"not a valid IPv4 address: {host_text!r}")
    return host_text.lower()


def _is_service_name(body: str) -> bool:
    # RFC 6335 names are letters, digits and hyphens; the registry's older
    # entries also use ".", "_", "+", "*" and "/" ("z39.50", "sql*net").
    return (
        len(body) <= 63
        and body.isascii()
        and body[0].isalnum()
        and all(c.isalnum() or c in "-._+*/" for c in body)
    )


def _check_length(text: str) -> None:
    if len(text) > _MAX_SPEC_LEN:
        raise InvalidPortSpecError(text, f"too long ({len(text)} characters)")


def _check_port(port: int, text: str) -> None:
    if not 0 <= port <= MAX_PORT:
        raise InvalidPortSpecError(text, f"port must be 0-{MAX_PORT}")


public(Protocol, Family, PortClass, PortRange, PortSpec)
