"""`portbook serve` as a server that serves people: routes, limits, misbehaving clients, signals."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import portbook
from portbook import Socket
from portbook._serve.server import DashboardServer, parse_listen
from portbook._serve.source import Source
from tests.conftest import run_cli, run_portbook
from tests.serve.conftest import Program, get, serve_child, url_of


class _Server:
    """A DashboardServer running in a thread of this process, for the limits tests."""

    def __init__(
        self, source: Source | None = None, *, max_connections: int = 64, timeout: float = 10.0
    ) -> None:
        self.logged: list[str] = []
        self.server = DashboardServer(
            ("127.0.0.1", 0),
            source=source,
            log=self.logged.append,
            max_connections=max_connections,
            timeout=timeout,
        )
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()
        self.url = self.server.url

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server(max_connections=8, timeout=0.5)
    yield s
    s.close()


def _served_again(url: str, within: float = 10.0) -> bool:
    """True once ``url`` answers 200: connections past the cap are refused until slots free up."""
    deadline = time.monotonic() + within
    while get(url)[0] != 200:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        chunks = []
        while chunk := c.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- routes and contracts ------------------------------------------------------------------


def test_api_sockets_and_names_are_the_cli_json(server: _Server, tmp_path: Path) -> None:
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        mine.listen()
        port = mine.getsockname()[1]
        # The server keeps a reading for a second: ask until it has one with this listener.
        deadline = time.monotonic() + 10
        while True:
            status, headers, body = get(server.url + "api/sockets")
            served = json.loads(body)
            if any(s["local_port"] == port for s in served) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        printed = json.loads(run_cli("ls", "--json").stdout)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    # Same contract: the same keys, and the same record for a listener that stayed put
    # (the machine's other programs may come and go between the two readings).
    assert served and {tuple(s) for s in served} == {tuple(s) for s in printed}
    assert [s for s in served if s["local_port"] == port] == [
        s for s in printed if s["local_port"] == port
    ]
    assert len([s for s in printed if s["local_port"] == port]) == 1
    status, _, body = get(server.url + "api/names")
    assert status == 200 and isinstance(json.loads(body), list)


def test_api_names_is_names_json(tmp_path: Path) -> None:
    store = tmp_path / "names.sqlite3"
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(1)
    port = listening.getsockname()[1]
    with portbook.Store(store) as opened:
        portbook.assign("alpha", store=opened)
        portbook.assign("gamma", port=port, store=opened, listeners=lambda p, q: (False, ()))
    server = _Server(Source(str(store)))
    try:
        _, _, body = get(server.url + "api/names")
        printed = run_cli("names", "--json", "--store", str(store)).stdout
    finally:
        server.close()
        listening.close()
    served = json.loads(body)
    assert served == json.loads(printed)
    assert [n["listening"] for n in served] == [False, True] and served[1]["processes"]


@pytest.mark.ipv6
def test_it_listens_on_ipv6_loopback() -> None:
    if not portbook.ipv6_available():
        pytest.skip("no IPv6 on loopback")
    server = DashboardServer(("::1", 0))
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert server.url == f"http://[::1]:{server.port}/" and server.loopback
        assert get(server.url)[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_api_lookup_is_lookup_json(server: _Server) -> None:
    _, _, body = get(server.url + "api/lookup?port=443&protocol=tcp")
    assert json.loads(body) == json.loads(
        run_cli("lookup", "443", "--proto", "tcp", "--json").stdout
    )
    assert get(server.url + "api/lookup?port=x")[0] == 400
    assert get(server.url + "api/lookup?port=443&protocol=nope")[0] == 400


def test_pages_metrics_and_unknown_paths(server: _Server) -> None:
    status, headers, body = get(server.url)
    assert status == 200 and b"<title>portbook" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, _ = get(server.url + "static/" + name)
        assert status == 200 and headers["Content-Type"].startswith(kind)
    status, headers, body = get(server.url + "metrics")
    assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"portbook_listener_info" in body
    assert get(server.url + "static/../server.py")[0] == 404
    assert get(server.url + "nothing")[0] == 404


def test_it_is_read_only(server: _Server) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        reply = _raw(
            server.server.port,
            f"{method} /api/names HTTP/1.1\r\nHost: 127.0.0.1:{server.server.port}\r\n"
            "Content-Length: 2\r\n\r\n{}".encode(),
        )
        assert reply.startswith(b"HTTP/1.1 405") and b"Allow: GET, HEAD" in reply


def test_only_loopback_host_names_are_answered(server: _Server) -> None:
    """A page whose host name was made to resolve to 127.0.0.1 (DNS rebinding) is refused."""
    port = server.server.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert get(server.url + "api/sockets", host=host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1"):
        assert get(server.url + "api/sockets", host=host)[0] == 403, host


def test_head_sends_headers_only(server: _Server) -> None:
    port = server.server.port
    reply = _raw(
        port, f"HEAD / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head and body == b""


def test_kept_alive_connection_serves_many_requests(server: _Server) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=5)
    try:
        for path in ("/", "/api/sockets", "/api/names", "/metrics", "/static/app.js"):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200 and response.getheader("Content-Length")
            response.read()
    finally:
        conn.close()


def test_a_broken_store_is_a_500_said_once_and_metrics_go_on() -> None:
    class BrokenStore(Source):
        def names(self, listeners: list[Socket] | None = None) -> list[portbook.NameStatus]:
            raise portbook.StoreCorruptError("the store is not a portbook database")

    s = _Server(BrokenStore())
    try:
        for _ in range(3):
            status, _, body = get(s.url + "api/names")
            assert (status, body) == (500, b"the store is not a portbook database\n")
        status, _, body = get(s.url + "metrics")
        assert status == 200 and b'portbook_scrape_errors_total{part="names"} 1.0' in body
        assert get(s.url + "api/sockets")[0] == 200
    finally:
        s.close()
    assert s.logged == ["portbook: error: GET /api/names: the store is not a portbook database"]


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8694") == ("127.0.0.1", 8694)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("9000") == ("127.0.0.1", 9000)
    assert parse_listen("localhost:1") == ("127.0.0.1", 1)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("example.com:80", "1-5", "tcp/80", "127.0.0.1:99999", "nonsense"):
        with pytest.raises(portbook.UsageError, match="--listen"):
            parse_listen(bad)


# -- clients that misbehave ------------------------------------------------------------------


def test_concurrent_clients_are_all_answered(server: _Server) -> None:
    failures: list[object] = []

    def client(n: int) -> None:
        for i in range(15):
            path = ("", "api/sockets", "api/names", "metrics", "static/app.js")[(n + i) % 5]
            try:
                status = get(server.url + path)[0]
            except OSError as exc:
                failures.append(exc)
                continue
            if status != 200:
                failures.append(status)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]  # under the cap
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == [] and server.logged == []
    # 30 JSON requests in a few seconds, answered from at most a few readings.
    assert server.server.listeners.produced <= 6


def test_a_client_that_sends_nothing_or_half_a_request_is_dropped(server: _Server) -> None:
    port = server.server.port
    started = time.monotonic()
    idle = socket.create_connection(("127.0.0.1", port))
    half = socket.create_connection(("127.0.0.1", port))
    try:
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: never ends
        assert get(server.url)[0] == 200  # others are served meanwhile
        idle.settimeout(5)
        half.settimeout(5)
        assert idle.recv(100) == b""  # closed by the server after its timeout
        assert half.recv(100) == b""
        assert time.monotonic() - started < 4
    finally:
        idle.close()
        half.close()
    assert server.logged == []


def test_a_client_that_stops_reading_does_not_hold_its_thread() -> None:
    """A 10 MB answer to a client that never reads: the write times out, the slot comes back."""
    listeners = portbook.list_sockets(listening=True)

    class Big(Source):
        def listeners(self) -> list[Socket]:
            return listeners * (20_000 // max(1, len(listeners)) + 1)

    s = _Server(Big(), max_connections=2, timeout=0.5)
    try:
        stuck = []
        for _ in range(2):
            c = socket.create_connection(("127.0.0.1", s.server.port))
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(
                f"GET /api/sockets HTTP/1.1\r\nHost: 127.0.0.1:{s.server.port}\r\n\r\n".encode()
            )
            stuck.append(c)
        time.sleep(2.0)  # both writes have blocked and timed out by now
        assert get(s.url + "metrics")[0] == 200
        for c in stuck:
            c.close()
    finally:
        s.close()
    assert s.logged == []


def test_clients_that_disconnect_mid_answer_are_no_error(server: _Server) -> None:
    port = server.server.port
    for _ in range(30):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # a reset, before or while the answer is written
    assert _served_again(server.url)
    time.sleep(0.3)
    assert server.logged == []


def test_a_flood_past_the_cap_is_refused_and_served_again_after(server: _Server) -> None:
    port = server.server.port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        time.sleep(0.2)
        assert server.server.refused >= 40 - 8
        refused = 0
        for c in held:
            c.settimeout(3)
            try:
                reply = c.recv(200)
            except OSError:
                continue
            refused += reply.startswith(b"HTTP/1.1 503")
        assert refused >= 40 - 8 - 2
    finally:
        for c in held:
            c.close()
    assert _served_again(server.url)


def test_a_slow_reading_delays_only_those_who_wait_for_it() -> None:
    # The reading of the socket table waits until the test lets it go: whatever
    # answers meanwhile did not wait for it (no clock involved).
    go = threading.Event()

    class Slow(Source):
        calls = 0

        def sockets(self) -> list[Socket]:
            Slow.calls += 1
            go.wait(30)
            return super().sockets()

    s = _Server(Slow(), max_connections=16, timeout=10)
    try:
        results: list[int] = []
        scrapes = [
            threading.Thread(target=lambda: results.append(get(s.url + "metrics")[0]))
            for _ in range(5)
        ]
        for t in scrapes:
            t.start()
        while Slow.calls == 0:
            time.sleep(0.01)
        assert get(s.url)[0] == 200 and get(s.url + "api/names")[0] == 200
        assert not go.is_set() and results == []  # answered while the reading waits
        # A scraper that gives up early (Prometheus's scrape_timeout) harms no one.
        with pytest.raises(TimeoutError):
            get(s.url + "metrics", timeout=0.2)
        go.set()
        for t in scrapes:
            t.join(30)
        assert results == [200] * 5
        assert Slow.calls <= 3  # the five overlapping scrapes shared one reading
    finally:
        go.set()
        s.close()


def _threads_and_rss(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


@pytest.mark.slow
def test_a_flood_from_loopback_grows_neither_threads_nor_memory(tmp_path: Path) -> None:
    """A real `portbook serve`: 3 floods of 1,440 requests from 24 threads; 150 idle connections.

    The first flood may raise the resident set once (threads, malloc's arenas);
    the floods after it must not raise it further.
    """
    child = serve_child(tmp_path / "names.sqlite3")
    url = url_of(child)
    pid = child.proc.pid
    try:
        for _ in range(50):
            get(url + "api/sockets")
        threads_before, rss_before = _threads_and_rss(pid)

        def flood() -> None:
            for i in range(60):
                with contextlib.suppress(OSError):  # refused past the cap: allowed
                    get(url + ("api/sockets", "metrics", "", "api/names")[i % 4], timeout=10)

        after: list[int] = []
        for _ in range(3):
            workers = [threading.Thread(target=flood) for _ in range(24)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(120)
            after.append(_threads_and_rss(pid)[1])
        port = int(child.match.group(2))
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]
        time.sleep(0.5)
        threads_during, _ = _threads_and_rss(pid)
        for c in idle:
            c.close()
        assert _served_again(url)
        threads_after, rss_after = _threads_and_rss(pid)
    finally:
        child.stop()
    assert threads_during <= threads_before + 64 + 2  # capped at 64 connections
    assert threads_after <= threads_before + 64 + 2
    # KiB: a bounded first step (42 MiB from 31 here), then a plateau.
    assert after[0] - rss_before < 32 * 1024, (rss_before, after)
    assert max(*after[1:], rss_after) - after[0] < 6 * 1024, (rss_before, after, rss_after)


# -- starting and stopping ------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_it_cleanly(tmp_path: Path, sig: int) -> None:
    child = serve_child(tmp_path / "names.sqlite3")
    url = url_of(child)
    hanging = socket.create_connection(("127.0.0.1", int(child.match.group(2))))
    try:
        assert get(url + "metrics")[0] == 200
        started = time.monotonic()
        status = child.stop(sig)
    finally:
        hanging.close()
    assert status == 0, child.output
    assert time.monotonic() - started < 5
    assert child.output.splitlines()[-1] == "stopped"
    assert "Traceback" not in child.output


def test_ctrl_c_works_when_the_parent_ignored_it(tmp_path: Path) -> None:
    """A shell starts background jobs with SIGINT ignored; serve takes Ctrl-C back."""
    child = serve_child(
        tmp_path / "names.sqlite3",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert child.stop(signal.SIGINT) == 0, child.output


def test_a_port_in_use_is_one_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_portbook("serve", "--listen", f"127.0.0.1:{port}", timeout=30)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("portbook: error: cannot listen")


@pytest.mark.parametrize("listen", ["example.com:80", "127.0.0.1:70000", "abc"])
def test_bad_listen_is_a_usage_error(listen: str) -> None:
    done = run_portbook("serve", "--listen", listen)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--listen" in done.stderr


@pytest.mark.netns
def test_a_non_loopback_address_warns(tmp_path: Path) -> None:
    """0.0.0.0 inside a network namespace of the test's own: exposed to no real network."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux)")
    flags = ["--net"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--net"]
    probe = subprocess.run([unshare, *flags, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {probe.stderr.decode().strip()}")
    child = Program(
        [unshare, *flags, sys.executable, "-m", "portbook", "serve", "--listen", "0.0.0.0:0"],
        r"serving http://0\.0\.0\.0:\d+/",
    )
    assert child.stop(signal.SIGTERM) == 0, child.output
    warning = [line for line in child.lines if line.startswith("portbook: warning:")]
    assert len(warning) == 1 and "not loopback only" in warning[0] and "command line" in warning[0]
