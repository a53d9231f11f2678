"""The packaged registry against the IANA XML it was built from: every record answers."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from portbook import Book, Protocol, ServiceSource
from portbook._book.build import CSV_HEADER, RawRecord, parse_csv, parse_xml
from portbook._book.registry import PACKAGED_REGISTRY

IANA_XML = Path(__file__).parents[2] / "data" / "iana" / "service-names-port-numbers.xml"
IANA_CSV = IANA_XML.with_suffix(".csv")
RECORDS_IN_XML = 14_533

pytestmark = pytest.mark.skipif(not IANA_XML.is_file(), reason="IANA XML not in this tree")


@pytest.fixture(scope="module")
def xml_records() -> list[RawRecord]:
    records, updated = parse_xml(IANA_XML.read_bytes())
    assert updated == "2026-08-17"
    return records


@pytest.fixture(scope="module")
def book() -> Iterator[Book]:
    b = Book(registry_path=PACKAGED_REGISTRY, services_path=False, unofficial=False)
    yield b
    b.close()


def test_packaged_data_records_its_source(book: Book) -> None:
    info = book.registry_info()
    assert info.source_name == IANA_XML.name
    assert info.source_sha256 == hashlib.sha256(IANA_XML.read_bytes()).hexdigest()
    assert info.updated == date(2026, 8, 17)
    assert info.records == RECORDS_IN_XML
    assert info.assigned + info.reserved + info.unassigned == RECORDS_IN_XML


def test_every_name_port_protocol_triple_is_found(book: Book, xml_records: list[RawRecord]) -> None:
    assert len(xml_records) == RECORDS_IN_XML
    missing = []
    for rec in xml_records:
        query: str | int = rec.port if rec.port is not None else str(rec.name)
        found = {
            (s.name, s.port, s.port_end, s.protocol)
            for s in book.lookup(query, rec.protocol)
            if s.source is ServiceSource.IANA
        }
        proto = Protocol(rec.protocol) if rec.protocol else None
        if (rec.name, rec.port, rec.port_end, proto) not in found:
            missing.append((rec.name, rec.port, rec.protocol))
    assert missing == []


def test_every_field_of_every_record_is_kept(book: Book, xml_records: list[RawRecord]) -> None:
    rows = book._registry().all_rows()
    assert [tuple(row[1:]) for row in rows] == [
        (
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
        for r in xml_records
    ]


def test_every_range_expands_to_each_of_its_ports(book: Book, xml_records: list[RawRecord]) -> None:
    ranges = [r for r in xml_records if r.port is not None and r.port_end != r.port]
    assert len(ranges) > 700
    for rec in ranges:
        assert rec.port is not None and rec.port_end is not None
        for port in {rec.port, (rec.port + rec.port_end) // 2, rec.port_end}:
            hits = [
                s
                for s in book.lookup(port, rec.protocol)
                if (s.port, s.port_end) == (rec.port, rec.port_end) and s.name == rec.name
            ]
            assert hits, (rec.name, rec.port, rec.port_end, port)


def test_the_csv_form_builds_the_same_records(xml_records: list[RawRecord]) -> None:
    """IANA's CSV layout (12 columns, multi-line quoted notes) at full size."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for r in xml_records:
        ports = "" if r.port is None else str(r.port)
        if r.port is not None and r.port_end != r.port:
            ports = f"{r.port}-{r.port_end}"
        writer.writerow(
            [
                r.name or "",
                ports,
                r.protocol or "",
                r.description,
                "",
                "",
                r.registered or "",
                r.modified or "",
                "",
                r.service_code or "",
                r.unauthorized_use or "",
                r.notes or "",
            ]
        )
    records = parse_csv(buf.getvalue())
    assert [(r.name, r.port, r.port_end, r.protocol, r.status) for r in records] == [
        (r.name, r.port, r.port_end, r.protocol, r.status) for r in xml_records
    ]


@pytest.mark.skipif(not IANA_CSV.is_file(), reason="IANA CSV not in this tree")
def test_iana_csv_builds_the_same_registry_as_of_its_date(xml_records: list[RawRecord]) -> None:
    """IANA's own CSV (2026-04-09) against the XML (2026-08-17): the same records
    but for the changes made in between."""
    from collections import Counter

    records = parse_csv(IANA_CSV.read_bytes().decode("utf-8"))
    assert len(records) == 14_512

    def key(r: RawRecord) -> tuple[str | None, int | None, int | None, str | None]:
        return (r.name, r.port, r.port_end, r.protocol)

    in_xml, in_csv = Counter(map(key, xml_records)), Counter(map(key, records))
    assert sum((in_xml - in_csv).values()) == 25
    assert in_csv - in_xml == Counter(
        {(None, 4461, 4483, None): 1, (None, 6603, 6618, None): 1,
         (None, 30833, 30998, None): 1, (None, 7123, 7123, "udp"): 1}
    )  # fmt: skip
    xml_by_key = {key(r): r for r in xml_records}
    same = sum(
        1
        for r in records
        if (x := xml_by_key.get(key(r))) is not None
        and (x.description, x.status, x.registered, x.service_code, x.unauthorized_use)
        == (r.description, r.status, r.registered, r.service_code, r.unauthorized_use)
    )
    assert same >= len(records) - 40  # the rest changed between the two editions
