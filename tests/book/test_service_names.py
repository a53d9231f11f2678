"""Book.service_names: many ports at once, exactly what service_name says of each."""

from __future__ import annotations

import pytest

from portbook import Book, InvalidPortSpecError, Protocol
from portbook._book import book as _book

PROTOCOLS = ("tcp", "udp", "sctp", "dccp")


def _reference(pairs: list[tuple[int, str]]) -> dict[tuple[int, str], str | None]:
    book = Book()
    try:
        return {pair: book.service_name(*pair) for pair in pairs}
    finally:
        book.close()


@pytest.mark.parametrize("step", [1, 16, 97, 4099])
def test_bulk_answers_equal_service_name(step: int) -> None:
    # Step 1 asks every port and protocol (past _BULK_UNTIL: the whole-table
    # path); the others a spread of ports below it (the bulk-query path).
    pairs = [(port, proto) for port in range(0, 65536, step) for proto in PROTOCOLS]
    book = Book()
    try:
        answer = book.service_names(pairs)
    finally:
        book.close()
    assert answer == _reference(pairs)


def test_few_unnamed_ports_take_the_overlay_scan() -> None:
    # Fewer unnamed pairs than the overlay index threshold: first_name path.
    pairs = [(22, "tcp"), (80, "tcp"), (5432, "tcp"), (6379, "tcp"), (61000, "udp")]
    book = Book()
    try:
        assert book.service_names(pairs) == _reference(pairs)
    finally:
        book.close()


def test_keys_are_protocol_values_and_enum_members_find_them() -> None:
    book = Book()
    try:
        answer = book.service_names([(443, Protocol.TCP), (443, "TCP"), (53, "udp")])
        assert set(answer) == {(443, "tcp"), (53, "udp")}
        assert all(type(proto) is str for _, proto in answer)
        assert answer[443, Protocol.TCP] == book.service_name(443, "tcp") == "https"
        assert answer[53, "udp"] == "domain"
    finally:
        book.close()


def test_answers_are_remembered_and_is_assigned_agrees() -> None:
    pairs = [(port, "tcp") for port in range(0, 65536, 13)]
    book, fresh = Book(), Book()
    try:
        first = book.service_names(pairs)
        assert book.service_names(pairs) == first
        # Cached facts answer service_name and is_assigned as a fresh book would.
        for pair in pairs[::50]:
            assert book.service_name(*pair) == fresh.service_name(*pair)
            assert book.is_assigned(*pair) == fresh.is_assigned(*pair)
    finally:
        book.close()
        fresh.close()


def test_empty_and_module_level() -> None:
    assert Book().service_names([]) == {}
    assert _book.service_names([(22, "tcp")]) == {(22, "tcp"): _book.service_name(22, "tcp")}


@pytest.mark.parametrize(
    "pair", [(-1, "tcp"), (65536, "tcp"), (True, "tcp"), ("80", "tcp"), (80, "icmp")]
)
def test_bad_pairs_raise_as_service_name_does(pair: tuple[object, object]) -> None:
    book = Book()
    with pytest.raises(InvalidPortSpecError):
        book.service_name(*pair)  # type: ignore[arg-type]
    with pytest.raises(InvalidPortSpecError):
        book.service_names([pair])  # type: ignore[list-item]
