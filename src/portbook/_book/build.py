"""Build portbook's registry database from IANA's published registry files.

IANA publishes the Service Name and Transport Protocol Port Number Registry as
XML (namespace ``http://www.iana.org/assignments``) and as a 12-column CSV.
Both are parsed here into the same :class:`RawRecord` rows, validated, and
written into one SQLite file that :mod:`portbook._book.registry` opens read-only.

Why SQLite: the registry has about 14,500 records. Parsing the XML (or a JSON
dump of it) costs tens of milliseconds and megabytes of objects on every run,
while an SQLite file with indexes on port and name answers one lookup by
touching a few pages, so a cold ``portbook lookup 443`` stays close to the
bare interpreter's start-up time. ``sqlite3`` is in the standard library.

Used by ``scripts/build_registry.py`` (the packaged data) and by
``portbook update`` (a user's newer copy). Nothing here runs on a plain lookup.

What a registry file may hold is bounded, because ``update`` takes files from
the network: at most :data:`MAX_RECORDS` records, :data:`MAX_EXPANDED_PORTS`
ports once every range is expanded (the lookup tables hold one row per port
of every record: 14,533 records each spanning 0-65535 would be a billion
rows), :data:`MAX_XML_ELEMENTS` XML elements, and no DTD at all (refused by
the XML parser itself, whatever the encoding, see :func:`_parse_xml_tree`).
Every date must be a real calendar day. A database is renamed into place only
after it was read back through the very reader lookups use.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import re
import sqlite3
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from portbook._book.registry import SCHEMA_VERSION, parse_registry_date
from portbook._exceptions import RegistryError, RegistryUpdateError
from portbook._record import record

__all__ = [
    "CSV_HEADER",
    "MAX_EXPANDED_PORTS",
    "MAX_RECORDS",
    "MAX_XML_ELEMENTS",
    "MIN_RECORDS",
    "SCHEMA_VERSION",
    "BuiltRegistry",
    "RawRecord",
    "build_registry_file",
    "detect_format",
    "install_database",
    "parse_csv",
    "parse_registry",
    "parse_xml",
    "validate",
    "write_database",
]

# A real registry has had more than 10,000 records since the 2000s; anything
# smaller is a truncated download or the wrong file, and must not replace good data.
MIN_RECORDS = 10_000
# Upper bounds, each about ten or more times what the registry of 2026 has
# (14,533 records, 55,659 ports with ranges expanded, 104,975 XML elements):
# room for decades of growth, and far below what would exhaust memory or disk.
MAX_RECORDS = 200_000
MAX_EXPANDED_PORTS = 600_000
MAX_XML_ELEMENTS = 2_000_000

CSV_HEADER = (
    "Service Name",
    "Port Number",
    "Transport Protocol",
    "Description",
    "Assignee",
    "Contact",
    "Registration Date",
    "Modification Date",
    "Reference",
    "Service Code",
    "Unauthorized Use Reported",
    "Assignment Notes",
)

_NS = "{http://www.iana.org/assignments}"
_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "dccp"})
_PORTS = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


@record
class RawRecord:
    """One registry record as the builder sees it: strings, with ``None`` for absent fields."""

    name: str | None
    port: int | None
    port_end: int | None
    protocol: str | None
    description: str
    status: str
    assignee: str | None = None
    contact: str | None = None
    registered: str | None = None
    modified: str | None = None
    reference: str | None = None
    service_code: str | None = None
    unauthorized_use: str | None = None
    notes: str | None = None


@record
class BuiltRegistry:
    """What a registry file held: its records plus where they came from."""

    records: tuple[RawRecord, ...]
    source_name: str
    source_sha256: str
    source_format: str  # "xml" or "csv"
    updated: str | None  # the registry's own <updated> date; the CSV has none


def detect_format(data: bytes) -> str:
    """``"xml"`` or ``"csv"`` from the content (never the file name); else an error."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") or _starts_as_wide_xml(data):
        return "xml"
    # A comma-separated first line is taken as the CSV form; its header is
    # then checked column by column, which gives the clearer error.
    first_line = head.split(b"\n", 1)[0]
    if first_line.count(b",") >= 2 and b"\0" not in first_line:
        return "csv"
    raise RegistryUpdateError(
        "not an IANA service-names-port-numbers file (expected its XML or CSV form)"
    )


