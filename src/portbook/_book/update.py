"""``portbook update``: install a newer IANA registry in the user data directory.

The source is a local file or an http(s) URL (fetched only when one is given;
``urllib`` is imported only then). Its format (XML or CSV) is read from the
content. Nothing is replaced until the new data has been parsed, validated,
written to a temporary database beside the old one and read back through the
book's own reader; then one ``os.replace`` swaps it in. Any failure leaves the
previous data in use, byte for byte.

What is read is bounded, since a file or a server may be hostile or broken:

* **Bytes**: at most :data:`MAX_DOWNLOAD`, counted while reading (at most
  that many plus one are ever read), never taken from ``st_size`` or
  ``Content-Length``, which may lie (``/proc`` files say 0, a file may grow).
* **Kinds of file**: a regular file only. A FIFO would block the read
  forever, ``/dev/zero`` never ends; neither is even opened for reading
  (the file is opened with ``O_NONBLOCK`` and checked with ``fstat``, so one
  swapped in after the first check is refused too).
* **URLs**: ``http://`` and ``https://`` only, and a redirect only to those
  (never from https to http, at most :data:`_MAX_REDIRECTS`).
* **Time**: the whole download, from the connection to the last byte of the
  body (redirects included), must end within :data:`DOWNLOAD_DEADLINE`
  seconds. A per-read timeout would not do: a server that sends one byte
  every few seconds never lets a read time out. Every read on the socket is
  given the time left as its timeout (see :func:`_opener`), so no read can
  last past the deadline.
"""

from __future__ import annotations

import os
import re
import stat
import time

from portbook._book.registry import USER_REGISTRY_NAME
from portbook._exceptions import RegistryUpdateError, UsageError
from portbook._paths import file_kind

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    import urllib.request
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["DOWNLOAD_DEADLINE", "MAX_DOWNLOAD", "fetch_source", "install_registry"]

# IANA's XML is about 4 MB; a file several times that size is not the registry.
MAX_DOWNLOAD = 32 * 1024 * 1024
# Seconds for a whole download: IANA's 4 MB in time even at a few hundred kbit/s.
DOWNLOAD_DEADLINE = 180.0
_MAX_REDIRECTS = 5
# A newer registry never loses a tenth of its records; such a file is a wrong or cut-off one.
_MIN_FRACTION_OF_CURRENT = 0.9
_READ_CHUNK = 1 << 20
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")


def fetch_source(
    source: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    deadline: float | None = None,
) -> tuple[bytes, str]:
    """The bytes of ``source`` and a short name for it (the file name).

    ``source``: a path, or (as a string) an http(s) URL. ``max_bytes``
    (default :data:`MAX_DOWNLOAD`) and ``deadline`` (seconds for a whole
    download, default :data:`DOWNLOAD_DEADLINE`) bound what is read.
    Raises :class:`RegistryUpdateError` for anything that cannot be read
    within them, :class:`UsageError` for a source that is no path at all.
    """
    limit = MAX_DOWNLOAD if max_bytes is None else max_bytes
    text = os.fspath(source)
    if not isinstance(text, str) or not text:
        raise UsageError("the registry source is empty: give a file or an http(s) URL")
    if "\0" in text:
        raise UsageError("the registry source contains a NUL character")
    if isinstance(source, str):
        match = _SCHEME.match(text)
        if match is not None:
            scheme = match.group(1).lower()
            if scheme not in ("http", "https"):
                raise RegistryUpdateError(
                    f"{scheme}:// is not supported: give a file or an http(s) URL"
                )
            seconds = DOWNLOAD_DEADLINE if deadline is None else deadline
            return _fetch_url(text, limit, seconds)
    return _read_file(text, limit), os.path.basename(text) or "registry"


def _read_file(path: str, limit: int) -> bytes:
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise RegistryUpdateError(f"{path} is {file_kind(mode)}, not a regular file")
        # O_NONBLOCK: a FIFO swapped in after the stat must not block the open.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise RegistryUpdateError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RegistryUpdateError(f"{path} is {file_kind(mode)}, not a regular file")
        return _read_bounded(lambda: os.read(fd, _READ_CHUNK), path, limit)
    except OSError as exc:
        raise RegistryUpdateError(f"cannot read {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _fetch_url(url: str, limit: int, seconds: float) -> tuple[bytes, str]:
    import http.client
    import posixpath
    import urllib.error
    import urllib.parse
    import urllib.request

    deadline = time.monotonic() + seconds
    request_headers = {"User-Agent": "portbook", "Accept-Encoding": "identity"}
    try:
        name = posixpath.basename(urllib.parse.urlsplit(url).path)[:200] or "registry"
        request = urllib.request.Request(url, headers=request_headers)
        with _opener(deadline).open(request, timeout=max(seconds, 0.001)) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise RegistryUpdateError(
                    f"{url} is {declared} bytes, larger than {limit}: not the registry"
                )
            return _read_body(response, url, limit), name
    except RegistryUpdateError:
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError) or time.monotonic() >= deadline:
            raise RegistryUpdateError(
                f"cannot fetch {url}: not received whole within {seconds:g} s"
            ) from exc
        raise RegistryUpdateError(f"cannot fetch {url}: {reason}") from exc


