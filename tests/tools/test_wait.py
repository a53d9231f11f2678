"""wait: real listeners on loopback ports the kernel chose, opened and closed while waiting."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from portbook import WaitTimeoutError, ipv6_available
from portbook._exceptions import InvalidPortSpecError, UsageError
from portbook._ports import Protocol
from portbook._tools.wait import WaitTarget, parse_wait_target, wait_for_free, wait_for_port
from tests.conftest import run_cli, run_portbook

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket table")


@pytest.fixture
def reserved() -> Iterator[socket.socket]:
    """A TCP socket bound to a free loopback port but not listening: the port is ours,
    and nothing accepts connections on it until the test calls listen()."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def later(seconds: float, action: object) -> threading.Timer:
    timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
    timer.daemon = True
    timer.start()
    return timer


def test_parse_wait_target() -> None:
    assert parse_wait_target("8080") == WaitTarget("8080", 8080)
    assert parse_wait_target(":8080").host is None
    assert parse_wait_target("db:5432") == WaitTarget("db:5432", 5432, "db")
    assert parse_wait_target("[::1]:80").host == "::1"
    assert parse_wait_target("udp/53").protocol is Protocol.UDP
    assert parse_wait_target("80", host="example.org") == WaitTarget(
        "example.org:80", 80, "example.org"
    )
    assert parse_wait_target("http").port == 80  # a service of the book with one port
    for bad in ("8000-8100", "http-alt", "70000", "sctp/9"):
        with pytest.raises(InvalidPortSpecError):
            parse_wait_target(bad)
    with pytest.raises(UsageError):
        wait_for_port()


def test_open_is_noticed_when_listen_happens(reserved: socket.socket) -> None:
    port = reserved.getsockname()[1]
    later(0.15, lambda: reserved.listen(1))
    start = time.monotonic()
    waited = wait_for_port(f"127.0.0.1:{port}", timeout=5)
    assert 0.1 <= waited <= time.monotonic() - start + 0.01
    assert waited < 1.0