def _starts_as_wide_xml(data: bytes) -> bool:
    # XML in UTF-16 or UTF-32 (with a byte order mark, or "<" as a wide
    # character): IANA never writes it, but it is XML, and what XML may hold
    # is decided by the parser's rules (no DTD), not by how its bytes look.
    for encoding, bom in (
        ("utf-32", b"\xff\xfe\x00\x00"),
        ("utf-32", b"\x00\x00\xfe\xff"),
        ("utf-16", b"\xff\xfe"),
        ("utf-16", b"\xfe\xff"),
    ):
        if data.startswith(bom):
            text = data[:4096].decode(encoding, errors="ignore")
            return text.lstrip("\ufeff \t\r\n").startswith("<")
    return data[:4] in (b"<\x00\x00\x00", b"\x00\x00\x00<", b"<\x00?\x00", b"\x00<\x00?")


def parse_registry(
    data: bytes, source_name: str, *, min_records: int = MIN_RECORDS
) -> BuiltRegistry:
    """Parse and validate a registry file in either format (detected from content)."""
    fmt = detect_format(data)
    sha = hashlib.sha256(data).hexdigest()
    if fmt == "xml":
        records, updated = parse_xml(data)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RegistryUpdateError(f"CSV is not UTF-8: {exc.reason}") from exc
        records, updated = parse_csv(text), None
    validate(records, min_records=min_records)
    return BuiltRegistry(
        records=tuple(records),
        source_name=source_name,
        source_sha256=sha,
        source_format=fmt,
        updated=updated,
    )


# -- XML ---------------------------------------------------------------------


def parse_xml(data: bytes) -> tuple[list[RawRecord], str | None]:
    """Records of IANA's registry XML and its ``<updated>`` date.

    ``<people>`` resolves person ids (in ``<xref type="person">``) to names.
    A record's ``<assignee>``/``<contact>`` elements name those roles; older
    records only carry bare person xrefs, which IANA's own CSV lists as both
    assignee and contact, and so does this parser.
    """
    root = _parse_xml_tree(data)
    if root.tag != f"{_NS}registry":
        raise RegistryUpdateError("not an IANA registry XML (root is not <registry>)")
    people = _people(root)
    footnotes = {fn.get("anchor", ""): _text(fn, people) for fn in root.iter(f"{_NS}footnote")}
    updated_el = root.find(f"{_NS}updated")
    updated = (updated_el.text or "").strip() if updated_el is not None else None
    if updated:
        try:
            parse_registry_date(updated)
        except ValueError:
            raise RegistryUpdateError(f"registry <updated> is not a date: {updated!r}") from None
    records = [_xml_record(el, people, footnotes) for el in root.iter(f"{_NS}record")]
    return records, updated or None


def _parse_xml_tree(data: bytes) -> ET.Element:
    """The element tree of ``data``, parsed by expat with every DTD refused.

    IANA's file has no DOCTYPE; a DTD is the only way to declare entities,
    internal ones (the "billion laughs": an entity expanded into the data)
    and external ones (a file or URL read while parsing) alike. The refusal is
    expat's own ``StartDoctypeDeclHandler`` (and the entity declaration
    handlers, and no parameter entity parsing), so it holds in any encoding
    expat reads, where a search for the bytes ``<!DOCTYPE`` does not (UTF-16
    text). Without a DTD an undeclared entity reference is a well-formedness
    error. ``xml.etree``'s C parser exposes none of these handlers, so the
    tree is built from expat's events with :class:`ET.TreeBuilder`; the same
    few handlers are what defusedxml sets, not worth a dependency here.
    Elements are counted as they start: past :data:`MAX_XML_ELEMENTS` parsing stops.
    """
    from xml.parsers import expat

    parser = expat.ParserCreate(namespace_separator="}")
    builder = ET.TreeBuilder()
    count = 0

    def qualified(name: str) -> str:
        # expat gives "uri}local"; ElementTree's form is "{uri}local".
        return "{" + name if "}" in name else name

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count > MAX_XML_ELEMENTS:
            raise RegistryUpdateError(
                f"registry XML has more than {MAX_XML_ELEMENTS} elements: not the registry"
            )
        builder.start(qualified(name), {qualified(k): v for k, v in attrs.items()})

    def refuse(*_: object) -> NoReturn:
        raise RegistryUpdateError("registry XML must not have a DOCTYPE or define entities")

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda name: builder.end(qualified(name))
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.NotationDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
        root: ET.Element = builder.close()
    except expat.ExpatError as exc:
        raise RegistryUpdateError(f"registry XML is not well-formed ({exc})") from exc
    except (ValueError, RecursionError) as exc:  # a bad encoding declaration, absurd nesting
        raise RegistryUpdateError(f"registry XML cannot be read ({exc})") from exc
    return root


