"""The packaged port-names file: the registry's names for a listing, read without SQLite."""

from __future__ import annotations

import random
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from portbook import Book, RegistryError
from portbook._book import name_index
from portbook._book.name_index import NameIndex, encode
from portbook._book.registry import PACKAGED_REGISTRY

PROTOCOLS = ("tcp", "udp", "sctp", "dccp")


def _packaged_names() -> dict[tuple[int, str], str]:
    with sqlite3.connect(f"file:{PACKAGED_REGISTRY}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT port, protocol, name FROM port_name WHERE name IS NOT NULL")
        return {(port, proto): name for port, proto, name in rows}


def _spread() -> list[tuple[int, str]]:
    """Named and nameless pairs, every protocol, both ends of the port range."""
    rng = random.Random(13)
    ports = [0, 1, 22, 80, 443, 5432, 8000, 49151, 49152, 65535]
    ports += rng.sample(range(65536), 200)  # 840 pairs: under _INDEX_UNTIL
    return [(port, proto) for port in ports for proto in PROTOCOLS]


def test_the_packaged_file_is_the_packaged_databases_names_row_for_row() -> None:
    names = _packaged_names()
    assert len(names) > 10_000
    assert Path(name_index.PACKAGED_NAMES).read_bytes() == encode(names)
    assert NameIndex.read().names(names) == names


def test_it_answers_what_the_database_answers_and_opens_no_database(tmp_path: Path) -> None:
    pairs = _spread()
    by_index = Book(data_dir=tmp_path)  # no user copy: the packaged data is in use
    by_db = Book(registry_path=PACKAGED_REGISTRY)
    try:
        assert by_index.display_names(pairs) == by_db.display_names(pairs)
        assert by_index._db is None and by_db._db is not None
    finally:
        by_index.close()
        by_db.close()


def test_a_user_copy_is_read_through_the_database(tmp_path: Path) -> None:
    """An updated registry may name ports differently: the packaged file must not answer for it."""
    copy = tmp_path / "registry.sqlite3"
    shutil.copyfile(PACKAGED_REGISTRY, copy)
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE port_name SET name = 'renamed' WHERE port = 443 AND protocol = 'tcp'")
    db.close()
    book = Book(data_dir=tmp_path, services_path=False, unofficial=False)
    try:
        assert book.display_names([(443, "tcp")]) == {(443, "tcp"): ("renamed", "iana")}
        assert book.registry_info().origin == "user"
    finally:
        book.close()


@pytest.mark.parametrize(
    "damage",
    [b"", b"portbook-port-names 1\n", b"something else entirely", "truncated"],
)
def test_a_damaged_file_is_refused_and_the_database_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes | str
) -> None:
    data = Path(name_index.PACKAGED_NAMES).read_bytes()
    bad = tmp_path / "port-names"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else damage)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="damaged"):
        NameIndex.read(str(bad))
    monkeypatch.setattr(name_index, "PACKAGED_NAMES", str(bad))
    book = Book(data_dir=tmp_path / "data", services_path=False, unofficial=False)
    try:
        assert book.display_names([(443, "tcp"), (47061, "tcp")]) == {
            (443, "tcp"): ("https", "iana")
        }
        assert book._db is not None
    finally:
        book.close()


def test_a_cold_listing_opens_no_sqlite(tmp_path: Path) -> None:
    """What the file is for: `portbook ls` names its ports without loading _sqlite3.

    Only a listener of the test's own: other tests' thousands of sockets would
    make a listing of more pairs than the file answers.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = (
        "import sys, portbook._cli as cli\n"
        f"status = cli.main(['ls', '--tcp', '--port', '{port}'])\n"
        "print('LOADED', status, '_sqlite3' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PORTBOOK_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    listener.close()
    assert run.stdout.splitlines()[-1] == "LOADED 0 False", run.stderr
