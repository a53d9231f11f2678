"""Your names in and out of the store: portbook's own export (JSON) and port-for's INI file.

An import is all or nothing: one transaction, and any entry that contradicts
the store (another port for a name, a port of another name, a port leased
right now) changes nothing at all.
"""

from __future__ import annotations

import json

from portbook._exceptions import PortUnavailableError, UsageError
from portbook._names.assignments import Assignment, find_name, insert_name
from portbook._names.names import free_for_a_name, list_names, name_protocol, validate_name
from portbook._names.store import Store, default_store
from portbook._ports import Protocol, parse_port

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "export_names",
    "import_names",
    "parse_names_document",
]

EXPORT_FORMAT = "portbook-names"
EXPORT_VERSION = 1


def export_names(*, store: Store | None = None) -> dict[str, Any]:
    """All names as a JSON-ready document that :func:`import_names` reads back."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "names": [a.to_json() for a in list_names(store=store)],
    }


def parse_names_document(text: str) -> list[Assignment]:
    """Parse an export (JSON) or port-for's INI file (``[DEFAULT]`` ``app = port``)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) and not stripped.startswith("[DEFAULT]"):
        return _parse_json(text)
    return _parse_port_for_ini(text)


def _parse_json(text: str) -> list[Assignment]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"not a portbook export: invalid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        # A number of thousands of digits, or arrays nested past the parser's depth.
        raise UsageError(f"not a portbook export: {type(exc).__name__}: {exc}") from None
    entries = doc.get("names") if isinstance(doc, dict) else doc
    if isinstance(doc, dict):
        _check_header(doc)
    if not isinstance(entries, list):
        raise UsageError("not a portbook export: expected a list of names")
    result = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "name" not in entry or "port" not in entry:
            raise UsageError(f"entry {i + 1} of the export needs a 'name' and a 'port'")
        result.append(
            _entry(str(entry["name"]), str(entry["port"]), str(entry.get("protocol", "tcp")))
        )
    return result


def _check_header(doc: dict[str, Any]) -> None:
    if doc.get("format", EXPORT_FORMAT) != EXPORT_FORMAT:
        raise UsageError(f"not a portbook export: format {str(doc.get('format'))[:40]!r}")
    version = doc.get("version", EXPORT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise UsageError(f"not a portbook export: version {str(version)[:40]!r} is not a number")
    if version > EXPORT_VERSION:
        raise UsageError(f"the export has version {version}, newer than this portbook reads")


def _parse_port_for_ini(text: str) -> list[Assignment]:
    import configparser

    # port-for writes its ConfigParser's DEFAULT section: "app = port" lines.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(
            f"neither a portbook export (JSON) nor a port-for INI file: {first}"
        ) from None
    items: dict[str, str] = dict(parser.defaults())
    for section in parser.sections():
        for key, value in parser.items(section, raw=True):
            items.setdefault(key, value)
    return [_entry(key, value, "tcp") for key, value in items.items()]


def _entry(name: str, port_text: str, protocol_text: str) -> Assignment:
    validate_name(name)
    port = parse_port(port_text)
    if port == 0:
        raise UsageError(f"{name!r}: port 0 cannot be a name's")
    return Assignment(name, port, name_protocol(protocol_text))


def import_names(text: str, *, store: Store | None = None) -> list[Assignment]:
    """Add the names of an export (JSON) or of port-for's INI file, all or nothing.

    Names already present with the same port and protocol are skipped;
    returns the names added. Raises :class:`UsageError` for a file that
    does not parse, :class:`InvalidNameError` for a bad name in it, and
    :class:`PortUnavailableError` when an entry contradicts the store (a
    name with another port, a port of another name, a port leased now):
    then nothing at all is imported.
    """
    entries = parse_names_document(text)
    _check_no_duplicates(entries)
    added: list[Assignment] = []
    with (store or default_store()).write(durable=True) as conn:
        for entry in entries:
            existing = find_name(conn, entry.name)
            if existing == entry:
                continue
            if existing is not None:
                raise PortUnavailableError(
                    f"{entry.name!r} is {existing.protocol}/{existing.port} here, "
                    f"{entry.protocol}/{entry.port} in the file; nothing imported",
                    port=entry.port,
                    protocol=entry.protocol.value,
                    holder=entry.name,
                )
            try:
                free_for_a_name(conn, entry.port, entry.protocol)
            except PortUnavailableError as exc:
                raise PortUnavailableError(
                    f"{entry.name!r}: {exc}; nothing imported",
                    port=exc.port,
                    protocol=exc.protocol,
                    holder=exc.holder,
                ) from None
            insert_name(conn, entry)
            added.append(entry)
    return added


def _check_no_duplicates(entries: Iterable[Assignment]) -> None:
    names: dict[str, Assignment] = {}
    ports: dict[tuple[int, Protocol], str] = {}
    for e in entries:
        if e.name in names and names[e.name] != e:
            raise UsageError(f"the file gives {e.name!r} two different ports")
        other = ports.get((e.port, e.protocol))
        if other is not None and other != e.name:
            raise UsageError(f"the file gives {e.protocol}/{e.port} to {other!r} and {e.name!r}")
        names[e.name] = e
        ports[(e.port, e.protocol)] = e.name