def _people(root: ET.Element) -> dict[str, str]:
    people: dict[str, str] = {}
    for person in root.iter(f"{_NS}person"):
        pid = person.get("id")
        if not pid:
            continue
        name = person.findtext(f"{_NS}name") or person.findtext(f"{_NS}org") or pid
        people[pid] = " ".join(name.split())
    return people


def _xml_record(el: ET.Element, people: dict[str, str], footnotes: dict[str, str]) -> RawRecord:
    def child_text(tag: str) -> str | None:
        found = el.find(f"{_NS}{tag}")
        if found is None:
            return None
        return _text(found, people, keep_newlines=tag == "note") or None

    assignee: list[str] = []
    contact: list[str] = []
    bare_people: list[str] = []
    references: list[str] = []
    note_refs: list[str] = []
    for child in el:
        tag = child.tag.removeprefix(_NS)
        if tag in ("assignee", "contact"):
            names = [_person(x, people) for x in child.iter(f"{_NS}xref")]
            (assignee if tag == "assignee" else contact).extend(names)
        elif tag == "xref":
            kind, data = child.get("type", ""), child.get("data", "")
            if kind == "person":
                bare_people.append(_person(child, people))
            elif kind == "rfc":
                references.append(data.upper())
            elif kind == "text":
                references.append(" ".join((child.text or "").split()))
            else:  # draft, uri, note (a footnote anchor)
                references.append(data)
                if kind == "note" and data in footnotes:
                    note_refs.append(f"[{data}] {footnotes[data]}")
    if assignee:
        contact = contact or bare_people
    else:
        assignee, contact = bare_people, contact or bare_people

    number = child_text("number")
    port, port_end = _parse_ports(number) if number else (None, None)
    protocol = child_text("protocol")
    description = child_text("description") or ""
    notes = "\n".join(n for n in (child_text("note"), *note_refs) if n) or None
    return RawRecord(
        name=child_text("name"),
        port=port,
        port_end=port_end,
        protocol=protocol.lower() if protocol else None,
        description=description,
        status=_status(description, child_text("name")),
        assignee=", ".join(assignee) or None,
        contact=", ".join(contact) or None,
        registered=el.get("date") or None,
        modified=el.get("updated") or None,
        reference=", ".join(r for r in references if r) or None,
        service_code=child_text("sc"),
        unauthorized_use=child_text("unauthorized"),
        notes=notes,
    )


def _person(xref: ET.Element, people: dict[str, str]) -> str:
    pid = xref.get("data", "")
    return people.get(pid, pid)


def _text(el: ET.Element, people: dict[str, str], *, keep_newlines: bool = False) -> str:
    """Text of a mixed-content element, as IANA renders it.

    ``<br/>`` and ``<paragraph>`` are line breaks. Newlines of the XML source
    are only wrapping in descriptions (IANA's CSV joins those lines, and a
    table shows a description's first line), but IANA's CSV keeps them in
    assignment notes, so ``keep_newlines`` does too. Person xrefs become
    names, other xrefs their data in brackets.
    """
    return _tidy(_flatten(el, people, keep_newlines))


def _flatten(el: ET.Element, people: dict[str, str], keep_newlines: bool) -> str:
    def words(text: str | None) -> str:
        return (text or "") if keep_newlines else (text or "").replace("\n", " ")

    parts: list[str] = [words(el.text)]
    for child in el:
        tag = child.tag.removeprefix(_NS)
        if tag == "br":
            parts.append("\n")
        elif tag == "xref":
            if child.get("type") == "person":
                parts.append(_person(child, people))
            else:
                parts.append(f"[{child.get('data') or _flatten(child, people, keep_newlines)}]")
        elif tag == "paragraph":
            parts.append("\n" + _flatten(child, people, keep_newlines) + "\n")
        else:
            parts.append(_flatten(child, people, keep_newlines))
        parts.append(words(child.tail))
    return "".join(parts)


