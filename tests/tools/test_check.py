"""check: for each reason a port cannot be bound, make it happen for real, and let bind() judge.

Every test opens the sockets itself on loopback (port 0 or a port the kernel
just gave), asks ``check_port`` (and the CLI), and then tries the same
``bind()`` the check describes: it must fail exactly when check says so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from portbook import Store, assign, check_port, ipv6_available, local_ranges
from tests.conftest import run_cli, run_portbook

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux rules")


# A loopback address (all of 127.0.0.0/8 is lo on Linux) that no other test binds.
_OWN_SOURCE = "127.77.0.1"


def _binds(port: int, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> bool:
    """Whether a bind() to the wildcard address works now, as check's verdict means it."""
    with socket.socket(family, kind) as s:
        try:
            s.bind(("0.0.0.0" if family == socket.AF_INET else "::", port))
        except OSError:
            return False
    return True


def _kinds(port: int, **kwargs: object) -> dict[int, set[str]]:
    """family -> the kinds of reasons check gives (for TCP unless asked)."""
    return {c.family.value: {r.kind for r in c.reasons} for c in check_port(port, **kwargs)}  # type: ignore[arg-type]


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def test_a_free_port_is_bindable_and_bind_agrees(sockets: list[socket.socket]) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    checks = check_port(port, families=[4])
    assert checks[0].bindable and not any(r.blocks for r in checks[0].reasons)
    assert _binds(port)
    assert run_cli("check", str(port), "-4").status == 0


def test_a_listener_is_named_with_its_process(sockets: list[socket.socket]) -> None:
    s = socket.socket()
    sockets.append(s)
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    (c,) = check_port(port, families=[4])
    assert not c.bindable and c.error == "EADDRINUSE"
    (reason,) = [r for r in c.reasons if r.blocks]
    assert reason.kind == "listener" and f"[{os.getpid()}]" in reason.message
    assert not _binds(port)
    shown = run_cli("check", str(port), "-4")
    assert shown.status == 1 and f"listens on 127.0.0.1:{port}" in shown.stdout


def test_a_bound_only_socket_takes_the_port(sockets: list[socket.socket]) -> None:
    s = socket.socket()
    sockets.append(s)
    s.bind(("127.0.0.1", 0))  # neither listening nor connected
    port = s.getsockname()[1]
    assert "bound" in _kinds(port, families=[4])[4]
    assert not _binds(port)
    listed = run_cli("ls", "--all", "--port", str(port), "--json")
    assert [x["state"] for x in json.loads(listed.stdout)] == ["CLOSE"]


def test_a_connection_holds_its_source_port(sockets: list[socket.socket]) -> None:
    server = socket.socket()
    sockets.append(server)
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.socket()
    sockets.append(client)
    client.connect(server.getsockname())
    sockets.append(server.accept()[0])
    port = client.getsockname()[1]
    assert "connection" in _kinds(port, families=[4])[4]
    assert not _binds(port)


def test_time_wait_blocks_a_bind_without_reuseaddr(sockets: list[socket.socket]) -> None:
    server = socket.socket()
    sockets.append(server)
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # A loopback source address of its own: the bind over TIME-WAIT below then meets
    # no other test's socket that happens to have the same port number on 127.0.0.1.
    client.bind((_OWN_SOURCE, 0))
    client.connect(server.getsockname())
    accepted, _ = server.accept()
    port = client.getsockname()[1]
    client.close()  # the side that closes first keeps TIME-WAIT
    time.sleep(0.05)
    accepted.close()
    (c,) = check_port(port, families=[4])
    assert "time-wait" in {r.kind for r in c.reasons} and not c.bindable
    assert "60 s" in next(r.message for r in c.reasons if r.kind == "time-wait")
    assert not _binds(port)
    # What the reason says: where both set SO_REUSEADDR, a bind goes over it.
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind((_OWN_SOURCE, port))


