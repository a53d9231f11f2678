"""The book's records: an entry (:class:`Service`), where it came from, and what data is in use.

The rows of each source (the registry database, ``/etc/services``, the
unofficial list) become :class:`Service` records here, in one place.
"""

from __future__ import annotations

import enum

from portbook._exceptions import RegistryError
from portbook._ports import MAX_PORT, PortClass, PortRange, Protocol
from portbook._record import public, record

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import date
    from typing import Any

    from portbook._book.etc_services import EtcServicesEntry

__all__ = [
    "DYNAMIC_BLOCK",
    "RegistryInfo",
    "Service",
    "ServiceSource",
    "ServiceStatus",
    "etc_service",
    "parse_date",
    "registry_service",
    "unofficial_service",
]


class ServiceSource(enum.StrEnum):
    """Where an answer came from."""

    IANA = "iana"
    ETC_SERVICES = "etc-services"
    UNOFFICIAL = "unofficial"


class ServiceStatus(enum.StrEnum):
    """Standing of an entry.

    IANA records carry the registry's own status: an assignment, a Reserved
    block (held back, or taken back from a former assignee) or an Unassigned
    block. ``/etc/services`` entries are ``assigned`` (the system names them);
    unofficial entries are always ``unassigned``: the use is a convention, not
    an IANA assignment (the port's IANA entries say what it is assigned to).
    """

    ASSIGNED = "assigned"
    RESERVED = "reserved"
    UNASSIGNED = "unassigned"


