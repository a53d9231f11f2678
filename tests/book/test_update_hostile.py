"""update against hostile and broken input: every refusal leaves the data in use byte for byte.

Real files (a FIFO, /dev/zero, a /proc file whose st_size is 0, a sparse file
one byte over the limit), a real HTTP server on loopback (port 0) serving
good, huge, trickling and redirecting answers, and the real IANA files made
wrong in each way a registry can be wrong. After every refusal the user's
installed copy hashes the same, no temporary file is left, and lookups answer.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from portbook import Book, RegistryUpdateError, UsageError
from portbook._book import update
from portbook._book.build import MAX_EXPANDED_PORTS
from portbook._book.registry import USER_REGISTRY_NAME
from tests.conftest import run_portbook

IANA_XML = Path(__file__).parents[2] / "data" / "iana" / "service-names-port-numbers.xml"
IANA_CSV = IANA_XML.with_suffix(".csv")

pytestmark = pytest.mark.skipif(
    not (IANA_XML.is_file() and IANA_CSV.is_file()), reason="IANA files not in this tree"
)


# -- the data in use, and how to tell it did not change ------------------------------


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user registry installed once from IANA's CSV; each test starts from a copy of it."""
    data_dir = tmp_path_factory.mktemp("installed")
    book = Book(data_dir=data_dir, services_path=False)
    try:
        assert book.update_registry(IANA_CSV).origin == "user"
    finally:
        book.close()
    return data_dir / USER_REGISTRY_NAME


@pytest.fixture
def data_dir(tmp_path: Path, installed_copy: Path) -> Path:
    target = tmp_path / "data"
    target.mkdir()
    shutil.copyfile(installed_copy, target / USER_REGISTRY_NAME)
    return target


def _state(data_dir: Path) -> tuple[str, list[str]]:
    """The installed copy's SHA-256 and every name in the data directory."""
    digest = hashlib.sha256((data_dir / USER_REGISTRY_NAME).read_bytes()).hexdigest()
    return digest, sorted(p.name for p in data_dir.iterdir())


def _assert_refused_and_unchanged(
    data_dir: Path, source: str | Path, match: str, error: type[Exception] = RegistryUpdateError
) -> None:
    before = _state(data_dir)
    book = Book(data_dir=data_dir, services_path=False)
    try:
        info = book.registry_info()
        assert info.origin == "user" and info.source_format == "csv"
        with pytest.raises(error, match=match):
            book.update_registry(source)
        assert book.registry_info() == info
        assert [s.name for s in book.lookup(22, "tcp")] == ["ssh"]
    finally:
        book.close()
    assert _state(data_dir) == before
    # A new process (a later `portbook`) sees the same data too.
    later = Book(data_dir=data_dir, services_path=False)
    try:
        assert later.registry_info().source_sha256 == info.source_sha256
        assert later.registry_info().warning is None
    finally:
        later.close()


# -- files made wrong in each way -----------------------------------------------------


def _csv_rows() -> list[list[str]]:
    return list(csv.reader(io.StringIO(IANA_CSV.read_text(encoding="utf-8"), newline="")))


def _csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def _with_date(date_text: str) -> bytes:
    rows = _csv_rows()
    rows[5000][7] = date_text  # Modification Date of one record deep inside the file
    return _csv_bytes(rows)


def _every_record_spanning_everything() -> bytes:
    rows = _csv_rows()
    for row in rows[1:]:
        if row[1]:
            row[1] = "0-65535"
    return _csv_bytes(rows)


def _xml_with_doctype(doctype: str, encoding: str = "utf-8") -> bytes:
    text = IANA_XML.read_text(encoding="utf-8")
    head, rest = text.split("<registry ", 1)
    text = f"{head}{doctype}\n<registry {rest}"
    marked = "<description>The Secure Shell (SSH) Protocol"
    assert marked in text
    text = text.replace(marked, "<description>&x; The Secure Shell (SSH) Protocol", 1)
    if encoding.startswith("utf-16"):  # utf-16-le: the same text without a byte order mark
        text = text.replace("encoding='UTF-8'", "encoding='UTF-16'", 1)
    return text.encode(encoding)


