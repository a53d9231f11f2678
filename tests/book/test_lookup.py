"""lookup and search through the public API: sources, ranges, blocks, filters, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import portbook
from portbook import (
    Book,
    InvalidPortSpecError,
    Protocol,
    Service,
    ServiceSource,
    ServiceStatus,
    UsageError,
)
from portbook._book.registry import PACKAGED_REGISTRY
from tests.conftest import run_cli

SERVICES = Path(__file__).parent.parent / "fixtures" / "book" / "services"


@pytest.fixture(scope="module")
def book() -> Iterator[Book]:
    b = Book(registry_path=PACKAGED_REGISTRY, services_path=SERVICES)
    yield b
    b.close()


def _keys(services: list[Service]) -> list[tuple[str | None, int | None, str | None, str]]:
    return [(s.name, s.port, s.protocol and s.protocol.value, s.source.value) for s in services]


def test_a_port_answers_from_every_source_in_order(book: Book) -> None:
    assert _keys(book.lookup(443)) == [
        ("https", 443, "tcp", "iana"),
        ("https", 443, "udp", "iana"),
        ("https", 443, "sctp", "iana"),
        ("https", 443, "tcp", "etc-services"),
        ("https", 443, "udp", "etc-services"),
    ]
    sources = [s.source for s in book.lookup(8080)]
    assert sources == sorted(sources, key=list(ServiceSource).index)
    assert ServiceSource.UNOFFICIAL in sources


def test_query_forms_agree(book: Book) -> None:
    tcp = _keys(book.lookup(443, "tcp"))
    assert tcp == _keys(book.lookup("tcp/443")) == _keys(book.lookup("443/tcp"))
    assert tcp == _keys(book.lookup("443", Protocol.TCP)) == _keys(book.lookup("[::1]:443", "TCP"))
    assert tcp == _keys(book.lookup("127.0.0.1:443/tcp"))
    assert all(s.protocol is Protocol.TCP for s in book.lookup(443, "tcp"))


def test_range_entries_answer_for_each_port(book: Book) -> None:
    for port in (6000, 6003, 6063):
        found = [s for s in book.lookup(port, "tcp") if s.source is ServiceSource.IANA]
        assert [(s.name, s.port, s.port_end) for s in found] == [("x11", 6000, 6063)]
    assert book.lookup(6064, "tcp")[0].name != "x11"
    # An unofficial range too (BitTorrent's 6881-6889).
    assert any(s.name == "bittorrent" for s in book.lookup(6885))


def test_a_range_query_returns_everything_overlapping(book: Book) -> None:
    found = book.lookup("6060-6070", "tcp")
    names = {s.name for s in found if s.source is ServiceSource.IANA}
    assert "x11" in names and len(found) > 3
    assert all(s.port is not None and s.port <= 6070 for s in found)
    assert all(s.port_end is not None and s.port_end >= 6060 for s in found)


def test_unassigned_and_reserved_blocks_say_so(book: Book) -> None:
    [unassigned] = book.lookup("4/tcp")
    assert (unassigned.status, unassigned.name, unassigned.description) == (
        ServiceStatus.UNASSIGNED,
        None,
        "Unassigned",
    )
    [block] = book.lookup(29500)
    assert (block.port, block.port_end, block.status) == (29170, 29998, ServiceStatus.UNASSIGNED)
    [reserved] = book.lookup(0, "udp")
    assert reserved.status is ServiceStatus.RESERVED
    [taken_back] = book.lookup("2/tcp")
    assert taken_back.status is ServiceStatus.RESERVED and "De-assigned" in (taken_back.notes or "")
    [dynamic] = book.lookup(50000)
    assert (dynamic.port, dynamic.port_end, dynamic.status) == (
        49152,
        65535,
        ServiceStatus.UNASSIGNED,
    )


def test_names_find_iana_entries_overlays_and_aliases(book: Book) -> None:
    assert ("https", 443, "tcp", "iana") in _keys(book.lookup("HTTPS"))
    assert ("http", 80, "tcp", "etc-services") in _keys(book.lookup("www"))
    assert _keys(book.lookup("myapp-alt")) == [("myapp", 7777, "tcp", "etc-services")]
    assert _keys(book.lookup("vite")) == [("vite", 5173, "tcp", "unofficial")]
    [argus] = book.lookup("argus")
    assert (argus.port, argus.port_end, argus.protocol) == (None, None, None)
    assert book.lookup("argus", "udp") == [argus]  # not tied to a protocol: always matches
    assert book.lookup("no-such-service-anywhere") == []


def test_overlays_are_marked(book: Book) -> None:
    [vite] = book.lookup("vite")
    assert vite.source is ServiceSource.UNOFFICIAL and vite.status is ServiceStatus.UNASSIGNED
    assert vite.software == "Vite"
    [etc] = [s for s in book.lookup(80) if s.source is ServiceSource.ETC_SERVICES]
    assert etc.aliases == ("www",) and etc.description == "WorldWideWeb HTTP"


def test_records_are_frozen_and_serialise_to_the_contract(book: Book) -> None:
    service = book.lookup("finger/tcp")[0]
    with pytest.raises(AttributeError):
        service.name = "other"  # type: ignore[misc]
    data = json.loads(json.dumps(service.to_json()))
    assert {"name", "port", "port_end", "protocol", "description", "source", "status"} <= set(data)
    assert (data["port"], data["port_end"], data["protocol"]) == (79, 79, "tcp")
    assert data["unauthorized_use"].startswith("Unauthorized use")
    assert service.ports == portbook.PortRange(79, 79)


@pytest.mark.parametrize(
    "bad", ["", "70000", "-1", "tcp/", "443/icmp", "foo bar", "x" * 400, "1-2-3", "9-1"]
)
def test_bad_queries_raise_a_usage_error(book: Book, bad: str) -> None:
    with pytest.raises(InvalidPortSpecError):
        book.lookup(bad)


def test_bad_arguments_raise_usage_errors(book: Book) -> None:
    with pytest.raises(InvalidPortSpecError):
        book.lookup(70000)
    with pytest.raises(InvalidPortSpecError):
        book.lookup(True)
    with pytest.raises(InvalidPortSpecError, match="unknown protocol"):
        book.lookup(443, "icmp")
    with pytest.raises(InvalidPortSpecError, match="conflicts"):
        book.lookup("tcp/443", "udp")


def test_search_ranks_names_before_descriptions(book: Book) -> None:
    found = book.search("postgresql")
    assert found[0].name == "postgresql" and found[0].source is ServiceSource.IANA
    found = book.search("kafka")
    assert found and found[0].name == "kafka"
    found = book.search("X Window", limit=3)
    assert len(found) == 3 and found[0].name == "x11"
    assert len(book.search("unassigned", limit=7)) == 7
    assert book.search("zzzz-no-such-text") == []


def test_search_treats_wildcards_literally(book: Book) -> None:
    for text in ("%", "_", "\\"):
        for s in book.search(text, limit=50):
            assert text in s.description + (s.name or "") + (s.software or "")


@pytest.mark.parametrize(
    ("text", "limit"), [("", 5), ("   ", 5), ("x" * 101, 5), ("ok", 0), ("a\x00", 5)]
)
def test_search_refuses_bad_input(book: Book, text: str, limit: int) -> None:
    with pytest.raises(UsageError):
        book.search(text, limit)


def test_module_functions_use_the_default_book() -> None:
    assert portbook.lookup(22, "tcp")[0].name == "ssh"
    assert portbook.search("ssh", 1)[0].name == "ssh"
    assert portbook.registry_info().records > 10_000


def test_a_lookup_loads_neither_the_builder_nor_the_network() -> None:
    code = (
        "import sys\n"
        "from portbook._cli import main\n"
        "main(['lookup', '443'])\n"
        "heavy = ('xml.etree.ElementTree', 'csv', 'urllib.request', 'hashlib', "
        "'portbook._book.build', 'portbook._book.update')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"


def test_one_book_serves_many_threads() -> None:
    book = Book(registry_path=PACKAGED_REGISTRY, services_path=SERVICES)
    ports = list(range(0, 2000, 7))
    fresh = Book(registry_path=PACKAGED_REGISTRY, services_path=SERVICES)
    expected = {p: _keys(fresh.lookup(p)) for p in (22, 80, 443, 6003, 29500)}
    names = {p: fresh.service_name(p, "tcp") for p in ports}
    fresh.close()
    results: list[bool] = []

    def work() -> None:
        ok = all(book.service_name(p, "tcp") == names[p] for p in ports)
        ok = ok and all(_keys(book.lookup(p)) == keys for p, keys in expected.items())
        results.append(ok)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * 6
    book.close()


def test_unusable_registry_files_raise_registry_error(tmp_path: Path) -> None:
    from portbook import RegistryError

    for path, content in ((tmp_path / "missing.sqlite3", None), (tmp_path / "junk", b"x" * 5000)):
        if content is not None:
            path.write_bytes(content)
        book = Book(registry_path=path, services_path=False)
        with pytest.raises(RegistryError):
            book.lookup(443)
        book.close()


def test_overlay_scan_and_index_give_the_same_answers() -> None:
    """The first overlay queries scan the lists, later ones use the index: same answers."""
    from portbook._book.etc_services import read_etc_services
    from portbook._book.overlays import INDEX_AFTER, OverlayIndex
    from portbook._book.unofficial import UNOFFICIAL_PORTS

    etc = [e for e in read_etc_services(SERVICES) if e.protocol in ("tcp", "udp", "sctp", "dccp")]
    indexed = OverlayIndex(etc, UNOFFICIAL_PORTS)
    for _ in range(INDEX_AFTER + 1):
        indexed.by_ports(1, 1)
    assert indexed._by_port is not None
    ports = {p for e in etc for p in (e.port - 1, e.port, e.port + 1)}
    ports |= {p for u in UNOFFICIAL_PORTS for p in (u[0] - 1, u[0], u[1], u[1] + 1)}
    names = {n.lower() for e in etc for n in (e.name, *e.aliases)} | {
        u[3] for u in UNOFFICIAL_PORTS
    }
    for port in sorted(ports):
        scanning = OverlayIndex(etc, UNOFFICIAL_PORTS)
        assert scanning.by_ports(port, port) == indexed.by_ports(port, port)
        for proto in ("tcp", "udp"):
            assert scanning.first_name(port, proto) == indexed.first_name(port, proto)
        assert scanning._by_port is None
    for name in sorted(names | {"no-such-name"}):
        assert OverlayIndex(etc, UNOFFICIAL_PORTS).by_name(name) == indexed.by_name(name)
    assert indexed.by_ports(6000, 7000) == OverlayIndex(etc, UNOFFICIAL_PORTS).by_ports(6000, 7000)


def test_search_finds_software_names_and_near_misses() -> None:
    from portbook import search

    assert {(s.name, s.port) for s in search("memcached")} >= {
        ("memcached", 11211),
        ("memcache", 11211),
    }
    near = search("postgress")  # one letter too many
    assert any(s.name == "postgresql" and s.port == 5432 for s in near)
    assert search("postgresql")[0].name == "postgresql"  # exact matches come first


@pytest.mark.parametrize("text", ["\udcff\udcfe", "a\x1bb"])
def test_search_text_that_is_not_text_is_refused(text: str) -> None:
    from portbook import UsageError, search

    with pytest.raises(UsageError):
        search(text)


@pytest.mark.parametrize("limit", ["0", "99999999999999999999", "\u0669", "-5", "1e3"])
def test_search_limit_is_a_bounded_whole_number(limit: str) -> None:
    shown = run_cli("search", "http", "--limit", limit)
    assert shown.status == 2 and shown.stderr.count("\n") == 1, shown
