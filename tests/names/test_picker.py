"""What a pick avoids, and why: taken ports, the ephemeral range, reserved and assigned ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portbook import (
    Family,
    Holder,
    LocalRanges,
    PortRange,
    Protocol,
    RangeExhaustedError,
    Store,
    UsageError,
    assign,
    bind_free_port,
    list_leases,
    pick_port,
    release_lease,
)
from portbook._machine import ipv6_available
from portbook._names.picker import PickPolicy, probe_free
from tests.conftest import run_cli
from tests.names._support import single, spare_port


def _policy(
    ephemeral: PortRange, reserved: tuple[PortRange, ...] = (), assigned: set[int] | None = None
) -> PickPolicy:
    taken = assigned or set()
    return PickPolicy(
        ranges=LocalRanges(ephemeral=ephemeral, reserved=reserved, source="test"),
        is_assigned=lambda port, proto: port in taken,
    )


def test_probe_sees_tcp_listener_on_loopback_only(tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        # The wildcard probe conflicts with any specific address on the port.
        assert not probe_free(port, [Protocol.TCP], [Family.INET])
        # TCP and UDP are separate name spaces.
        assert probe_free(port, [Protocol.UDP], [Family.INET])
    assert probe_free(port, [Protocol.TCP], [Family.INET])


def test_probe_sees_udp_socket_even_with_reuseaddr(tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # The other program set SO_REUSEADDR; the probe does not, so it is refused.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        assert not probe_free(port, [Protocol.UDP], [Family.INET])


@pytest.mark.ipv6
def test_probe_checks_each_family(tmp_path: Path) -> None:
    if not ipv6_available():
        pytest.skip("no IPv6 on this machine")
    port = spare_port(tmp_path)
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::1", port))
        s.listen()
        assert probe_free(port, [Protocol.TCP], [Family.INET])
        assert not probe_free(port, [Protocol.TCP], [Family.INET, Family.INET6])


def test_probe_refuses_a_port_in_time_wait(tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end lingers in TIME-WAIT
    client.close()
    server.close()
    # A server without SO_REUSEADDR could not bind now, so the port is not free.
    assert not probe_free(port, [Protocol.TCP], [Family.INET])


def test_pick_skips_a_taken_port(store: Store, tmp_path: Path) -> None:
    a, b = spare_port(tmp_path), spare_port(tmp_path)
    lo, hi = min(a, b), max(a, b)
    with socket.socket() as s:
        s.bind(("127.0.0.1", lo))
        s.listen()
        lease = pick_port(port_range=PortRange(lo, hi), near=lo, families=[4], store=store)
        assert lease.port != lo


def test_pick_leaves_out_ephemeral_reserved_and_assigned_ports(store: Store) -> None:
    policy = _policy(
        ephemeral=PortRange(30000, 30004),
        reserved=(PortRange(30006, 30006),),
        assigned={30007, 30008},
    )
    seen = set()
    for _ in range(2):
        seen.add(pick_port(port_range=PortRange(30000, 30009), store=store, policy=policy).port)
    assert seen == {30005, 30009}
    with pytest.raises(RangeExhaustedError, match="IANA-assigned"):
        pick_port(port_range=PortRange(30000, 30009), store=store, policy=policy)
    lease = pick_port(
        port_range=PortRange(30000, 30009), allow_assigned=True, store=store, policy=policy
    )
    assert lease.port in (30007, 30008)


def test_range_inside_the_ephemeral_range_says_so(store: Store) -> None:
    policy = _policy(ephemeral=PortRange(30000, 40000))
    with pytest.raises(RangeExhaustedError, match="ephemeral range"):
        pick_port(port_range=PortRange(31000, 31010), store=store, policy=policy)


def test_default_range_avoids_this_machines_ephemeral_range(store: Store) -> None:
    from portbook import is_assigned, local_ranges

    ranges = local_ranges()
    for _ in range(30):
        lease = pick_port(store=store)
        assert lease.port >= 1024
        assert lease.port not in ranges.ephemeral
        assert not ranges.is_reserved(lease.port)
        assert not is_assigned(lease.port, "tcp")  # the book's registry, for real


def test_near_a_registered_port_lands_beside_it(store: Store) -> None:
    from portbook import is_assigned

    assert is_assigned(8080, "tcp")
    lease = pick_port(near=8080, store=store)
    assert lease.port != 8080 and not is_assigned(lease.port, "tcp")
    assert abs(lease.port - 8080) < 50
    allowed = pick_port(near=8080, allow_assigned=True, families=[4], store=store)
    assert abs(allowed.port - 8080) < 50  # 8080 itself unless something holds it


def test_near_picks_the_closest_allowed_port(store: Store) -> None:
    policy = _policy(ephemeral=PortRange(60000, 60010), assigned={20000})
    assert pick_port(near=20000, store=store, policy=policy, families=[4]).port in (19999, 20001)


def test_named_and_leased_ports_are_never_picked(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    assign("api", port=port, store=store)
    with pytest.raises(RangeExhaustedError):
        pick_port(port_range=single(port), store=store)
    other = spare_port(tmp_path)
    pick_port(port_range=single(other), store=store)
    with pytest.raises(RangeExhaustedError):
        pick_port(port_range=single(other), store=store)


def test_ttl_lease_expires_and_the_port_comes_back(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    lease = pick_port(port_range=single(port), ttl=0.05, store=store)
    assert lease.pid is None and lease.expires is not None
    import time

    time.sleep(0.1)
    assert pick_port(port_range=single(port), store=store).port == port


def test_release_lease_gives_the_port_back(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    lease = pick_port(port_range=single(port), store=store)
    assert [x.port for x in list_leases(store=store)] == [port]
    release_lease(lease, store=store)
    assert list_leases(store=store) == []
    assert pick_port(port_range=single(port), store=store).port == port


def test_bad_arguments_are_usage_errors(store: Store) -> None:
    with pytest.raises(UsageError):
        pick_port(protocols=[], store=store)
    with pytest.raises(UsageError):
        pick_port(protocols="sctp", store=store)
    for ttl in (0, -1, float("nan"), float("inf"), 1e12):
        with pytest.raises(UsageError, match="TTL"):
            pick_port(ttl=ttl, store=store)
    with pytest.raises(UsageError):
        pick_port(near=80, port_range=PortRange(2000, 3000), store=store)
    with pytest.raises(UsageError, match="pid 1"):
        Holder(1, 0)


def test_bind_free_port_returns_a_bound_listening_socket(store: Store) -> None:
    sock, lease = bind_free_port(host="127.0.0.1", store=store)
    with sock:
        assert sock.getsockname() == ("127.0.0.1", lease.port)
        with socket.create_connection(("127.0.0.1", lease.port), timeout=5) as c:
            peer, _ = sock.accept()
            peer.close()
            assert c.getpeername()[1] == lease.port
    udp, lease2 = bind_free_port(protocol="udp", host="127.0.0.1", store=store)
    with udp:
        assert udp.type == socket.SOCK_DGRAM and udp.getsockname()[1] == lease2.port
    assert lease.port != lease2.port


def test_cli_pick_json_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTBOOK_STORE", str(tmp_path / "s.sqlite3"))
    result = run_cli("pick", "--json", "--both", "-4")
    assert result.status == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"port", "protocol", "families", "lease"}
    assert doc["protocol"] == "tcp+udp" and doc["families"] == [4]
    # Without --ttl the lease belongs to whoever ran portbook (its parent).
    lease = doc["lease"]
    assert lease == {
        "id": lease["id"],
        "pid": os.getppid(),
        "expires": None,
        "hold_until": lease["hold_until"],
    }
    assert lease["hold_until"].endswith("Z")  # kept at least a minute, whatever the shell does
    ttl = json.loads(run_cli("pick", "--json", "--ttl", "60").stdout)
    assert ttl["lease"]["pid"] is None and ttl["lease"]["expires"].endswith("Z")
    plain = run_cli("pick", "--udp")
    assert plain.status == 0 and plain.stdout.strip().isdigit()


def test_cli_pick_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTBOOK_STORE", str(tmp_path / "s.sqlite3"))
    for argv, status in [
        (("pick", "--range", "9000-80"), 2),
        (("pick", "--near", "99999"), 2),
        (("pick", "--tcp", "--udp"), 2),
        (("pick", "--ttl", "-3"), 2),
    ]:
        result = run_cli(*argv)
        assert result.status == status, (argv, result)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    port = spare_port(tmp_path)
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))
        s.listen()
        result = run_cli("pick", "--range", f"{port}-{port}")
    assert result.status == 1 and "no free port left" in result.stderr


PICK = f"{sys.executable} -m portbook pick"
# Each runs `portbook pick` twice through one way a shell hands a port on; the
# process that ran the first pick is gone before the second one starts.
CONSTRUCTS = {
    "pipe": f"{PICK} | tr -d '\\n'; echo; {PICK} | tr -d '\\n'; echo",
    "subshell": f'A=$({PICK}); B=$({PICK}); echo "$A"; echo "$B"',
    "sh -c": f"sh -c '{PICK}'; sh -c '{PICK}'",
    "xargs": f"printf '1\\n2\\n' | xargs -n1 sh -c '{PICK}' sh",
    "make": (f"printf 'all: a b\\na:\\n\\t@{PICK}\\nb:\\n\\t@{PICK}\\n' > Makefile && make -s -j1"),
}


@pytest.mark.parametrize("how", CONSTRUCTS)
def test_a_picked_port_is_not_picked_again_while_it_may_be_bound(how: str, tmp_path: Path) -> None:
    if how == "make" and shutil.which("make") is None:
        pytest.skip("needs make")
    done = subprocess.run(
        ["sh", "-c", CONSTRUCTS[how]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PORTBOOK_STORE": str(tmp_path / "s.sqlite3")},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, second = (int(line) for line in done.stdout.split())
    assert first != second
    # Both still held, though the processes that ran the picks have exited.
    held = {lease.port for lease in list_leases(store=Store(tmp_path / "s.sqlite3"))}
    assert {first, second} <= held


def test_the_grace_ends_and_a_port_nobody_bound_comes_back(tmp_path: Path) -> None:
    import sqlite3

    store = tmp_path / "s.sqlite3"
    done = subprocess.run(
        ["sh", "-c", f"{PICK} --range 20000-20999 --allow-assigned"],
        capture_output=True,
        text=True,
        env={**os.environ, "PORTBOOK_STORE": str(store)},
        timeout=60,
        check=True,
    )
    port = int(done.stdout)
    assert port in {lease.port for lease in list_leases(store=Store(store))}
    with sqlite3.connect(store) as conn:  # as if the minute were over
        conn.execute("UPDATE leases SET hold_until = 1 WHERE port = ?", (port,))
    assert port not in {lease.port for lease in list_leases(store=Store(store))}