@pytest.mark.skipif(not ipv6_available(), reason="needs IPv6")
def test_a_dual_stack_socket_takes_the_ipv4_port(sockets: list[socket.socket]) -> None:
    s = socket.socket(socket.AF_INET6)
    sockets.append(s)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 0))
    s.listen()
    port = s.getsockname()[1]
    assert "dual-stack" in _kinds(port, families=[4])[4]
    assert not _binds(port, socket.AF_INET)
    # and the other way round: an IPv6 program on :: would take IPv4 too
    v4 = socket.socket()
    sockets.append(v4)
    v4.bind(("127.0.0.1", 0))
    v4.listen()
    other = v4.getsockname()[1]
    assert "dual-stack" in _kinds(other, families=[6])[6]
    assert not _binds(other, socket.AF_INET6)


def test_a_udp_socket_blocks_udp_only(sockets: list[socket.socket]) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(s)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    by_protocol = {
        c.protocol.value: c for c in check_port(port, protocols=["tcp", "udp"], families=[4])
    }
    assert not by_protocol["udp"].bindable and "udp" in {r.kind for r in by_protocol["udp"].reasons}
    assert not _binds(port, kind=socket.SOCK_DGRAM)
    assert by_protocol["tcp"].bindable == _binds(port)


def test_the_ephemeral_range_is_a_fact_not_a_refusal() -> None:
    ranges = local_ranges()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # the kernel's own pick: in the ephemeral range
        port = s.getsockname()[1]
    assert port in ranges.ephemeral
    (c,) = check_port(port, families=[4])
    (fact,) = [r for r in c.reasons if r.kind == "ephemeral"]
    assert not fact.blocks and c.bindable and _binds(port)


def test_names_and_leases_are_facts(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        assign("api", port=port, store=store)
        (c,) = check_port(port, families=[4], store=store)
    (fact,) = [r for r in c.reasons if r.kind == "name"]
    assert "'api'" in fact.message and not fact.blocks and c.bindable
    shown = run_portbook("check", "api", "-4", env={"PORTBOOK_STORE": str(tmp_path / "s.sqlite3")})
    assert shown.returncode == 0 and f"0.0.0.0:{port}" in shown.stdout


# The interpreter may live where another user cannot read it: the child loads
# everything by a first run as root, then drops to nobody.
PRIVILEGED = (
    "import io, os, sys\n"
    "from portbook._cli import main\n"
    "from portbook._cli._output import Output\n"
    "main(['check', sys.argv[1], '-4', '--json'], Output(io.StringIO(), io.StringIO()))\n"
    "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
    "sys.exit(main(['check', sys.argv[1], '-4', '--json']))"
)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_privileged_port_for_a_user_without_the_capability(tmp_path: Path) -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as fh:
        start = int(fh.read())
    port = next(p for p in range(start - 1, 0, -1) if _binds(p))  # free, below the line
    done = subprocess.run(
        [sys.executable, "-c", PRIVILEGED, str(port)],
        capture_output=True,
        text=True,
        env={**os.environ, "PORTBOOK_STORE": str(tmp_path / "none.sqlite3")},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (checked,) = json.loads(done.stdout)["checks"]
    assert checked["error"] == "EACCES"
    (reason,) = [r for r in checked["reasons"] if r["blocks"]]
    assert reason["kind"] == "privileged" and "CAP_NET_BIND_SERVICE" in reason["message"]


@pytest.mark.root
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_a_reserved_port_is_a_fact_in_a_namespace_of_its_own() -> None:
    # ip_local_reserved_ports is per network namespace: set it in one of the test's own.
    script = (
        "echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null; ip link set lo up; "
        "echo 40404 > /proc/sys/net/ipv4/ip_local_reserved_ports && "
        f"exec {sys.executable} -m portbook check 40404 -4 --json"
    )
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "unshare" in done.stderr:
        pytest.skip(f"no network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    (checked,) = json.loads(done.stdout)["checks"]
    kinds = {r["kind"]: r for r in checked["reasons"]}
    assert checked["bindable"] and not kinds["reserved"]["blocks"]
