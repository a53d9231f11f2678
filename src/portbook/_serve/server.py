"""The HTTP server of ``portbook serve``: ``/metrics``, the dashboard and its JSON API.

Read-only: it answers GET and HEAD only, and no route kills, assigns or
changes anything. Routes:

- ``/metrics``: Prometheus's text format (:mod:`portbook._serve.metrics`);
- ``/``: the dashboard page, its script and style from the package's
  ``static/`` folder; nothing is loaded from anywhere else;
- ``/api/sockets``: exactly ``portbook ls --json``; ``/api/names``: exactly
  ``portbook names --json``; ``/api/lookup?port=N[&protocol=P]``: exactly
  ``portbook lookup N --json``.

A server that serves people stays up whatever its clients do:

- **Connections are capped** (``max_connections``): each gets a thread, and
  one past the cap is answered ``503`` at once and closed, so a flood cannot
  make threads (and memory) without bound.
- **Every connection has a timeout** (``timeout``) on each read and write: a
  client that sends half a request, stops reading, or keeps an idle
  connection open, is dropped after it instead of holding its thread.
- **Readings are shared** (:class:`~portbook._serve.source.Fresh`): requests
  that overlap share one reading of the socket table; the listeners behind
  the JSON answers are kept one second, so many tabs polling cost one
  reading a second. A slow reading delays only the requests that wait for it.
- **HTTP/1.1 with Content-Length on every answer**: the page polls over one
  kept-alive connection rather than a new one (and a TIME-WAIT socket in the
  table it shows) per poll. Polling rather than server-sent events: a stream
  would hold a thread, and one of the browser's six connections, per tab.
- **DNS rebinding**: bound to loopback, it answers only requests whose
  ``Host`` names loopback (``127.0.0.1``, ``[::1]``, ``localhost``), so a web
  page whose own host name was made to resolve to 127.0.0.1 cannot read the
  command lines. Every answer forbids framing and any script or style but its own.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import portbook
from portbook import UsageError
from portbook._serve.metrics import CONTENT_TYPE, exposition, make_registry
from portbook._serve.source import Fresh, Source

__all__ = [
    "DEFAULT_LISTEN",
    "DashboardServer",
    "is_loopback",
    "limit_malloc_arenas",
    "parse_listen",
]

DEFAULT_LISTEN = "127.0.0.1:8694"
MAX_CONNECTIONS = 64
TIMEOUT = 10.0
# How long a JSON answer is reused: the page polls every 2 seconds by default.
API_MAX_AGE = 1.0

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
)
_JSON = "application/json; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[V6ADDR]:PORT``, ``:PORT`` or ``PORT`` as (address, port).

    Without an address it is 127.0.0.1; ``localhost`` is 127.0.0.1 too. Port 0
    lets the kernel choose. Raises :class:`portbook.UsageError`.
    """
    try:
        spec = portbook.parse_port_spec(text)
    except UsageError as exc:
        raise UsageError(f"--listen {text!r}: give ADDR:PORT, e.g. 127.0.0.1:8694") from exc
    if spec.ports is None or spec.ports.first != spec.ports.last or spec.protocol is not None:
        raise UsageError(f"--listen {text!r}: give one port, e.g. 127.0.0.1:8694")
    host = spec.host
    if host is None or host == "localhost":
        return "127.0.0.1", spec.ports.first
    if isinstance(host, str):
        raise UsageError(f"--listen {text!r}: give an IP address (or localhost), not a host name")
    return str(host), spec.ports.first


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Ask glibc's malloc for at most ``arenas`` arenas in this process; True if it agreed.

    glibc gives threads that allocate at the same moment arenas of their own,
    up to 8 per core, and keeps what each arena once held. For a server whose
    threads come and go with its clients that is memory it never gives back:
    after a flood of 24 concurrent clients, `portbook serve` stayed at 62-67 MiB
    instead of 31 MiB; with 2 arenas it stays at 42 MiB, flood after flood
    (tests/serve/test_server.py). Elsewhere (musl, other systems) nothing happens.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_arena_max = -8  # glibc's malloc.h
    return bool(mallopt(m_arena_max, arenas))


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1)."""
    return ipaddress.ip_address(address).is_loopback


class DashboardServer(ThreadingHTTPServer):
    """``portbook serve``'s server; see the module docstring for what it promises.

    ``source`` is what it reports (the seam tests replace); ``max_connections``
    and ``timeout`` bound what clients may hold. ``serve_forever`` runs it;
    ``shutdown`` (from another thread) and ``server_close`` stop it.
    """

    daemon_threads = True  # a client mid-request never delays the exit
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        source: Source | None = None,
        max_connections: int = MAX_CONNECTIONS,
        timeout: float = TIMEOUT,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        chosen = source if source is not None else Source()
        self.source = chosen
        self.client_timeout = timeout
        self.loopback = is_loopback(address[0])
        self.registry = make_registry(chosen)
        # The page polls both every time: one reading of the listeners serves both.
        self.listeners = Fresh(chosen.listeners, API_MAX_AGE)
        self.sockets_json = Fresh(lambda: portbook.sockets_json(self.listeners.get()))
        self.names_json = Fresh(
            lambda: json.dumps(
                [s.to_json() for s in chosen.names(self.listeners.get())], ensure_ascii=False
            )
        )
        self.static = {name: _read_static(name) for name in _STATIC}
        self._slots = threading.BoundedSemaphore(max_connections)
        self._log = log or (lambda line: sys.stderr.write(line + "\n"))
        self._logged: dict[str, None] = {}
        self._logged_lock = threading.Lock()
        self.refused = 0  #: connections refused past the cap (tests read it)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # [::]:PORT means IPv6 only, as the user wrote it; 0.0.0.0 is separate.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Not HTTPServer.server_bind: it asks socket.getfqdn() for a name, a reverse
        # DNS lookup (traffic, and seconds where DNS is slow) for a name never used.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line on stderr instead of socketserver's traceback; a client that left is no news."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # reset, broken pipe, timed out: the client's doing
            return
        self._log(f"portbook: error: answering {client_address[0]}: {exc!r}")

    def log_once(self, line: str) -> None:
        """``line`` on the log the first time only: a page polling a broken store says it once."""
        with self._logged_lock:
            if line in self._logged:
                return
            if len(self._logged) >= 100:  # bounded: forget the oldest
                del self._logged[next(iter(self._logged))]
            self._logged[line] = None
        self._log(line)


def _refuse(request: socket.socket) -> None:
    body = b"too many connections; try again\n"
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    try:
        # Never wait for this client: the accepting thread must stay free.
        request.setblocking(False)
        request.send(head.encode() + body)
    except OSError:
        pass


def _read_static(name: str) -> bytes:
    return files("portbook._serve").joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "portbook"
    sys_version = ""
    server: DashboardServer

    def setup(self) -> None:
        super().setup()
        # On every read and write, between kept-alive requests too.
        self.connection.settimeout(self.server.client_timeout)

    def version_string(self) -> str:
        return "portbook"  # not Python's version: nothing a client needs

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: every poll of every tab would be a line

    # -- routes -------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._host_allowed():
            self._send(HTTPStatus.FORBIDDEN, _TEXT, b"this server answers only to loopback\n")
            return
        url = urlsplit(self.path)
        route = self._ROUTES.get(url.path)
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, _TEXT, b"not found\n")
            return
        try:
            route(self, parse_qs(url.query))
        except OSError:
            raise  # the client went away: socketserver closes the connection
        except Exception as exc:
            # Every route computes its whole answer before writing any of it,
            # so nothing has been sent yet: the client gets a 500, not a cut reply.
            self.server.log_once(f"portbook: error: GET {url.path}: {exc}")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, _TEXT, f"{exc}\n".encode())

    def do_HEAD(self) -> None:
        self.do_GET()

    def _refuse_method(self) -> None:
        # A body we do not read would be taken for the next request: close.
        self.close_connection = True
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            _TEXT,
            b"read-only: GET and HEAD only\n",
            extra=(("Allow", "GET, HEAD"),),
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _metrics(self, query: dict[str, list[str]]) -> None:
        self._send(HTTPStatus.OK, CONTENT_TYPE, exposition(self.server.registry))

    def _page(self, query: dict[str, list[str]]) -> None:
        self._static("index.html")

    def _static(self, name: str) -> None:
        self._send(HTTPStatus.OK, _STATIC[name], self.server.static[name])

    def _sockets(self, query: dict[str, list[str]]) -> None:
        self._send(HTTPStatus.OK, _JSON, self.server.sockets_json.get().encode())

    def _names(self, query: dict[str, list[str]]) -> None:
        self._send(HTTPStatus.OK, _JSON, self.server.names_json.get().encode())

    def _lookup(self, query: dict[str, list[str]]) -> None:
        port = query.get("port", [""])[0]
        protocol = query.get("protocol", [None])[0]
        if not port.isdigit():
            self._send(HTTPStatus.BAD_REQUEST, _TEXT, b"give ?port=N\n")
            return
        try:
            services = portbook.lookup(int(port), protocol)
        except UsageError as exc:
            self._send(HTTPStatus.BAD_REQUEST, _TEXT, f"{exc}\n".encode())
            return
        body = json.dumps([s.to_json() for s in services], ensure_ascii=False)
        self._send(HTTPStatus.OK, _JSON, body.encode())

    _ROUTES: ClassVar[dict[str, Callable[[_Handler, dict[str, list[str]]], None]]] = {
        "/metrics": _metrics,
        "/": _page,
        "/index.html": _page,
        "/static/app.js": lambda h, q: h._static("app.js"),
        "/static/style.css": lambda h, q: h._static("style.css"),
        "/api/sockets": _sockets,
        "/api/names": _names,
        "/api/lookup": _lookup,
    }

    # -- helpers --------------------------------------------------------------

    def _host_allowed(self) -> bool:
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name, _, port = host.rpartition(":")
        if not name or name.startswith("[") != name.endswith("]"):
            name, port = host, "80"  # no port given (a colon inside [::1] is no port)
        return name in _LOOPBACK_HOSTS and port == str(self.server.port)

    def _send(
        self,
        status: HTTPStatus,
        content_type: str,
        body: bytes,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (*_SECURITY_HEADERS, *extra):
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
