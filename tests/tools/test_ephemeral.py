"""ephemeral: real loopback connections counted per destination, against this machine's range."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from portbook._exceptions import UsageError
from portbook._joined import list_sockets
from portbook._machine import LocalRanges
from portbook._ports import PortRange
from portbook._tools.ephemeral import DestinationUsage, ephemeral_usage, summarize_ephemeral
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket table")


@dataclass
class Clients:
    port: int
    client_ports: list[int]
    clients: list[socket.socket]
    accepted: list[socket.socket]


@pytest.fixture
def clients() -> Iterator[Clients]:
    """A loopback server and five client connections to it."""
    with ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        socks, accepted = [], []
        for _ in range(5):
            c = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            conn, _ = server.accept()
            accepted.append(stack.enter_context(conn))
            socks.append(c)
        yield Clients(port, [c.getsockname()[1] for c in socks], socks, accepted)


def ours(d: DestinationUsage, c: Clients) -> bool:
    return d.remote_port == c.port and str(d.remote_address) == "127.0.0.1"


def test_counts_outgoing_connections_per_destination(clients: Clients) -> None:
    usage = ephemeral_usage()
    found = [d for d in usage.destinations if ours(d, clients)]
    assert len(found) == 1
    dest = found[0]
    assert str(dest.remote_address) == "127.0.0.1"
    assert dest.in_use == 5 and dest.time_wait == 0
    # The server's accepted sockets (local port = the server's) are not outgoing:
    # over the fixture's sockets (both ends), the clients' destination is the only
    # one. (Not all of this process's: an earlier test's connection may linger.)
    mine = {clients.port, *clients.client_ports}
    own = [s for s in list_sockets(protocols=["tcp"], pid=os.getpid()) if s.local_port in mine]
    assert [
        (str(d.remote_address), d.remote_port)
        for d in summarize_ephemeral(own, usage.ranges).destinations
    ] == [("127.0.0.1", clients.port)]
    assert dest.capacity == usage.capacity - usage.bound
    assert usage.capacity == len(usage.ranges.ephemeral) - sum(
        len(r) for r in usage.ranges.reserved if r.first in usage.ranges.ephemeral
    )


def test_time_wait_counts(clients: Clients) -> None:
    # The client closes first, so the client side keeps TIME-WAIT on its port.
    clients.clients[0].close()
    clients.accepted[0].close()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        dest = next(d for d in ephemeral_usage().destinations if ours(d, clients))
        if dest.time_wait == 1:
            break
        time.sleep(0.02)
    assert dest.time_wait == 1 and dest.in_use == 5


def test_warning_near_exhaustion(clients: Clients) -> None:
    # A range where only our five client ports are usable: 100% used.
    lo, hi = min(clients.client_ports), max(clients.client_ports)
    reserved = tuple(PortRange(p, p) for p in range(lo, hi + 1) if p not in clients.client_ports)
    ranges = LocalRanges(PortRange(lo, hi), reserved, "test")
    socks = list_sockets(protocols=["tcp"], port=PortRange(lo, hi), owners=False)
    usage = summarize_ephemeral(socks, ranges, threshold=0.8)
    dest = next(d for d in usage.destinations if ours(d, clients))
    assert usage.capacity == 5 and dest.ratio == 1.0
    assert any(str(clients.port) in w for w in usage.warnings)
    relaxed = summarize_ephemeral(socks, LocalRanges(PortRange(lo, hi + 100), (), "test"))
    assert not [w for w in relaxed.warnings if str(clients.port) in w]
    with pytest.raises(UsageError):
        summarize_ephemeral(socks, ranges, threshold=0)


def test_cli_json_and_text(clients: Clients) -> None:
    result = run_cli("ephemeral", "--json")
    assert result.status == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"ephemeral", "reserved", "capacity", "destinations", "warnings", "udp"} <= set(data)
    ours = [
        d
        for d in data["destinations"]
        if d["remote_port"] == clients.port and d["remote_address"] == "127.0.0.1"
    ]
    assert ours and ours[0]["in_use"] == 5 and ours[0]["protocol"] == "tcp"
    text = run_cli("ephemeral", "--top", "100000")
    assert text.status == 0 and f"127.0.0.1:{clients.port}" in text.stdout
    assert "ephemeral range" in text.stdout


@pytest.mark.parametrize("argv", [["ephemeral", "--threshold", "0"], ["ephemeral", "--top", "-1"]])
def test_cli_usage_errors(argv: list[str]) -> None:
    assert run_cli(*argv).status == 2


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss")
def test_counts_agree_with_ss(clients: Clients) -> None:
    clients.clients[1].close()
    clients.accepted[1].close()  # one in TIME-WAIT, four established
    ranges = ephemeral_usage().ranges
    out = subprocess.run(
        ["ss", "-Htn", "state", "all", "dst", f"127.0.0.1:{clients.port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # The local address is the second-to-last column (the peer is last).
    local_ports = {int(line.split()[-2].rsplit(":", 1)[1]) for line in out.splitlines()}
    expected = {p for p in local_ports if ranges.is_ephemeral(p)}
    dest = next(d for d in ephemeral_usage().destinations if ours(d, clients))
    assert dest.in_use == len(expected) == 5
    tw = subprocess.run(
        ["ss", "-Htn", "state", "time-wait", "dst", f"127.0.0.1:{clients.port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert dest.time_wait == len(tw.splitlines())


_ONE_OF_EACH = """
import socket, subprocess, sys
tcp = socket.socket(); tcp.bind(("0.0.0.0", 0))  # bound only: lost to every destination
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 0))
done = subprocess.run([sys.executable, "-m", "portbook", "ephemeral"], capture_output=True,
                      text=True, check=False)
print(done.stdout, done.stderr, end="")
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_counts_of_one_are_singular() -> None:
    """In a network namespace of the test's own: exactly one bound TCP and one UDP port."""
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", sys.executable, "-c", _ONE_OF_EACH],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split("  ")[0]: line.split("  ")[-1].strip() for line in done.stdout.splitlines()}
    assert lines["held by bind()"] == "1 port of the range (lost to every destination)", done.stdout
    assert lines["udp"] == "1 local port in use (0.0%)", done.stdout
    assert lines["usable"].endswith(" ports per destination"), done.stdout
