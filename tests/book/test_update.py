"""update: validate, install atomically in the data directory, keep the old data on failure."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from portbook import Book, RegistryUpdateError
from portbook._book.registry import USER_REGISTRY_NAME
from tests.conftest import run_portbook

IANA_XML = Path(__file__).parents[2] / "data" / "iana" / "service-names-port-numbers.xml"

pytestmark = pytest.mark.skipif(not IANA_XML.is_file(), reason="IANA XML not in this tree")


@pytest.fixture(scope="module")
def good_csv() -> Path:
    """IANA's own CSV form of the registry (an older edition than the XML)."""
    path = IANA_XML.with_suffix(".csv")
    if not path.is_file():
        pytest.skip("IANA CSV not in this tree")
    return path


def _bad_files(tmp_path: Path, good_csv: Path) -> dict[str, Path]:
    xml = IANA_XML.read_bytes()
    text = good_csv.read_bytes().decode()
    files = {
        "truncated.xml": xml[: len(xml) * 2 // 3],
        "truncated.csv": text[: len(text) // 3].encode(),
        "wrong-header.csv": text.replace("Service Name,Port Number", "Name,Number", 1).encode(),
        "empty.xml": b"",
        "other.json": b'{"not": "a registry"}',
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return paths


def test_update_from_xml_then_csv_installs_each(tmp_path: Path, good_csv: Path) -> None:
    data_dir = tmp_path / "data"
    book = Book(data_dir=data_dir, services_path=False)
    assert book.registry_info().origin == "packaged"
    info = book.update_registry(IANA_XML)
    assert (info.origin, info.source_format, info.records) == ("user", "xml", 14_533)
    assert Path(info.path) == data_dir / USER_REGISTRY_NAME
    info = book.update_registry(good_csv)
    assert (info.origin, info.source_format, info.updated) == ("user", "csv", None)
    assert book.lookup("x11", "tcp")[0].port_end == 6063  # the new data answers
    assert sorted(p.name for p in data_dir.iterdir()) == [USER_REGISTRY_NAME]  # no temp files
    # A second book (another process, later) picks the user copy up by itself.
    later = Book(data_dir=data_dir)
    assert later.registry_info().source_format == "csv"
    later.close()
    book.close()


def test_bad_files_are_refused_and_the_old_data_survives(tmp_path: Path, good_csv: Path) -> None:
    data_dir = tmp_path / "data"
    book = Book(data_dir=data_dir, services_path=False)
    # Before any update: a refused file leaves the packaged data in use, no user copy.
    for path in _bad_files(tmp_path, good_csv).values():
        with pytest.raises(RegistryUpdateError):
            book.update_registry(path)
    assert book.registry_info().origin == "packaged"
    assert not data_dir.exists() or list(data_dir.iterdir()) == []
    # After a good update: refused files leave that one in use, byte for byte.
    before = book.update_registry(good_csv)
    stored = (data_dir / USER_REGISTRY_NAME).read_bytes()
    for name, path in _bad_files(tmp_path, good_csv).items():
        with pytest.raises(RegistryUpdateError) as caught:
            book.update_registry(path)
        assert str(caught.value), name
        assert book.registry_info() == before
        assert (data_dir / USER_REGISTRY_NAME).read_bytes() == stored
    with pytest.raises(RegistryUpdateError, match="cannot read"):
        book.update_registry(tmp_path / "does-not-exist.xml")
    assert sorted(p.name for p in data_dir.iterdir()) == [USER_REGISTRY_NAME]
    book.close()


def test_a_much_smaller_registry_is_refused(tmp_path: Path, good_csv: Path) -> None:
    lines = good_csv.read_bytes().decode().split("\r\n")
    small = tmp_path / "small.csv"
    small.write_text("\r\n".join(lines[:11_000]) + "\r\n", encoding="utf-8", newline="")
    book = Book(data_dir=tmp_path / "data", services_path=False)
    with pytest.raises(RegistryUpdateError, match="far fewer"):
        book.update_registry(small)
    book.close()


def test_a_damaged_user_copy_falls_back_to_the_packaged_data(tmp_path: Path) -> None:
    (tmp_path / USER_REGISTRY_NAME).write_bytes(b"this is not a database" * 100)
    book = Book(data_dir=tmp_path, services_path=False)
    info = book.registry_info()
    assert info.origin == "packaged" and info.warning and "unusable" in info.warning
    assert book.lookup(22, "tcp")[0].name == "ssh"
    book.close()
    result = run_portbook("info", env={"PORTBOOK_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0 and "warning" in result.stderr


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (port 0) serving tmp_path."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_update_from_a_url(tmp_path: Path, http_root: str) -> None:
    (tmp_path / IANA_XML.name).write_bytes(IANA_XML.read_bytes())
    book = Book(data_dir=tmp_path / "data", services_path=False)
    info = book.update_registry(f"{http_root}/{IANA_XML.name}")
    assert (info.origin, info.source_name, info.records) == ("user", IANA_XML.name, 14_533)
    with pytest.raises(RegistryUpdateError, match="cannot fetch"):
        book.update_registry(f"{http_root}/missing.xml")
    assert book.registry_info() == info
    book.close()


def test_cli_update_and_info(tmp_path: Path, good_csv: Path) -> None:
    env = {"PORTBOOK_DATA_DIR": str(tmp_path)}
    result = run_portbook("update", "--from", str(good_csv), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source_format"] == "csv"
    bad = tmp_path / "wrong.csv"
    bad.write_text("Name,Port,Proto\r\nx,1,tcp\r\n")
    for path in (bad, IANA_XML.with_name("nope.xml")):
        result = run_portbook("update", "--from", str(path), env=env)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("portbook: error:")
        assert "Traceback" not in result.stderr
    info = json.loads(run_portbook("info", "--json", env=env).stdout)["registry"]
    assert (info["origin"], info["source_format"], info["records"]) == ("user", "csv", 14_512)
    text = run_portbook("info", env=env).stdout
    assert "user data" in text and "14512" in text
    missing = run_portbook("update", env=env)
    assert missing.returncode == 2 and "--from" in missing.stderr


def test_a_temporary_file_left_by_a_killed_update_is_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".{USER_REGISTRY_NAME}.{int(dead.stdout)}.tmp"
    stale.write_bytes(b"half a database")
    book = Book(data_dir=tmp_path, services_path=False)
    book.update_registry(IANA_XML)
    assert sorted(p.name for p in tmp_path.iterdir()) == [USER_REGISTRY_NAME]
    book.close()
