"""The registry builder: XML and CSV parsers, validation, the database writer."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from portbook import Book, Protocol, RegistryUpdateError, ServiceSource, ServiceStatus
from portbook._book.build import (
    CSV_HEADER,
    RawRecord,
    build_registry_file,
    detect_format,
    parse_csv,
    parse_registry,
    parse_xml,
)
from portbook._book.registry import parse_registry_date

FIXTURES = Path(__file__).parent.parent / "fixtures" / "book"
SMALL_XML = FIXTURES / "registry-small.xml"
SMALL_CSV = FIXTURES / "registry-small.csv"


def _by_key(records: list[RawRecord]) -> dict[tuple[str | None, int | None, str | None], RawRecord]:
    return {(r.name, r.port, r.protocol): r for r in records}


def test_xml_parser_reads_every_field() -> None:
    records, updated = parse_xml(SMALL_XML.read_bytes())
    assert updated == "2026-08-17"
    assert len(records) == 30
    by = _by_key(records)
    finger = by[("finger", 79, "tcp")]
    assert finger.assignee == "David Zimmerman" and finger.contact == "David Zimmerman"
    assert finger.unauthorized_use is not None and "RFC4146" in finger.unauthorized_use
    x11 = by[("x11", 6000, "tcp")]
    assert (x11.port, x11.port_end, x11.status) == (6000, 6063, "assigned")
    smtp = by[("smtp", 25, "tcp")]
    # <assignee> names the assignee; the bare person xref is the contact.
    assert (smtp.assignee, smtp.contact) == ("IESG", "IETF Chair")
    assert smtp.reference == "RFC-ietf-emailcore-rfc5321bis-43" and smtp.modified == "2017-06-05"
    ltp = by[("ltp-deepspace", 1113, "dccp")]
    assert ltp.service_code == "7107696" and ltp.registered == "2013-11-12"
    exp1 = by[("exp1", 1021, "sctp")]
    assert exp1.reference == "1, RFC4727, RFC6335"
    assert exp1.notes is not None and "explicitly" in exp1.notes  # the footnote, resolved
    whois = by[("whoispp", 63, "tcp")]
    assert whois.description.startswith("whois++\n")


def test_xml_parser_keeps_blocks_and_name_only_entries() -> None:
    by = _by_key(parse_xml(SMALL_XML.read_bytes())[0])
    assert by[(None, 0, "tcp")].status == "reserved"
    reserved = by[(None, 2, "udp")]
    assert reserved.status == "reserved"
    assert reserved.notes == "De-assigned on 2025-02-13, previously compressnet by Bernie Volz"
    assert by[(None, 4, "tcp")].status == "unassigned"
    block = by[(None, 29170, None)]
    assert (block.port_end, block.status) == (29998, "unassigned")
    assert by[(None, 4318, None)].status == "unassigned"
    argus = by[("argus", None, None)]
    assert (argus.port, argus.protocol, argus.status) == (None, None, "assigned")
    wot = by[("wot", None, "tcp")]
    assert wot.assignee == "W3C Web of Things Working Group"
    assert wot.contact == "Kazuyuki Ashimura"
    assert wot.notes is not None and wot.notes.startswith("Defined TXT keys:\n")


def test_csv_parser_reads_the_same_records() -> None:
    xml_records = parse_xml(SMALL_XML.read_bytes())[0]
    csv_records = parse_csv(SMALL_CSV.read_text(encoding="utf-8"))
    key = [(r.name, r.port, r.port_end, r.protocol, r.status) for r in xml_records]
    assert [(r.name, r.port, r.port_end, r.protocol, r.status) for r in csv_records] == key
    by = _by_key(csv_records)
    # A quoted field spanning lines is one field.
    assert by[("whoispp", 63, "tcp")].description.startswith("whois++\n")
    assert by[("nas", 991, "tcp")].assignee == "Vera Heinau, Heiko Schlichting"
    assert by[("exp1", 1021, "tcp")].reference == "1, RFC4727, RFC6335"
    assert by[(None, 2, "tcp")].notes is not None


def test_format_is_detected_from_content() -> None:
    assert detect_format(SMALL_XML.read_bytes()) == "xml"
    assert detect_format(SMALL_CSV.read_bytes()) == "csv"
    assert detect_format(b"\xef\xbb\xbfService Name,Port Number,Transport Protocol\r\n") == "csv"
    for junk in (b"", b"hello", b"{}", b"name,port\n", b"\x00,\x00,\x00"):
        with pytest.raises(RegistryUpdateError, match="not an IANA"):
            detect_format(junk)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("Service Name,", "Service,", 1), "header"),
        (lambda t: t.replace(",443,tcp,", ",443,tcp,extra,", 1), "columns"),
        (lambda t: t.replace(",443,tcp,", ",99999,tcp,", 1), "out of range"),
        (lambda t: t.replace(",443,tcp,", ",44x,tcp,", 1), "malformed port"),
        (lambda t: t.replace(",443,sctp,", ",443,icmp,", 1), "unknown protocol"),
        (lambda t: t.replace(",2017-06-05,", ",June 2017,", 1), "malformed date"),
        (lambda t: t[: t.index("whois++") + 3], "malformed|columns"),
    ],
)
def test_csv_validation_refuses_bad_files(mutate: object, message: str) -> None:
    text = mutate(SMALL_CSV.read_text(encoding="utf-8"))  # type: ignore[operator]
    with pytest.raises(RegistryUpdateError, match=message):
        parse_registry(text.encode(), "bad.csv", min_records=1)


def test_xml_validation_refuses_bad_files() -> None:
    data = SMALL_XML.read_bytes()
    with pytest.raises(RegistryUpdateError, match="well-formed"):
        parse_registry(data[: len(data) // 2], "cut.xml", min_records=1)
    with pytest.raises(RegistryUpdateError, match="entities"):
        parse_registry(b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "x">]><r/>', "e.xml")
    with pytest.raises(RegistryUpdateError, match="root"):
        parse_registry(b'<?xml version="1.0"?><other/>', "o.xml", min_records=0)


def test_too_few_records_is_refused() -> None:
    with pytest.raises(RegistryUpdateError, match="only 30 records"):
        parse_registry(SMALL_XML.read_bytes(), "small.xml")
    assert len(CSV_HEADER) == 12


@pytest.mark.parametrize("fixture", [SMALL_XML, SMALL_CSV])
def test_built_database_answers_through_a_book(tmp_path: Path, fixture: Path) -> None:
    db = tmp_path / "registry.sqlite3"
    built = build_registry_file(fixture.read_bytes(), fixture.name, db, min_records=1)
    assert len(built.records) == 30 and not list(tmp_path.glob(".*tmp"))
    book = Book(registry_path=db, services_path=False, unofficial=False)
    info = book.registry_info()
    assert (info.records, info.source_name, info.origin) == (30, fixture.name, "file")
    assert info.updated == (date(2026, 8, 17) if fixture.suffix == ".xml" else None)
    assert info.newest_record is not None and info.newest_record.year >= 2025
    [x11] = book.lookup("6010/udp")
    assert (x11.name, x11.port, x11.port_end, x11.protocol) == ("x11", 6000, 6063, Protocol.UDP)
    assert x11.source is ServiceSource.IANA and x11.status is ServiceStatus.ASSIGNED
    [block] = book.lookup(29500)
    assert (block.port, block.port_end, block.status) == (29170, 29998, ServiceStatus.UNASSIGNED)
    [old] = book.lookup("oob-ws-http")
    assert old.registered == date(2007, 6, 1)  # IANA gave only the month
    assert book.lookup("argus")[0].port is None
    book.close()


def test_build_script_writes_a_database(tmp_path: Path) -> None:
    script = Path(__file__).parents[2] / "scripts" / "build_registry.py"
    out = tmp_path / "sub" / "registry.sqlite3"
    run = subprocess.run(
        [sys.executable, str(script), str(SMALL_CSV), "-o", str(out), "--min-records", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "30 records" in run.stdout
    book = Book(registry_path=out, services_path=False)
    assert book.registry_info().source_format == "csv"
    book.close()
    refused = subprocess.run(
        [sys.executable, str(script), str(SMALL_XML), "-o", str(tmp_path / "x.sqlite3")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and "truncated" in refused.stderr
    assert not (tmp_path / "x.sqlite3").exists()


def test_csv_line_ends_and_encoding() -> None:
    crlf = SMALL_CSV.read_bytes()
    lf = crlf.replace(b"\r\n", b"\n")
    assert (
        parse_registry(lf, "lf.csv", min_records=1).records
        == parse_registry(crlf, "crlf.csv", min_records=1).records
    )
    bom = b"\xef\xbb\xbf" + crlf
    assert len(parse_registry(bom, "bom.csv", min_records=1).records) == 30
    with pytest.raises(RegistryUpdateError, match="UTF-8"):
        parse_registry(crlf.replace(b"Finger", b"Fing\xff"), "latin.csv", min_records=1)


@pytest.mark.parametrize(
    "text", ["9999-99-99", "2026-02-30", "2026-13", "2026-00-10", "0000-01-01", "yesterday",
             "20260217", "2026-W07-1", "2026-1-5", " 2026-01-05", "٢٠٢٦-٠١-٠١", ""],
)  # fmt: skip
def test_registry_dates_are_real_calendar_days_in_iana_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"date|day|month|year"):
        parse_registry_date(text)


def test_registry_dates_iana_writes_parse() -> None:
    assert parse_registry_date("2024-02-29") == date(2024, 2, 29)
    assert parse_registry_date("2007-06") == date(2007, 6, 1)


@pytest.mark.parametrize("bad", ["9999-99-99", "2026-02-30", "2025-02-29"])
def test_a_record_date_that_is_no_day_is_refused(bad: str) -> None:
    text = SMALL_CSV.read_text(encoding="utf-8").replace(",2017-06-05,", f",{bad},", 1)
    with pytest.raises(RegistryUpdateError, match=f"malformed date '{bad}'"):
        parse_registry(text.encode(), "bad.csv", min_records=1)


def test_the_registry_date_of_the_xml_must_be_a_day() -> None:
    data = SMALL_XML.read_bytes().replace(b"<updated>2026-08-17<", b"<updated>2026-02-30<")
    with pytest.raises(RegistryUpdateError, match="<updated> is not a date"):
        parse_registry(data, "bad.xml", min_records=1)


def test_port_numbers_are_ascii_digits_only() -> None:
    text = SMALL_CSV.read_text(encoding="utf-8").replace(",443,tcp,", ",٤٤٣,tcp,", 1)
    with pytest.raises(RegistryUpdateError, match="malformed port"):
        parse_registry(text.encode(), "bad.csv", min_records=1)


_ENTITY_DOC = '<?xml version="1.0" encoding="{enc}"?><!DOCTYPE r [<!ENTITY a "x">]><r>&a;</r>'


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-16-be"])
def test_a_dtd_is_refused_by_the_parser_in_any_encoding(encoding: str) -> None:
    declared = "UTF-16" if encoding.startswith("utf-16") else "UTF-8"
    data = _ENTITY_DOC.format(enc=declared).encode(encoding)
    assert b"<!ENTITY" not in data or encoding == "utf-8"
    with pytest.raises(RegistryUpdateError, match="DOCTYPE"):
        parse_registry(data, "e.xml", min_records=0)


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE r SYSTEM "file:///etc/hostname">',
        '<!DOCTYPE r PUBLIC "-//x//y" "http://127.0.0.1:9/x.dtd">',
        '<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/hostname"> %p;]>',
        "<!DOCTYPE r>",
    ],
)
def test_every_kind_of_dtd_is_refused(doctype: str) -> None:
    data = f'<?xml version="1.0"?>{doctype}<r/>'.encode()
    with pytest.raises(RegistryUpdateError, match="DOCTYPE"):
        parse_xml(data)


def test_the_xml_tree_is_the_one_elementtree_builds() -> None:
    import xml.etree.ElementTree as ET

    from portbook._book.build import _parse_xml_tree

    data = SMALL_XML.read_bytes()
    assert ET.tostring(_parse_xml_tree(data)) == ET.tostring(ET.fromstring(data))


def test_element_and_record_counts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from portbook._book import build

    monkeypatch.setattr(build, "MAX_XML_ELEMENTS", 100)
    with pytest.raises(RegistryUpdateError, match="more than 100 elements"):
        parse_xml(SMALL_XML.read_bytes())
    monkeypatch.setattr(build, "MAX_RECORDS", 20)
    with pytest.raises(RegistryUpdateError, match="more than 20 records"):
        parse_csv(SMALL_CSV.read_text(encoding="utf-8"))
    monkeypatch.setattr(build, "MAX_RECORDS", 200_000)
    monkeypatch.setattr(build, "MAX_EXPANDED_PORTS", 100)
    with pytest.raises(RegistryUpdateError, match="ranges expanded, more than 100"):
        parse_registry(SMALL_CSV.read_bytes(), "small.csv", min_records=1)


def test_registry_dates_are_checked_without_datetime_as_datetime_would() -> None:
    """The meta check's calendar is datetime's: every day of 1899-1901 and 1999-2001
    (1900 is no leap year, 2000 is), and the texts around their edges."""
    from portbook._book.registry import registry_date_fields

    texts = [
        f"{y:04d}-{m:02d}-{d:02d}"
        for y in (1899, 1900, 1901, 1999, 2000, 2001, 0, 9999)
        for m in range(14)
        for d in range(33)
    ]
    for text in texts:
        try:
            expected: object = date.fromisoformat(text).timetuple()[:3]
        except ValueError:
            expected = ValueError
        try:
            got: object = registry_date_fields(text)
        except ValueError:
            got = ValueError
        assert got == expected, text