def test_timeout_names_the_target(reserved: socket.socket) -> None:
    port = reserved.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(WaitTimeoutError) as info:
        wait_for_port(port, timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 1.5
    assert info.value.pending == (str(port),)
    assert str(port) in str(info.value)
    assert isinstance(info.value, TimeoutError)


def test_listener_on_another_address_does_not_satisfy(reserved: socket.socket) -> None:
    reserved.listen(1)
    port = reserved.getsockname()[1]
    # 127.0.0.2 is loopback too, but nothing takes connections to it on this port.
    with pytest.raises(WaitTimeoutError):
        wait_for_port(f"127.0.0.2:{port}", timeout=0.1)
    if ipv6_available():
        with pytest.raises(WaitTimeoutError):
            wait_for_port(f"[::1]:{port}", timeout=0.1)
    assert wait_for_port(f"localhost:{port}", f"127.0.0.1:{port}", port, timeout=2) < 1


def test_several_targets_all_must_open(reserved: socket.socket) -> None:
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    try:
        p1, p2 = reserved.getsockname()[1], other.getsockname()[1]
        reserved.listen(1)
        with pytest.raises(WaitTimeoutError) as info:
            wait_for_port(p1, p2, timeout=0.2)
        assert info.value.pending == (str(p2),)
        later(0.1, lambda: other.listen(1))
        seen: list[str] = []
        wait_for_port(p1, p2, timeout=5, on_ready=lambda t, _s: seen.append(str(t)))
        assert sorted(seen) == sorted([str(p1), str(p2)])
    finally:
        other.close()


def test_closed_is_noticed_when_the_listener_goes() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    with pytest.raises(WaitTimeoutError) as info:
        wait_for_free(port, timeout=0.1)
    assert "listener" in str(info.value)
    later(0.1, listener.close)
    assert wait_for_free(port, timeout=5) < 1.0
    # Free really means bindable.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_closed_waits_for_time_wait_unless_reuseaddr() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    # The server side closes first, so the server's port is left in TIME-WAIT.
    conn.close()
    time.sleep(0.05)
    client.close()
    listener.close()
    # Refusing connections already, but not free to bind without SO_REUSEADDR.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(WaitTimeoutError) as info:
        wait_for_free(port, timeout=0.1)
    assert "TIME-WAIT" in str(info.value)
    with socket.socket() as probe, pytest.raises(OSError, match="in use"):
        probe.bind(("127.0.0.1", port))
    assert wait_for_free(port, timeout=2, reuseaddr=True) < 1.0


def test_connect_probe_for_other_hosts(reserved: socket.socket) -> None:
    port = reserved.getsockname()[1]
    # connect=True probes the way another host is probed: by connecting.
    with pytest.raises(WaitTimeoutError) as info:
        wait_for_port(f"127.0.0.1:{port}", timeout=0.15, connect=True)
    assert "refused" in str(info.value).lower()
    later(0.1, lambda: reserved.listen(4))
    assert wait_for_port(f"127.0.0.1:{port}", timeout=5, connect=True) < 1.0
    assert wait_for_free(f"127.0.0.2:{port}", timeout=2, connect=True) < 1.0


def test_udp_port_of_this_machine() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        assert wait_for_port(f"udp/127.0.0.1:{port}", timeout=2) < 1
    with pytest.raises(UsageError):
        wait_for_port(f"udp/{port}", host="example.invalid", timeout=0.1)


# ---------------------------------------------------------------------- CLI


def test_cli_timeout_exit_1_and_names_target(reserved: socket.socket) -> None:
    port = reserved.getsockname()[1]
    result = run_cli("wait", "-t", "0.1", f"127.0.0.1:{port}")
    assert result.status == 1
    assert f"127.0.0.1:{port}" in result.stderr and result.stderr.count("\n") == 1


def test_cli_json_says_which_target_was_ready_and_when(reserved: socket.socket) -> None:
    port = reserved.getsockname()[1]
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        open_port = other.getsockname()[1]
        result = run_cli("wait", "-t", "0.3", "--json", f"127.0.0.1:{open_port}", str(port))
    assert result.status == 1 and result.stderr.count("\n") == 1
    report = json.loads(result.stdout)
    assert report["condition"] == "open" and report["satisfied"] is False
    assert report["timeout"] == 0.3
    ready, pending = report["targets"]
    assert ready["host"] == "127.0.0.1" and ready["port"] == open_port and ready["ready"] is True
    assert 0 <= ready["seconds"] < 0.3
    assert pending == {
        "target": str(port),
        "host": None,
        "port": port,
        "protocol": "tcp",
        "ready": False,
        "seconds": None,
    }
    reserved.listen()
    done = json.loads(run_cli("wait", "-t", "5", "--json", str(port)).stdout)
    assert done["satisfied"] is True and done["targets"][0]["ready"] is True


def test_cli_wait_for_it_habits_and_command(reserved: socket.socket) -> None:
    reserved.listen(1)
    port = reserved.getsockname()[1]
    code = "import sys; sys.exit(7)"
    result = run_portbook(
        "wait", "-h", "127.0.0.1", "-p", str(port), "-t", "5", "--", sys.executable, "-c", code
    )
    assert result.returncode == 7, result.stderr
    assert "is open after" in result.stderr
    quiet = run_portbook(
        "wait", "-q", f"127.0.0.1:{port}", "--", sys.executable, "-c", "print('ran')"
    )
    assert quiet.returncode == 0 and quiet.stdout == "ran\n" and quiet.stderr == ""


def test_cli_becomes_the_command(reserved: socket.socket) -> None:
    # Like wait-for-it's exec: the command replaces portbook, so its parent is ours.
    reserved.listen(1)
    port = reserved.getsockname()[1]
    code = "import os; print(os.getppid())"
    result = run_portbook("wait", "-q", str(port), "--", sys.executable, "-c", code)
    assert result.returncode == 0 and int(result.stdout) == os.getpid()
    missing = run_portbook("wait", "-q", str(port), "--", "no-such-command-here")
    assert missing.returncode == 127 and "command not found" in missing.stderr
    in_process = run_cli("wait", "-q", str(port), "--", sys.executable, "-c", "raise SystemExit(3)")
    assert in_process.status == 3


def test_cli_strict_skips_command_on_timeout(reserved: socket.socket) -> None:
    port = reserved.getsockname()[1]
    marker = "print('ran')"
    loose = run_portbook("wait", "-t", "0.1", str(port), "--", sys.executable, "-c", marker)
    assert loose.returncode == 0 and loose.stdout == "ran\n"  # wait-for-it runs it anyway
    strict = run_portbook("wait", "-s", "-t", "0.1", str(port), "--", sys.executable, "-c", marker)
    assert strict.returncode == 1 and strict.stdout == ""
    assert "strict" in strict.stderr


def test_cli_closed_with_a_child_process_server() -> None:
    # The child binds and listens on a kernel-chosen port, reports it, and exits
    # after a short while; wait --closed must notice its going.
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,time\n"
            "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n"
            "print(s.getsockname()[1], flush=True); time.sleep(0.3)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        assert run_cli("wait", "-t", "5", str(port)).status == 0
        result = run_cli("wait", "--closed", "-t", "5", str(port))
        assert result.status == 0, result.stderr
        assert "is free after" in result.stderr
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["wait"],
        ["wait", "-t", "-1", "80"],
        ["wait", "--reuseaddr", "80"],
        ["wait", "99999"],
        ["wait", "80-90"],
    ],
)
def test_cli_usage_errors(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.status == 2
    assert result.stderr.startswith("portbook: error:") and result.stderr.count("\n") == 1


def test_watching_does_not_load_the_book(reserved: socket.socket) -> None:
    # The registry costs tens of milliseconds to load: paid after the listener
    # appears, it would be the delay. The poll reads raw facts only.
    reserved.listen(1)
    port = reserved.getsockname()[1]
    code = (
        "import sys\n"
        "from portbook._tools.wait import wait_for_port, wait_for_free\n"
        f"wait_for_port('127.0.0.1:{port}', {port}, timeout=5)\n"
        "try:\n"
        f"    wait_for_free({port}, timeout=0.05)\n"
        "except TimeoutError:\n"
        "    pass\n"
        "print('portbook._book.book' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


@pytest.mark.ipv6
@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 on loopback")
def test_ipv6_listener() -> None:
    with socket.socket(socket.AF_INET6) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert wait_for_port(f"[::1]:{port}", f"localhost:{port}", timeout=2) < 1
        with pytest.raises(WaitTimeoutError):
            wait_for_port(f"127.0.0.1:{port}", timeout=0.1)
