"""/etc/services: the parser on a fixture, and the live file against getent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from portbook import Book, ServiceSource
from portbook._book.etc_services import (
    EtcServicesEntry,
    default_services_path,
    parse_etc_services,
    read_etc_services,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "book" / "services"


def test_parser_reads_names_ports_aliases_and_comments() -> None:
    entries = parse_etc_services(FIXTURE.read_text())
    assert entries[0] == EtcServicesEntry(
        "tcpmux", 1, "tcp", (), "TCP port service multiplexer", line=3
    )
    by_name = {(e.name, e.protocol): e for e in entries}
    assert by_name[("smtp", "tcp")].aliases == ("mail",)
    assert by_name[("myapp", "tcp")].aliases == ("myapp-alt", "other")
    assert by_name[("myapp", "tcp")].comment == "a local addition"
    assert by_name[("echo", "udp")].comment is None
    assert by_name[("rtmp", "ddp")].port == 1
    assert by_name[("indented", "tcp")].port == 8001  # protocol case folded
    names = {e.name for e in entries}
    assert not names & {"broken-no-slash", "broken-port", "too-big", "lonely"}
    assert len(entries) == 12


def test_unreadable_file_gives_nothing(tmp_path: Path) -> None:
    assert read_etc_services(tmp_path / "missing") == []
    odd = tmp_path / "services"
    odd.write_bytes(b"caf\xe9 9/tcp # latin-1 name\nok 10/udp\n")
    assert [e.name for e in read_etc_services(odd)] == ["caf\ufffd", "ok"]


def test_book_skips_protocols_without_ports_here() -> None:
    book = Book(services_path=FIXTURE, unofficial=False)
    etc = [s for s in book.lookup(1) if s.source is ServiceSource.ETC_SERVICES]
    assert [(s.name, s.protocol) for s in etc] == [("tcpmux", "tcp")]  # not rtmp/ddp
    book.close()


def _services_come_only_from_the_file() -> bool:
    """getent reads the services file only when NSS has no other live source for it."""
    try:
        lines = Path("/etc/nsswitch.conf").read_text().splitlines()
    except OSError:
        return True  # the C library's default is the file
    for line in lines:
        key, _, sources = line.partition(":")
        if key.strip() == "services":
            names = {s for s in sources.split() if not s.startswith("[")}
            has_db = any(
                Path(p).exists() for p in ("/var/lib/misc/services.db", "/var/db/services.db")
            )
            return names <= {"files", "db"} and not (has_db and "db" in names)
    return True


@pytest.mark.skipif(shutil.which("getent") is None, reason="getent not installed")
@pytest.mark.skipif(
    not _services_come_only_from_the_file(), reason="NSS answers services from another source"
)
@pytest.mark.skipif(default_services_path() is None, reason="no services file on this system")
def test_every_etc_services_entry_agrees_with_getent() -> None:
    path = default_services_path()
    assert path is not None
    entries = read_etc_services(path)
    assert entries, "the system services file is empty"
    # getent (like getservbyname) answers the first line, in file order, whose
    # name or one of its aliases is NAME with that protocol: "dicom/tcp" is an
    # alias of acr-nema (104) before the dicom line (11112) in Debian's file.
    expected: dict[tuple[str, str], EtcServicesEntry] = {}
    for e in entries:
        for name in (e.name, *e.aliases):
            expected.setdefault((name, e.protocol), e)
    keys = [(e.name, e.protocol) for e in entries]
    result = subprocess.run(
        ["getent", "services", *(f"{n}/{p}" for n, p in keys)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(keys)
    disagree = []
    for key, line in zip(keys, lines, strict=True):
        name, port_proto, *aliases = line.split()
        port, _, proto = port_proto.partition("/")
        want = expected[key]
        got = (name, int(port), proto, tuple(aliases))
        if got != (want.name, want.port, want.protocol, want.aliases):
            disagree.append((key, got))
    assert disagree == []