@record
class Service:
    """One entry of the book: a service name, a port or range, or both.

    ``port`` is the first port and ``port_end`` the last (equal for a single
    port); both are ``None`` for a name-only IANA entry. ``protocol`` is
    ``None`` when the entry is not tied to one (name-only entries, some
    Unassigned blocks, the Dynamic range). IANA gives only a month for a few
    old dates; those are the 1st of that month here. ``software`` is set for
    unofficial entries, ``aliases`` for ``/etc/services`` entries.
    """

    name: str | None
    port: int | None
    port_end: int | None
    protocol: Protocol | None
    description: str
    source: ServiceSource
    status: ServiceStatus
    assignee: str | None = None
    contact: str | None = None
    registered: date | None = None
    modified: date | None = None
    reference: str | None = None
    service_code: str | None = None
    unauthorized_use: str | None = None
    notes: str | None = None
    aliases: tuple[str, ...] = ()
    software: str | None = None

    @property
    def ports(self) -> PortRange | None:
        """The port or range as a :class:`PortRange`, ``None`` for a name-only entry."""
        if self.port is None:
            return None
        return PortRange(self.port, self.port_end if self.port_end is not None else self.port)

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of ``portbook lookup/search --json`` (see README)."""
        return {
            "name": self.name,
            "port": self.port,
            "port_end": self.port_end,
            "protocol": self.protocol.value if self.protocol is not None else None,
            "description": self.description,
            "source": self.source.value,
            "status": self.status.value,
            "aliases": list(self.aliases),
            "software": self.software,
            "assignee": self.assignee,
            "contact": self.contact,
            "registered": self.registered.isoformat() if self.registered else None,
            "modified": self.modified.isoformat() if self.modified else None,
            "reference": self.reference,
            "service_code": self.service_code,
            "unauthorized_use": self.unauthorized_use,
            "notes": self.notes,
        }


@record
class RegistryInfo:
    """What data the book uses: the registry file, its origin and counts, and the overlays.

    ``origin`` is ``"packaged"`` (shipped with portbook), ``"user"`` (installed
    by ``update`` into the user data directory) or ``"file"`` (given
    explicitly). ``updated`` is the registry's own date (the XML's
    ``<updated>``; ``None`` when built from the CSV, which has none).
    ``newest_record`` is the latest registration or modification date of any
    record (how recent the data is, also for a CSV). ``warning`` says why a
    user copy was skipped, if one was.
    """

    path: str
    origin: str
    source_name: str
    source_sha256: str
    source_format: str
    updated: date | None
    records: int
    assigned: int
    reserved: int
    unassigned: int
    names_only: int
    newest_record: date | None
    etc_services_path: str | None
    etc_services_entries: int
    unofficial_entries: int
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "origin": self.origin,
            "source_name": self.source_name,
            "source_sha256": self.source_sha256,
            "source_format": self.source_format,
            "updated": self.updated.isoformat() if self.updated else None,
            "records": self.records,
            "assigned": self.assigned,
            "reserved": self.reserved,
            "unassigned": self.unassigned,
            "names_only": self.names_only,
            "newest_record": self.newest_record.isoformat() if self.newest_record else None,
            "etc_services_path": self.etc_services_path,
            "etc_services_entries": self.etc_services_entries,
            "unofficial_entries": self.unofficial_entries,
            "warning": self.warning,
        }


_PROTOCOL_BY_VALUE: dict[str | None, Protocol | None] = {p.value: p for p in Protocol}
_PROTOCOL_BY_VALUE[None] = None
_STATUS_BY_VALUE = {s.value: s for s in ServiceStatus}
_ALL_PROTOCOLS = tuple(p.value for p in Protocol)
_PROTOCOL_SET = frozenset(_ALL_PROTOCOLS)
# The registry lists nothing above 49151: RFC 6335 leaves the Dynamic and/or
# Private ports unassigned for good. A lookup there answers with that block.
DYNAMIC_BLOCK = Service(
    name=None,
    port=PortClass.DYNAMIC.first,
    port_end=PortClass.DYNAMIC.last,
    protocol=None,
    description="Dynamic and/or Private Ports (never assigned by IANA)",
    source=ServiceSource.IANA,
    status=ServiceStatus.UNASSIGNED,
    reference="RFC6335",
)


def parse_date(text: str | None) -> date | None:
    if not text:
        return None
    # Only for records that have a date (`ls` names ports without), and from
    # the C module: its `date` is the very class `datetime.date` is, while the
    # `datetime` module around it costs six times as much to import (5.7M
    # instructions, about 6% of a cold `lookup 443`).
    if TYPE_CHECKING:
        from datetime import date
    else:
        try:
            from _datetime import date
        except ImportError:  # an interpreter without the C module (PyPy)
            from datetime import date

    try:
        if len(text) == 7:  # "2007-06": IANA recorded only the month
            return date(int(text[:4]), int(text[5:7]), 1)
        return date.fromisoformat(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"date {text!r}: {exc}") from None


class MalformedRecordError(RegistryError):
    """A registry row that does not make a :class:`Service` (raised without the file's path)."""


def registry_service(row: tuple[Any, ...]) -> Service:
    """The record of one registry row; :class:`MalformedRecordError` if it holds what no
    registry holds (``update`` never installs such a row, but a file can be edited)."""
    try:
        return _checked_service(row)
    except (ValueError, KeyError, TypeError) as exc:
        ident = row[0] if row else "?"
        raise MalformedRecordError(f"registry record {ident} is malformed ({exc})") from None


def _checked_service(row: tuple[Any, ...]) -> Service:
    (_, name, port, port_end, protocol, description, status, assignee, contact) = row[:9]
    (registered, modified, reference, service_code, unauthorized, notes) = row[9:]
    if port is None:
        if port_end is not None:
            raise ValueError("a last port without a first")
    elif not (type(port) is int and type(port_end) is int and 0 <= port <= port_end <= MAX_PORT):
        raise ValueError(f"ports {port!r}-{port_end!r}")
    if type(description) is not str:
        raise TypeError("description is not text")
    for text in (name, assignee, contact, reference, service_code, unauthorized, notes):
        if text is not None and type(text) is not str:
            raise TypeError(f"{text!r} is not text")
    return Service(
        name,
        port,
        port_end,
        _PROTOCOL_BY_VALUE[protocol],
        description,
        ServiceSource.IANA,
        _STATUS_BY_VALUE[status],
        assignee,
        contact,
        parse_date(registered),
        parse_date(modified),
        reference,
        service_code,
        unauthorized,
        notes,
        (),
        None,
    )


def etc_service(e: EtcServicesEntry) -> Service:
    return Service(
        name=e.name,
        port=e.port,
        port_end=e.port,
        protocol=_PROTOCOL_BY_VALUE[e.protocol],
        description=e.comment or "",
        source=ServiceSource.ETC_SERVICES,
        status=ServiceStatus.ASSIGNED,
        aliases=e.aliases,
    )


def unofficial_service(entry: tuple[int, int, str, str, str, str]) -> Service:
    first, last, proto, name, software, description = entry
    return Service(
        name=name,
        port=first,
        port_end=last,
        protocol=_PROTOCOL_BY_VALUE[proto],
        description=description,
        source=ServiceSource.UNOFFICIAL,
        status=ServiceStatus.UNASSIGNED,
        software=software,
    )


public(RegistryInfo, Service, ServiceSource, ServiceStatus)