def _tidy(text: str) -> str:
    """Whitespace of a registry text field made the same in both formats.

    The XML breaks lines with ``<br/>`` and ``<paragraph>`` (often doubled),
    the CSV with bare newlines; both become one newline between non-empty
    lines, with runs of spaces inside a line collapsed.
    """
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# -- CSV ---------------------------------------------------------------------


def parse_csv(text: str) -> list[RawRecord]:
    """Records of IANA's CSV form (12 columns; quoted fields may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise RegistryUpdateError("CSV is empty") from None
    except csv.Error as exc:
        raise RegistryUpdateError(f"CSV is malformed: {exc}") from exc
    if tuple(h.strip() for h in header) != CSV_HEADER:
        raise RegistryUpdateError(
            f"CSV header is not IANA's 12 columns (got {len(header)}: {', '.join(header[:3])}...)"
        )
    records: list[RawRecord] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(CSV_HEADER):
                raise RegistryUpdateError(
                    f"CSV line {reader.line_num}: {len(row)} columns, expected {len(CSV_HEADER)}"
                )
            if len(records) >= MAX_RECORDS:
                raise _too_many_records()
            records.append(_csv_record(row, reader.line_num))
    except csv.Error as exc:
        raise RegistryUpdateError(f"CSV line {reader.line_num} is malformed: {exc}") from exc
    return records


def _csv_record(row: Sequence[str], line: int) -> RawRecord:
    def cell(i: int) -> str | None:
        value = row[i].strip()
        return value or None

    number = cell(1)
    try:
        port, port_end = _parse_ports(number) if number else (None, None)
    except RegistryUpdateError as exc:
        raise RegistryUpdateError(f"CSV line {line}: {exc}") from None
    description = _tidy(cell(3) or "")
    protocol = cell(2)
    return RawRecord(
        name=cell(0),
        port=port,
        port_end=port_end,
        protocol=protocol.lower() if protocol else None,
        description=description,
        status=_status(description, cell(0)),
        assignee=_ids(cell(4)),
        contact=_ids(cell(5)),
        registered=cell(6),
        modified=cell(7),
        reference=_ids(cell(8), keep_underscores=True),
        service_code=cell(9),
        unauthorized_use=cell(10),
        notes=_tidy(cell(11) or "") or None,
    )


def _ids(value: str | None, *, keep_underscores: bool = False) -> str | None:
    # The CSV writes people and references as "[Jon_Postel][RFC1234]"; the XML's
    # <people> section (absent here) would give "Jon Postel".
    if not value:
        return None
    items = re.findall(r"\[([^\]]*)\]", value) or [value]
    if not keep_underscores:
        items = [" ".join(i.replace("_", " ").split()) for i in items]
    return ", ".join(i for i in items if i) or None


# -- shared ------------------------------------------------------------------


def _parse_ports(text: str) -> tuple[int, int]:
    match = _PORTS.fullmatch(text.strip())
    if match is None:
        raise RegistryUpdateError(f"malformed port number {text!r}")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    if not 0 <= first <= last <= 65535:
        raise RegistryUpdateError(f"port number out of range {text!r}")
    return first, last


_RETIRED = re.compile(r"(de-?registered|removed|deprecated|de-?comm?iss?ioned)\b", re.IGNORECASE)


def _status(description: str, name: str | None) -> str:
    """``unassigned``, ``reserved`` or ``assigned``, from what IANA wrote.

    IANA marks free blocks "Unassigned" and held-back ones "Reserved"; a few
    old entries say "Unassigned [was netstat]" or "(unassigned) Possibly
    assigned". A port-only entry that says "Removed", "De-registered",
    "Deprecated" or "Decommissioned" was taken back and is not available
    either, so it counts as reserved. A named entry is an assignment whatever
    its description says.
    """
    text = description.strip().lower()
    if text in ("unassigned", "reserved") or name is None:
        if text.startswith(("unassigned", "(unassigned)")):
            return "unassigned"
        if text.startswith("reserved") or _RETIRED.match(text):
            return "reserved"
    return "assigned"


def _too_many_records() -> RegistryUpdateError:
    return RegistryUpdateError(f"more than {MAX_RECORDS} records: not the registry")


def validate(records: Sequence[RawRecord], *, min_records: int = MIN_RECORDS) -> None:
    """Refuse data that cannot be a whole registry; raise :class:`RegistryUpdateError`.

    At least ``min_records`` and at most :data:`MAX_RECORDS` records, at most
    :data:`MAX_EXPANDED_PORTS` ports with ranges expanded, known protocols,
    a name or a port in each, ports 0-65535 in order, and dates that are
    real calendar days (:func:`portbook._book.registry.parse_registry_date`).
    """
    if len(records) < min_records:
        raise RegistryUpdateError(
            f"only {len(records)} records (a whole registry has at least {min_records}); "
            "the file looks truncated"
        )
    if len(records) > MAX_RECORDS:
        raise _too_many_records()
    expanded = sum(_checked_ports(i, rec) for i, rec in enumerate(records, 1))
    if expanded > MAX_EXPANDED_PORTS:
        raise RegistryUpdateError(
            f"the records cover {expanded} ports with their ranges expanded, more than "
            f"{MAX_EXPANDED_PORTS}: not the registry (its lookup tables would grow without bound)"
        )


def _checked_ports(i: int, rec: RawRecord) -> int:
    """Check record number ``i``; how many ports it covers (its range expanded)."""
    if rec.protocol is not None and rec.protocol not in _PROTOCOLS:
        raise RegistryUpdateError(f"record {i}: unknown protocol {rec.protocol!r}")
    if rec.port is None and rec.name is None:
        raise RegistryUpdateError(f"record {i}: neither a name nor a port")
    for date in (rec.registered, rec.modified):
        if date is not None:
            try:
                parse_registry_date(date)
            except ValueError:
                raise RegistryUpdateError(f"record {i}: malformed date {date!r}") from None
    if rec.port is None:
        return 0
    if rec.port_end is None or not 0 <= rec.port <= rec.port_end <= 65535:
        raise RegistryUpdateError(f"record {i}: port range {rec.port}-{rec.port_end}")
    return rec.port_end - rec.port + 1


# -- writer ------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE service (
    id INTEGER PRIMARY KEY,          -- position in the registry file
    name TEXT,
    port INTEGER,
    port_end INTEGER,
    protocol TEXT,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    assignee TEXT,
    contact TEXT,
    registered TEXT,
    modified TEXT,
    reference TEXT,
    service_code TEXT,
    unauthorized_use TEXT,
    notes TEXT
);
-- Every port of every record, ranges expanded (x11 6000-6063 gives 64 rows,
-- Unassigned blocks too): a single-port lookup is one seek in this table.
-- About 56,000 rows and 0.7 MB; a range scan per lookup cost twice as much.
CREATE TABLE port_index (
    port INTEGER NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (port, id)
) WITHOUT ROWID;
-- The IANA assignments per (port, protocol), ranges and protocol-less entries
-- expanded, with the first name the registry gives (NULL when none): loaded
-- whole into a dict by service_name()/is_assigned(), one query.
CREATE TABLE port_name (
    port INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    name TEXT,
    PRIMARY KEY (port, protocol)
) WITHOUT ROWID;
-- Range queries (8000-8100) scan records by first port, from first - max_span.
CREATE INDEX service_port ON service (port, port_end);
CREATE INDEX service_name ON service (name COLLATE NOCASE);
"""

