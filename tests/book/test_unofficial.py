"""The curated list of unofficial ports: well-formed, and covering the common defaults."""

from __future__ import annotations

from portbook import Book, Protocol, ServiceSource, ServiceStatus
from portbook._book.unofficial import UNOFFICIAL_PORTS
from portbook._ports import parse_port_spec


def test_every_entry_is_well_formed() -> None:
    seen = set()
    for first, last, proto, name, software, description in UNOFFICIAL_PORTS:
        assert 0 < first <= last <= 65535
        assert Protocol(proto)
        assert parse_port_spec(name).name == name  # a name `portbook lookup` accepts
        assert software.strip() and description.strip()
        assert (name, proto) not in seen
        seen.add((name, proto))


def test_the_common_defaults_are_there() -> None:
    ports = {(first, proto) for first, _, proto, *_ in UNOFFICIAL_PORTS}
    for port in (3000, 5173, 8080, 8888, 9200, 27017):
        assert (port, "tcp") in ports


def test_entries_are_marked_as_not_iana() -> None:
    book = Book(services_path=False)
    found = [s for s in book.lookup(8888) if s.source is ServiceSource.UNOFFICIAL]
    assert [(s.name, s.software) for s in found] == [("jupyter", "Jupyter Notebook; JupyterLab")]
    assert all(s.status is ServiceStatus.UNASSIGNED for s in found)
    assert book.search("jupyter")[0].source is ServiceSource.UNOFFICIAL
    book.close()
