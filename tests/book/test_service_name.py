"""service_name and is_assigned: the per-socket answers the live table and the port picker use."""

from __future__ import annotations

import pytest

import portbook
from portbook import InvalidPortSpecError, Protocol, is_assigned, service_name


def test_service_name_prefers_the_iana_assignment() -> None:
    assert service_name(443, "tcp") == "https"
    assert service_name(22, Protocol.TCP) == "ssh"
    assert service_name(53, "UDP") == "domain"


def test_service_name_covers_ranges_and_overlays() -> None:
    assert service_name(6003, "tcp") == "x11"  # inside x11 6000-6063
    # 5173 is Unassigned at IANA for tcp; the unofficial list knows Vite.
    assert not is_assigned(5173, "tcp")
    assert service_name(5173, "tcp") == "vite"


def test_service_name_of_an_unknown_port_is_none() -> None:
    assert service_name(55555, "tcp") is None
    assert service_name(4, "tcp") is None  # an Unassigned entry has no name


def test_is_assigned_excludes_reserved_and_unassigned_blocks() -> None:
    assert is_assigned(443, "tcp")
    assert is_assigned(6063, Protocol.UDP)
    assert not is_assigned(0, "tcp")  # Reserved
    assert not is_assigned(2, "tcp")  # Reserved (de-assigned)
    assert not is_assigned(4, "tcp")  # Unassigned
    assert not is_assigned(50000, "udp")  # Dynamic range


@pytest.mark.parametrize("bad", [(70000, "tcp"), (-1, "tcp"), (80, "icmp"), (80, "")])
def test_bad_input_is_refused(bad: tuple[int, str]) -> None:
    with pytest.raises(InvalidPortSpecError):
        service_name(*bad)
    with pytest.raises(InvalidPortSpecError):
        is_assigned(*bad)


def test_both_are_exported() -> None:
    assert portbook.service_name is service_name
    assert "is_assigned" in portbook.__all__


def test_per_port_answers_agree_with_the_preloaded_table() -> None:
    """The first few hundred ports are answered one query each, later ones from a
    table loaded whole; both paths give the same answers."""
    from portbook import Book
    from portbook._book.book import _PRELOAD_AFTER

    ports = [0, 1, 2, 4, 22, 24, 53, 80, 443, 1021, 5173, 6000, 6063, 6400, 8080, 27017, 50000]
    ports += list(range(3000, 3000 + _PRELOAD_AFTER // 8))  # 4 protocols each: under the limit
    lazy, loaded = Book(), Book()
    loaded._name_table()
    for port in ports:
        for proto in ("tcp", "udp", "sctp", "dccp"):
            want = (loaded.is_assigned(port, proto), loaded.service_name(port, proto))
            assert (lazy.is_assigned(port, proto), lazy.service_name(port, proto)) == want
    assert not _loaded(lazy)  # still answering port by port
    for port in range(10_000, 10_000 + _PRELOAD_AFTER + 1):
        lazy.service_name(port, "tcp")
    assert _loaded(lazy)  # past the threshold, the table was loaded
    assert lazy.service_name(6003, "udp") == "x11" and lazy.is_assigned(443, Protocol.TCP)
    lazy.close()
    loaded.close()


def _loaded(book: object) -> bool:
    return getattr(book, "_names", None) is not None