def _read_body(response: http.client.HTTPResponse, url: str, limit: int) -> bytes:
    # read1: what one read of the socket gives, so that the deadline set on
    # each read applies (read(n) would wait for n bytes across many reads).
    return _read_bounded(lambda: response.read1(_READ_CHUNK), url, limit)


def _read_bounded(read: Callable[[], bytes], source: str, limit: int) -> bytes:
    """Everything ``read`` gives until it gives b"", refused once past ``limit`` bytes
    (counted as they come: a size the source announces is not trusted)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := read():
        total += len(chunk)
        if total > limit:
            raise RegistryUpdateError(f"{source} is larger than {limit} bytes: not the registry")
        chunks.append(chunk)
    return b"".join(chunks)


def _opener(deadline: float) -> urllib.request.OpenerDirector:
    """An opener for http(s) only, whose every socket read ends by ``deadline`` (monotonic).

    Built from its handlers one by one rather than by ``build_opener``,
    which would add ``file:``, ``ftp:`` and ``data:`` handlers too.
    """
    import urllib.request

    http_handler, https_handler = _deadline_handlers(deadline)
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        http_handler,
        https_handler,
        urllib.request.HTTPDefaultErrorHandler(),
        _redirect_handler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _deadline_handlers(
    deadline: float,
) -> tuple[urllib.request.HTTPHandler, urllib.request.HTTPSHandler]:
    """http and https handlers whose connections give each socket read the time left.

    http.client sets one timeout per socket operation; here each read (and the
    connection, and the TLS handshake, which CPython bounds as a whole by the
    socket's timeout) is given the time left until ``deadline`` instead, so
    the download as a whole ends by then. ``HTTPConnection._create_connection``
    is the hook http.client keeps for replacing how it connects.
    """
    import http.client
    import socket
    import ssl
    import urllib.request

    def time_left() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the download deadline passed")
        return left

    class DeadlineSocket(socket.socket):
        def recv_into(self, buffer: object, nbytes: int = 0, flags: int = 0) -> int:
            self.settimeout(time_left())
            return super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]

    class DeadlineSSLSocket(ssl.SSLSocket):
        def recv_into(self, buffer: object, nbytes: int | None = None, flags: int = 0) -> int:
            self.settimeout(time_left())
            return super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]

    def connect(
        address: tuple[str, int], timeout: object = None, source_address: object = None
    ) -> socket.socket:
        plain = socket.create_connection(address, time_left(), source_address)  # type: ignore[arg-type]
        sock = DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        sock.settimeout(time_left())
        return sock

    class HTTPConnection(http.client.HTTPConnection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self._create_connection = connect

    class HTTPSConnection(http.client.HTTPSConnection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[call-overload]
            self._create_connection = connect

    context = ssl.create_default_context()
    context.sslsocket_class = DeadlineSSLSocket

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(HTTPConnection, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(HTTPSConnection, req, context=context)

    return HTTPHandler(), HTTPSHandler(context=context)


def _redirect_handler() -> urllib.request.HTTPRedirectHandler:
    """Redirects to http(s) only, never from https to http, at most ``_MAX_REDIRECTS``."""
    import urllib.parse
    import urllib.request

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = _MAX_REDIRECTS

        def redirect_request(  # type: ignore[override]  # noqa: PLR0917 - urllib's signature
            self,
            req: urllib.request.Request,
            fp: http.client.HTTPResponse,
            code: int,
            msg: str,
            headers: http.client.HTTPMessage,
            newurl: str,
        ) -> urllib.request.Request | None:
            old = urllib.parse.urlsplit(req.full_url).scheme.lower()
            new = urllib.parse.urlsplit(newurl).scheme.lower()
            if new not in ("http", "https") or (old == "https" and new == "http"):
                fp.close()
                raise RegistryUpdateError(
                    f"{req.full_url} redirects to {newurl!r}: only http(s) is followed, "
                    "never from https to http"
                )
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return Redirects()


def install_registry(
    source: str | os.PathLike[str],
    data_dir: Path,
    *,
    current_records: int = 0,
    min_records: int | None = None,
) -> Path:
    """Validate ``source`` and install it as ``data_dir/registry.sqlite3``; return that path.

    Refuses (``RegistryUpdateError``) a file that cannot be read within the
    bounds above, is not IANA's XML or CSV, has a wrong header or malformed
    rows (ports, protocols, dates), fewer than ``min_records`` records or
    fewer than 90% of ``current_records`` (the data in use), or more records
    or ports than any registry has (:mod:`portbook._book.build`).
    """
    from portbook._book.build import MIN_RECORDS, install_database, parse_registry

    data, name = fetch_source(source)
    floor = MIN_RECORDS if min_records is None else min_records
    built = parse_registry(data, name, min_records=floor)
    if len(built.records) < current_records * _MIN_FRACTION_OF_CURRENT:
        raise RegistryUpdateError(
            f"{name} has {len(built.records)} records, far fewer than the "
            f"{current_records} in use; refusing it as incomplete"
        )
    dest = data_dir / USER_REGISTRY_NAME
    install_database(built, dest)
    return dest