BAD_CONTENT: dict[str, tuple[Callable[[], bytes], str]] = {
    "date-9999-99-99": (lambda: _with_date("9999-99-99"), "malformed date '9999-99-99'"),
    "date-2026-02-30": (lambda: _with_date("2026-02-30"), "malformed date '2026-02-30'"),
    "date-month-13": (lambda: _with_date("2026-13"), "malformed date"),
    "date-basic-form": (lambda: _with_date("20260217"), "malformed date"),
    "date-arabic-digits": (lambda: _with_date("٢٠٢٦-٠١-٠١"), "malformed date"),
    "updated-yesterday": (
        lambda: IANA_XML.read_bytes().replace(
            b"<updated>2026-08-17</updated>", b"<updated>yesterday</updated>", 1
        ),
        "<updated> is not a date",
    ),
    "updated-2026-02-30": (
        lambda: IANA_XML.read_bytes().replace(
            b"<updated>2026-08-17</updated>", b"<updated>2026-02-30</updated>", 1
        ),
        "<updated> is not a date",
    ),
    "every-record-0-65535": (_every_record_spanning_everything, f"more than {MAX_EXPANDED_PORTS}"),
    "internal-entity-utf8": (
        lambda: _xml_with_doctype('<!DOCTYPE registry [<!ENTITY x "INJECTED">]>'),
        "DOCTYPE",
    ),
    "internal-entity-utf16": (
        lambda: _xml_with_doctype('<!DOCTYPE registry [<!ENTITY x "INJECTED">]>', "utf-16"),
        "DOCTYPE",
    ),
    "internal-entity-utf16le-no-bom": (
        lambda: _xml_with_doctype('<!DOCTYPE registry [<!ENTITY x "INJECTED">]>', "utf-16-le"),
        "DOCTYPE",
    ),
    "external-entity": (
        lambda: _xml_with_doctype(
            '<!DOCTYPE registry [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        ),
        "DOCTYPE",
    ),
    "external-dtd": (lambda: _xml_with_doctype('<!DOCTYPE registry SYSTEM "x.dtd">'), "DOCTYPE"),
    "billion-laughs": (
        lambda: _xml_with_doctype(
            '<!DOCTYPE registry [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY x "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        ),
        "DOCTYPE",
    ),
    "undeclared-entity": (lambda: _xml_with_doctype(""), "not well-formed"),
    "empty": (lambda: b"", "not an IANA"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_a_refused_file_changes_nothing(tmp_path: Path, data_dir: Path, case: str) -> None:
    make, match = BAD_CONTENT[case]
    bad = tmp_path / f"{case}.bin"
    bad.write_bytes(make())
    _assert_refused_and_unchanged(data_dir, bad, re.escape(match) if "'" in match else match)


def test_the_entity_text_never_reaches_the_data(tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "entity.xml"
    bad.write_bytes(_xml_with_doctype('<!DOCTYPE registry [<!ENTITY x "INJECTED">]>', "utf-16"))
    _assert_refused_and_unchanged(data_dir, bad, "DOCTYPE")
    assert b"INJECTED" not in (data_dir / USER_REGISTRY_NAME).read_bytes()


def test_the_expanded_rows_bound_is_checked_before_anything_is_written(
    tmp_path: Path, data_dir: Path
) -> None:
    bad = tmp_path / "wide.csv"
    bad.write_bytes(_every_record_spanning_everything())
    started = time.monotonic()
    _assert_refused_and_unchanged(data_dir, bad, "ports with their ranges expanded")
    assert time.monotonic() - started < 30  # refused from the records, not after writing rows


# -- sources that are not regular files, or not files at all --------------------------


def _refused_within(seconds: float, call: Callable[[], object]) -> BaseException:
    """Run ``call`` in a thread; it must raise within ``seconds`` (a blocked read fails here)."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    assert caught, "was not refused"
    return caught[0]


def test_a_fifo_is_refused_at_once(tmp_path: Path, data_dir: Path) -> None:
    fifo = tmp_path / "registry.xml"
    os.mkfifo(fifo)
    error = _refused_within(10, lambda: update.fetch_source(fifo))
    assert isinstance(error, RegistryUpdateError) and "a FIFO, not a regular file" in str(error)
    _assert_refused_and_unchanged(data_dir, fifo, "FIFO")
    result = run_portbook(
        "update", "--from", str(fifo), env={"PORTBOOK_DATA_DIR": str(data_dir)}, timeout=30
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("/dev/zero", "character device, not a regular file"),
        ("/dev/null", "character device, not a regular file"),
        ("/", "directory, not a regular file"),
        ("/nonexistent/registry.xml", "cannot read"),
        ("ftp://127.0.0.1/registry.xml", "ftp:// is not supported"),
        ("file:///etc/hostname", "file:// is not supported"),
        ("x" * 300 + ".xml", "cannot read"),
    ],
)
def test_what_is_not_a_regular_file_or_an_http_url_is_refused(
    data_dir: Path, source: str, match: str
) -> None:
    _assert_refused_and_unchanged(data_dir, source, match)


@pytest.mark.parametrize("source", ["", "a\0b"])
def test_a_source_that_is_no_path_is_a_usage_error(data_dir: Path, source: str) -> None:
    _assert_refused_and_unchanged(data_dir, source, "registry source", UsageError)


def test_dev_zero_through_the_cli(data_dir: Path) -> None:
    result = run_portbook(
        "update", "--from", "/dev/zero", env={"PORTBOOK_DATA_DIR": str(data_dir)}, timeout=30
    )
    assert result.returncode == 1
    assert result.stderr == "portbook: error: /dev/zero is a character device, not a regular file\n"


def test_size_is_counted_while_reading_not_taken_from_st_size(tmp_path: Path) -> None:
    # /proc files are regular with st_size 0: read to their end all the same.
    data, name = update.fetch_source("/proc/self/status")
    assert os.stat("/proc/self/status").st_size == 0 and b"Pid:" in data and name == "status"
    # A file one byte over the limit is refused, one at the limit is read whole.
    over = tmp_path / "over.xml"
    with open(over, "wb") as fh:
        fh.truncate(update.MAX_DOWNLOAD + 1)
    with pytest.raises(RegistryUpdateError, match="larger than"):
        update.fetch_source(over)
    exact = tmp_path / "exact.xml"
    exact.write_bytes(b"<" * 1000)
    assert update.fetch_source(exact, max_bytes=1000)[0] == b"<" * 1000
    with pytest.raises(RegistryUpdateError, match="larger than 999 bytes"):
        update.fetch_source(exact, max_bytes=999)


# -- a real HTTP server on loopback -----------------------------------------------------

TRICKLE_INTERVAL = 0.2


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    routes: ClassVar[dict[str, Callable[[_Handler], None]]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        route = self.routes.get(self.path)
        try:
            if route is None:
                self.send_error(404)
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def send_body(self, body: bytes, content_type: str = "application/xml") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _huge(handler: _Handler) -> None:
    # No Content-Length: the size shows only while reading.
    handler.send_response(200)
    handler.end_headers()
    block = b"<" * (1 << 20)
    for _ in range(update.MAX_DOWNLOAD // len(block) + 8):
        handler.wfile.write(block)


def _huge_declared(handler: _Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(10**12))
    handler.end_headers()
    handler.wfile.write(b"<" * 1000)


def _trickle_body(handler: _Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "4000000")
    handler.end_headers()
    for _ in range(200):
        handler.wfile.write(b"<")
        handler.wfile.flush()
        time.sleep(TRICKLE_INTERVAL)


def _trickle_headers(handler: _Handler) -> None:
    handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
    for byte in b"X-Slow: " + b"y" * 200:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(TRICKLE_INTERVAL)


_Handler.routes = {
    "/good.xml": lambda h: h.send_body(IANA_XML.read_bytes()),
    "/entity.xml": lambda h: h.send_body(
        _xml_with_doctype('<!DOCTYPE registry [<!ENTITY x "INJECTED">]>', "utf-16")
    ),
    "/huge": _huge,
    "/huge-declared": _huge_declared,
    "/trickle-body": _trickle_body,
    "/trickle-headers": _trickle_headers,
    "/to-good": lambda h: h.redirect("/good.xml"),
    "/to-ftp": lambda h: h.redirect("ftp://127.0.0.1/good.xml"),
    "/to-file": lambda h: h.redirect("file:///etc/hostname"),
    "/to-loop": lambda h: h.redirect("/to-loop"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1, port 0; each request on a thread of its own."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_good_file_through_a_redirect_is_installed(server: str, data_dir: Path) -> None:
    book = Book(data_dir=data_dir, services_path=False)
    try:
        info = book.update_registry(f"{server}/to-good")
        assert (info.origin, info.source_format, info.records) == ("user", "xml", 14_533)
        assert sorted(p.name for p in data_dir.iterdir()) == [USER_REGISTRY_NAME]
    finally:
        book.close()


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/huge", "larger than"),
        ("/huge-declared", "larger than"),
        ("/entity.xml", "DOCTYPE"),
        ("/to-ftp", "redirects to 'ftp://"),
        ("/to-file", "cannot fetch"),  # urllib itself refuses a redirect to file:
        ("/to-loop", "cannot fetch"),
        ("/missing", "cannot fetch"),
    ],
)
def test_a_refused_download_changes_nothing(
    server: str, data_dir: Path, path: str, match: str
) -> None:
    _assert_refused_and_unchanged(data_dir, f"{server}{path}", match)


@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_a_trickling_server_is_cut_off_at_the_deadline(
    server: str, data_dir: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each byte comes well within any per-read timeout; only a deadline for the
    # whole download ends it.
    monkeypatch.setattr(update, "DOWNLOAD_DEADLINE", 1.5)
    started = time.monotonic()
    _assert_refused_and_unchanged(data_dir, f"{server}{path}", "not received whole within 1.5 s")
    assert time.monotonic() - started < 1.5 + 5


def test_the_deadline_covers_the_connection_too(data_dir: Path) -> None:
    # A listener that never accepts: the TCP handshake completes (backlog), the
    # request is sent, and no byte ever comes back.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/registry.xml"
        started = time.monotonic()
        with pytest.raises(RegistryUpdateError, match="within 1 s"):
            update.fetch_source(url, deadline=1.0)
        assert time.monotonic() - started < 1.0 + 3


def test_a_refused_download_through_the_cli(server: str, data_dir: Path) -> None:
    env = {"PORTBOOK_DATA_DIR": str(data_dir)}
    before = _state(data_dir)
    for path in ("/to-ftp", "/huge", "/entity.xml"):
        result = run_portbook("update", "--from", f"{server}{path}", env=env)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert _state(data_dir) == before
    info = json.loads(run_portbook("info", "--json", env=env).stdout)["registry"]
    assert (info["origin"], info["source_format"], info["warning"]) == ("user", "csv", None)


# -- a user copy that cannot be used never stops portbook -----------------------------------


def _write_unchecked(path: Path, service: tuple[str, str] = ("ssh", "tcp"), **changes: str) -> None:
    """A database as an older portbook's update could install it: rows never validated.

    ``service`` (name, protocol) is the record changed: by default the one
    ``lookup 22`` reads first.
    """
    from portbook._book.build import parse_registry, write_database
    from portbook._record import replace

    built = parse_registry(IANA_CSV.read_bytes(), IANA_CSV.name)
    records = list(built.records)
    at = next(i for i, r in enumerate(records) if (r.name, r.protocol) == service)
    records[at] = replace(records[at], **changes)
    write_database(replace(built, records=tuple(records)), path)


def _make_bad_copy(kind: str, data_dir: Path, installed: Path) -> None:
    target = data_dir / USER_REGISTRY_NAME
    target.unlink()
    if kind == "row-date-9999-99-99":
        _write_unchecked(target, modified="9999-99-99")
    elif kind == "row-date-2026-02-30":
        _write_unchecked(target, registered="2026-02-30")
    elif kind == "row-status":
        _write_unchecked(target, status="stolen")
    elif kind == "meta-updated":
        shutil.copyfile(installed, target)
        conn = sqlite3.connect(target)
        with conn:
            conn.execute("UPDATE meta SET value = 'yesterday' WHERE key = 'updated'")
        conn.close()
    elif kind == "truncated":
        target.write_bytes(installed.read_bytes()[: 64 * 1024])
    elif kind == "garbage":
        target.write_bytes(b"not a database " * 1000)
    elif kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        raise AssertionError(kind)


# What opening a copy finds (its meta, its kind of file, SQLite's header); the
# rest is found by the first answer that reads the bad record.
FOUND_ON_OPENING = {"row-date-9999-99-99", "meta-updated", "garbage", "directory", "fifo"}
BAD_COPIES = [
    "row-date-9999-99-99",
    "row-date-2026-02-30",
    "row-status",
    "meta-updated",
    "truncated",
    "garbage",
    "directory",
    "fifo",
]


@pytest.mark.parametrize("kind", BAD_COPIES)
def test_a_bad_user_copy_falls_back_to_the_packaged_data_with_one_warning(
    kind: str, data_dir: Path, installed_copy: Path
) -> None:
    _make_bad_copy(kind, data_dir, installed_copy)
    book = Book(data_dir=data_dir, services_path=False)
    try:
        # Whatever is asked first meets the damage; every answer still comes.
        assert [s.name for s in book.lookup(22, "tcp")] == ["ssh"]
        assert book.lookup("6010/udp")[0].port_end == 6063
        assert book.search("kerberos", limit=3)
        assert book.service_name(443, "tcp") == "https"
        assert [r.port for r in book.lookup("http-alt")]
        info = book.registry_info()
        assert info.origin == "packaged" and info.records == 14_533, info
        assert info.warning and str(data_dir / USER_REGISTRY_NAME) in info.warning
        assert info.warning.endswith("using the packaged registry instead")
    finally:
        book.close()
    env = {"PORTBOOK_DATA_DIR": str(data_dir)}
    for argv in (["lookup", "22"], ["search", "ssh"], ["who", "1"], ["lookup", "9999-99-99"]):
        result = run_portbook(*argv, env=env, timeout=30)
        assert result.returncode in (0, 1, 2) and "Traceback" not in result.stderr, result
    assert run_portbook("lookup", "22", env=env, timeout=30).returncode == 0
    if kind in FOUND_ON_OPENING:
        result = run_portbook("info", env=env, timeout=30)
        assert result.returncode == 0 and "packaged data" in result.stdout
        assert result.stderr.count("\n") == 1 and "using the packaged registry" in result.stderr


def test_a_user_copy_damaged_between_queries_is_dropped_mid_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_unchecked(data_dir / USER_REGISTRY_NAME, ("x11", "udp"), modified="2026-02-30")
    book = Book(data_dir=data_dir, services_path=False)
    try:
        # Opening checks meta only; records are checked as they are built.
        assert [s.name for s in book.lookup(22, "tcp")] == ["ssh"]
        assert book.registry_info().origin == "user"
        # The first answer that needs the bad record drops the whole copy.
        found = book.lookup("6010/udp")
        assert [(s.name, s.port, s.port_end) for s in found] == [("x11", 6000, 6063)]
        info = book.registry_info()
        assert info.origin == "packaged" and info.warning
        assert "registry record" in info.warning and "2026-02-30" in info.warning
        assert [s.name for s in book.lookup(22, "tcp")] == ["ssh"]
    finally:
        book.close()


def test_an_update_replaces_a_bad_user_copy(data_dir: Path, installed_copy: Path) -> None:
    _make_bad_copy("row-date-9999-99-99", data_dir, installed_copy)
    book = Book(data_dir=data_dir, services_path=False)
    try:
        assert book.lookup("0-65535") and book.registry_info().warning
        info = book.update_registry(IANA_XML)
        assert (info.origin, info.source_format, info.warning) == ("user", "xml", None)
        assert [s.name for s in book.lookup(22, "tcp")] == ["ssh"]
    finally:
        book.close()


def test_an_explicit_registry_file_that_is_damaged_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    _write_unchecked(path, modified="2026-02-30")
    from portbook import RegistryError

    book = Book(registry_path=path, services_path=False)
    try:
        with pytest.raises(RegistryError, match=r"r\.sqlite3 is unusable: registry record"):
            book.lookup("0-65535")
    finally:
        book.close()


def test_install_reads_the_new_database_back_through_the_reader(
    tmp_path: Path, data_dir: Path
) -> None:
    # Records that skipped validation (what a bug in it would let through)
    # are still caught before the rename: the reader builds every record.
    from portbook._book.build import install_database, parse_registry
    from portbook._record import replace

    built = parse_registry(IANA_CSV.read_bytes(), IANA_CSV.name)
    records = list(built.records)
    records[10] = replace(records[10], registered="2026-02-30")
    before = _state(data_dir)
    with pytest.raises(RegistryUpdateError, match=r"does not read back.*record 11"):
        install_database(replace(built, records=tuple(records)), data_dir / USER_REGISTRY_NAME)
    assert _state(data_dir) == before


def test_the_cli_prints_nothing_extra_when_the_data_is_fine(data_dir: Path) -> None:
    result = run_portbook("info", env={"PORTBOOK_DATA_DIR": str(data_dir)})
    assert result.returncode == 0 and result.stderr == ""
    assert sys.executable  # the same interpreter runs every child


@pytest.mark.parametrize(
    ("old", "new", "followed"),
    [
        ("https://a.example/r.xml", "http://a.example/r.xml", False),
        ("https://a.example/r.xml", "https://b.example/r.xml", True),
        ("http://a.example/r.xml", "https://a.example/r.xml", True),
        ("http://a.example/r.xml", "ftp://a.example/r.xml", False),
        ("http://a.example/r.xml", "data:,hello", False),
    ],
)
def test_redirects_go_only_to_http_and_never_down_from_https(
    old: str, new: str, followed: bool
) -> None:
    # No TLS server here: the redirect rule is asked directly, as urllib asks it.
    import http.client
    import urllib.request

    handler = update._redirect_handler()
    request = urllib.request.Request(old)
    headers = http.client.HTTPMessage()
    fp = io.BytesIO()
    if followed:
        assert handler.redirect_request(request, fp, 302, "Found", headers, new) is not None
    else:
        with pytest.raises(RegistryUpdateError, match="only http"):
            handler.redirect_request(request, fp, 302, "Found", headers, new)
        assert fp.closed