_COLUMNS = (
    "name, port, port_end, protocol, description, status, assignee, contact, "
    "registered, modified, reference, service_code, unauthorized_use, notes"
)


def write_database(built: BuiltRegistry, path: Path) -> None:
    """Write ``built`` into a new SQLite file at ``path`` (which must not exist)."""
    counts = Counter(r.status for r in built.records)
    protocols = Counter(r.protocol or "none" for r in built.records)
    max_span = max(
        ((r.port_end or 0) - (r.port or 0) for r in built.records if r.port is not None),
        default=0,
    )
    meta = {
        "schema_version": str(SCHEMA_VERSION),
        "source_name": built.source_name,
        "source_sha256": built.source_sha256,
        "source_format": built.source_format,
        "updated": built.updated or "",
        "records": str(len(built.records)),
        "assigned": str(counts["assigned"]),
        "reserved": str(counts["reserved"]),
        "unassigned": str(counts["unassigned"]),
        "names_only": str(sum(1 for r in built.records if r.port is None)),
        "protocols": ",".join(f"{k}={v}" for k, v in sorted(protocols.items())),
        "max_span": str(max_span),
        # The CSV form has no <updated> date; its newest record date says how recent it is.
        "newest_record": max(
            (d for r in built.records for d in (r.registered, r.modified) if d), default=""
        ),
    }
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA page_size = 4096")
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(meta.items()))
        conn.executemany(
            f"INSERT INTO service (id, {_COLUMNS}) VALUES (?, {', '.join('?' * 14)})",
            ((i, *_row(r)) for i, r in enumerate(built.records, 1)),
        )
        conn.executemany(
            "INSERT INTO port_index (port, id) VALUES (?, ?)",
            (
                (port, i)
                for i, r in enumerate(built.records, 1)
                if r.port is not None and r.port_end is not None
                for port in range(r.port, r.port_end + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO port_name (port, protocol, name) VALUES (?, ?, ?)",
            ((port, proto, name) for (port, proto), name in _port_names(built.records).items()),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("VACUUM")
    finally:
        conn.close()


def _port_names(records: Sequence[RawRecord]) -> dict[tuple[int, str], str | None]:
    names: dict[tuple[int, str], str | None] = {}
    for r in records:
        if r.status != "assigned" or r.port is None or r.port_end is None:
            continue
        for port in range(r.port, r.port_end + 1):
            for proto in (r.protocol,) if r.protocol else sorted(_PROTOCOLS):
                if names.get((port, proto)) is None:
                    names[(port, proto)] = r.name
    return names


def _row(r: RawRecord) -> tuple[object, ...]:
    return (
        r.name,
        r.port,
        r.port_end,
        r.protocol,
        r.description,
        r.status,
        r.assignee,
        r.contact,
        r.registered,
        r.modified,
        r.reference,
        r.service_code,
        r.unauthorized_use,
        r.notes,
    )


def build_registry_file(
    source: bytes,
    source_name: str,
    dest: Path,
    *,
    min_records: int = MIN_RECORDS,
) -> BuiltRegistry:
    """Parse and validate ``source``, then :func:`install_database` it at ``dest``."""
    built = parse_registry(source, source_name, min_records=min_records)
    install_database(built, dest)
    return built


def install_database(built: BuiltRegistry, dest: Path) -> None:
    """Write ``built`` to ``dest`` atomically.

    The database is written to a temporary file beside ``dest``, checked by
    reading it back, flushed to disk and only then renamed over ``dest``
    (``os.replace`` is atomic on one file system). Any failure removes the
    temporary file and leaves ``dest`` as it was.
    """
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(dest)
        tmp.unlink(missing_ok=True)
        write_database(built, tmp)
        _check_written(tmp, len(built.records))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except RegistryUpdateError:
        raise
    except RegistryError as exc:
        raise RegistryUpdateError(f"the new registry database does not read back: {exc}") from exc
    except sqlite3.Error as exc:
        raise RegistryUpdateError(f"could not write the registry database: {exc}") from exc
    except OSError as exc:
        raise RegistryUpdateError(f"could not write {dest}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _remove_stale_temporaries(dest: Path) -> None:
    # An update killed mid-write leaves its temporary file (never the real one:
    # that is only ever renamed over). Remove those whose writer is gone.
    # Not on Windows, where os.kill(pid, 0) would terminate the process.
    if sys.platform == "win32":
        return
    for tmp in dest.parent.glob(f".{dest.name}.*.tmp"):
        pid_text = tmp.name[len(dest.name) + 2 : -len(".tmp")]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                tmp.unlink()
        except OSError:
            pass  # alive, or not ours to ask about: leave it


def _check_written(path: Path, expected: int) -> None:
    """SQLite's integrity check, then every record read back by the book's own reader."""
    from portbook._book.book import verify_registry_file

    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        (ok,) = conn.execute("PRAGMA integrity_check").fetchone()
        (count,) = conn.execute("SELECT count(*) FROM service").fetchone()
    finally:
        conn.close()
    if ok != "ok" or count != expected:
        raise RegistryUpdateError("the written registry database did not read back intact")
    verify_registry_file(path)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
