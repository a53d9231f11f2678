"""The route decision against real delivery: every case is built with real sockets on
loopback, and the answer is checked against the socket that really accepts the
connection or receives the datagram."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from portbook import ipv6_available
from portbook._exceptions import InvalidPortSpecError, UsageError
from portbook._ports import Protocol
from portbook._tools.route import Endpoint, Route, RouteRule, parse_route_args, route, route_packet
from tests._sockrec import OwnSockets, Sockets, inode, which_accepts, which_receives
from tests.conftest import run_cli, run_portbook

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux lookup rules")

needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="no IPv6 on loopback")
LO = socket.if_nametoindex("lo") if sys.platform.startswith("linux") else 1


@pytest.fixture
def socks() -> Iterator[Sockets]:
    with ExitStack() as stack:
        yield Sockets(stack)


def ep(text: str, port: int) -> Endpoint:
    return Endpoint(ipaddress.ip_address(text), port)


def check(
    socks: Sockets,
    proto: str,
    dst: Endpoint,
    *,
    source: Endpoint | None = None,
    device: int | None = LO,
) -> Route:
    """The decision over this test's own sockets, which must equal the one over the
    kernel's whole table (read by the live table's default backend)."""
    own = route(proto, dst, source=source, device=device, backend=OwnSockets(socks))
    live = route(proto, dst, source=source, device=device)

    def key(r: Route) -> tuple[object, ...]:
        chosen = r.socket.inode if r.socket is not None and r.group_size == 1 else None
        return (r.rule, chosen, frozenset(s.inode for s in r.candidates), r.dual_stack)

    assert key(own) == key(live)
    return own


def decide(
    socks: Sockets, proto: str, dst: Endpoint, src: Endpoint | None = None, device: int | None = LO
) -> tuple[RouteRule, set[int], int | None]:
    r = check(socks, proto, dst, source=src, device=device)
    chosen = r.socket.inode if r.socket is not None else None
    return r.rule, {s.inode for s in r.candidates}, chosen


# ---------------------------------------------------------------------- TCP


def test_tcp_exact_listener_beats_wildcard(socks: Sockets) -> None:
    # Two listeners on one port only coexist with SO_REUSEPORT; they are not one
    # group because their addresses differ.
    wild = socks.tcp("0.0.0.0", reuseport=True)
    port = wild.getsockname()[1]
    exact = socks.tcp("127.0.0.1", port, reuseport=True)

    rule, _, chosen = decide(socks, "tcp", ep("127.0.0.1", port))
    assert rule is RouteRule.EXACT_LISTENER and chosen == inode(exact)
    socks.connect("127.0.0.1", port)
    assert which_accepts([wild, exact], socks) is exact

    # Another loopback address has no exact listener: the wildcard takes it.
    rule, _, chosen = decide(socks, "tcp", ep("127.0.0.2", port))
    assert rule is RouteRule.WILDCARD_LISTENER and chosen == inode(wild)
    socks.connect("127.0.0.2", port)
    assert which_accepts([wild, exact], socks) is wild


@pytest.mark.ipv6
@needs_ipv6
def test_tcp_ipv4_socket_beats_dual_stack_wildcard(socks: Sockets) -> None:
    dual = socks.tcp("::", reuseport=True, v6only=False)
    port = dual.getsockname()[1]
    v4 = socks.tcp("0.0.0.0", port, reuseport=True)

    r = check(socks, "tcp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.WILDCARD_LISTENER and r.socket is not None
    assert r.socket.inode == inode(v4) and not r.dual_stack
    socks.connect("127.0.0.1", port)
    assert which_accepts([dual, v4], socks) is v4

    # An IPv6 packet never reaches an AF_INET socket.
    rule, _, chosen = decide(socks, "tcp", ep("::1", port))
    assert rule is RouteRule.WILDCARD_LISTENER and chosen == inode(dual)
    socks.connect("::1", port)
    assert which_accepts([dual, v4], socks) is dual


@pytest.mark.ipv6
@needs_ipv6
def test_tcp_dual_stack_wildcard_takes_ipv4(socks: Sockets) -> None:
    dual = socks.tcp("::", v6only=False)
    port = dual.getsockname()[1]
    r = check(socks, "tcp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.WILDCARD_LISTENER and r.dual_stack
    assert r.socket is not None and r.socket.inode == inode(dual)
    assert "IPV6_V6ONLY" in r.reason
    socks.connect("127.0.0.1", port)
    assert which_accepts([dual], socks) is dual


@pytest.mark.ipv6
@needs_ipv6
def test_tcp_v6only_wildcard_refuses_ipv4(socks: Sockets) -> None:
    only6 = socks.tcp("::", v6only=True)
    port = only6.getsockname()[1]
    r = check(socks, "tcp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.NONE and r.socket is None
    assert "RST" in r.reason
    with pytest.raises(ConnectionRefusedError):
        socks.connect("127.0.0.1", port)


@pytest.mark.ipv6
@needs_ipv6
def test_tcp_ipv4_mapped_bind_is_an_exact_ipv4_listener(socks: Sockets) -> None:
    wild = socks.tcp("0.0.0.0", reuseport=True)
    port = wild.getsockname()[1]
    mapped = socks.tcp("::ffff:127.0.0.1", port, reuseport=True)
    r = check(socks, "tcp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.EXACT_LISTENER and r.dual_stack
    assert r.socket is not None and r.socket.inode == inode(mapped)
    socks.connect("127.0.0.1", port)
    assert which_accepts([wild, mapped], socks) is mapped


def test_tcp_reuseport_group_one_of_n(socks: Sockets) -> None:
    first = socks.tcp("127.0.0.1", reuseport=True)
    port = first.getsockname()[1]
    group = [first, socks.tcp("127.0.0.1", port, reuseport=True)]
    group.append(socks.tcp("127.0.0.1", port, reuseport=True))
    other = socks.tcp("0.0.0.0", port, reuseport=True)  # a lower-ranked bucket

    r = check(socks, "tcp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.REUSEPORT_GROUP and r.group_size == 3
    assert {s.inode for s in r.candidates} == {inode(s) for s in group}
    assert "hash" in r.reason
    seen = set()
    for _ in range(12):
        socks.connect("127.0.0.1", port)
        taker = which_accepts([*group, other], socks)
        assert taker in group
        seen.add(taker.fileno())
    assert seen  # the hash spreads connections; which ones is the kernel's secret


def test_tcp_established_connection_wins(socks: Sockets) -> None:
    listener = socks.tcp("127.0.0.1")
    port = listener.getsockname()[1]
    client = socks.connect("127.0.0.1", port)
    conn, _ = listener.accept()
    socks.adopt(conn)
    cport = client.getsockname()[1]

    r = check(socks, "tcp", ep("127.0.0.1", port), source=ep("127.0.0.1", cport), device=LO)
    assert r.rule is RouteRule.ESTABLISHED
    assert r.socket is not None and r.socket.inode == inode(conn)
    client.sendall(b"hello")
    assert which_receives([listener, conn], b"hello") is conn

    # The reverse direction: the client's own socket takes what the server sends.
    r = check(socks, "tcp", ep("127.0.0.1", cport), source=ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.ESTABLISHED
    assert r.socket is not None and r.socket.inode == inode(client)

    # Another source port has no connection: the listener takes a new SYN.
    rule, _, chosen = decide(socks, "tcp", ep("127.0.0.1", port), ep("127.0.0.1", 1))
    assert rule is RouteRule.EXACT_LISTENER and chosen == inode(listener)


def test_tcp_nothing_listening_answers_rst(socks: Sockets) -> None:
    # A bound socket that does not listen holds the port but takes no connection.
    holder = socks.tcp("127.0.0.1", listen=False)
    port = holder.getsockname()[1]
    r = check(socks, "tcp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.NONE and r.candidates == ()
    assert "TCP answers RST" in r.notes
    with pytest.raises(ConnectionRefusedError):
        socks.connect("127.0.0.1", port)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="SO_BINDTODEVICE needs CAP_NET_RAW")
def test_tcp_device_bound_listener_outranks_unbound(socks: Sockets) -> None:
    plain = socks.tcp("0.0.0.0", reuseport=True)
    port = plain.getsockname()[1]
    bound = socks.tcp("0.0.0.0", port, reuseport=True, device="lo")
    r = check(socks, "tcp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.WILDCARD_LISTENER
    assert r.socket is not None and r.socket.inode == inode(bound)
    assert "device lo" in r.reason
    socks.connect("127.0.0.1", port)
    assert which_accepts([plain, bound], socks) is bound
    # Without knowing the arriving device, device-bound sockets are set aside.
    unknown = route_packet("tcp", ep("127.0.0.1", port), socks.records(), device=None)
    assert unknown.socket is not None and unknown.socket.inode == inode(plain)
    assert any("device lo" in n for n in unknown.notes)


# ---------------------------------------------------------------------- UDP


def send_from(socks: Sockets, src: socket.socket, dst: tuple[str, int], payload: bytes) -> None:
    src.sendto(payload, dst)


def test_udp_exact_beats_wildcard(socks: Sockets) -> None:
    wild = socks.udp("0.0.0.0", reuseaddr=True)
    port = wild.getsockname()[1]
    exact = socks.udp("127.0.0.1", port, reuseaddr=True)
    sender = socks.udp("127.0.0.1")
    rule, _, chosen = decide(socks, "udp", ep("127.0.0.1", port))
    assert rule is RouteRule.EXACT_LISTENER and chosen == inode(exact)
    sender.sendto(b"one", ("127.0.0.1", port))
    assert which_receives([wild, exact], b"one") is exact

    rule, _, chosen = decide(socks, "udp", ep("127.0.0.2", port))
    assert rule is RouteRule.WILDCARD_LISTENER and chosen == inode(wild)
    sender.sendto(b"two", ("127.0.0.2", port))
    assert which_receives([wild, exact], b"two") is wild


def test_udp_connected_beats_unconnected(socks: Sockets) -> None:
    peer = socks.udp("127.0.0.1")
    stranger = socks.udp("127.0.0.1")
    unconnected = socks.udp("127.0.0.1", reuseaddr=True)
    port = unconnected.getsockname()[1]
    connected = socks.udp("127.0.0.1", port, reuseaddr=True)
    connected.connect(peer.getsockname())
    ppeer, pstranger = peer.getsockname()[1], stranger.getsockname()[1]

    rule, _, chosen = decide(socks, "udp", ep("127.0.0.1", port), ep("127.0.0.1", ppeer))
    assert rule is RouteRule.ESTABLISHED and chosen == inode(connected)
    peer.sendto(b"from-peer", ("127.0.0.1", port))
    assert which_receives([unconnected, connected], b"from-peer") is connected

    rule, _, chosen = decide(socks, "udp", ep("127.0.0.1", port), ep("127.0.0.1", pstranger))
    assert rule is RouteRule.EXACT_LISTENER and chosen == inode(unconnected)
    stranger.sendto(b"from-stranger", ("127.0.0.1", port))
    assert which_receives([unconnected, connected], b"from-stranger") is unconnected

    # Without a source the connected socket cannot be judged; the answer says so.
    r = check(socks, "udp", ep("127.0.0.1", port), device=LO)
    assert any("receives only from that peer" in n for n in r.notes)


@pytest.mark.ipv6
@needs_ipv6
def test_udp_ipv4_socket_beats_dual_stack(socks: Sockets) -> None:
    dual = socks.udp("::", reuseaddr=True, v6only=False)
    port = dual.getsockname()[1]
    v4 = socks.udp("0.0.0.0", port, reuseaddr=True)
    sender = socks.udp("127.0.0.1")
    r = check(socks, "udp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.WILDCARD_LISTENER and r.socket is not None
    assert r.socket.inode == inode(v4)
    sender.sendto(b"v4", ("127.0.0.1", port))
    assert which_receives([dual, v4], b"v4") is v4


@pytest.mark.ipv6
@needs_ipv6
def test_udp_dual_stack_alone_takes_ipv4(socks: Sockets) -> None:
    dual = socks.udp("::", v6only=False)
    port = dual.getsockname()[1]
    sender = socks.udp("127.0.0.1")
    r = check(socks, "udp", ep("127.0.0.1", port), device=LO)
    assert r.rule is RouteRule.WILDCARD_LISTENER and r.dual_stack
    sender.sendto(b"mapped", ("127.0.0.1", port))
    assert which_receives([dual], b"mapped") is dual


def test_udp_reuseport_group(socks: Sockets) -> None:
    first = socks.udp("127.0.0.1", reuseport=True)
    port = first.getsockname()[1]
    group = [first, socks.udp("127.0.0.1", port, reuseport=True)]
    sender = socks.udp("127.0.0.1")
    r = check(
        socks,
        "udp",
        ep("127.0.0.1", port),
        source=ep("127.0.0.1", sender.getsockname()[1]),
        device=LO,
    )
    assert r.rule is RouteRule.REUSEPORT_GROUP and r.group_size == 2
    assert {s.inode for s in r.candidates} == {inode(s) for s in group}
    sender.sendto(b"g", ("127.0.0.1", port))
    assert which_receives(group, b"g") in group


def test_udp_nothing_answers_port_unreachable(socks: Sockets) -> None:
    # A UDP socket connected to someone else holds the port but takes nothing
    # from this sender.
    other_peer = socks.udp("127.0.0.1")
    holder = socks.udp("127.0.0.1")
    holder.connect(other_peer.getsockname())
    port = holder.getsockname()[1]
    sender = socks.udp("127.0.0.1")
    sender.connect(("127.0.0.1", port))  # a connected sender sees the ICMP error
    r = check(
        socks,
        "udp",
        ep("127.0.0.1", port),
        source=ep("127.0.0.1", sender.getsockname()[1]),
        device=LO,
    )
    assert r.rule is RouteRule.NONE
    assert "UDP answers ICMP port unreachable" in r.notes
    sender.send(b"lost")
    sender.settimeout(2)
    with pytest.raises(ConnectionRefusedError):
        sender.recv(16)
    assert which_receives([holder], b"lost") is None


# ---------------------------------------------------------------------- input


@pytest.mark.parametrize(
    ("words", "src", "dst"),
    [
        (["127.0.0.1:80"], None, "127.0.0.1:80"),
        (["10.0.0.1:5000", "->", "127.0.0.1:80"], "10.0.0.1:5000", "127.0.0.1:80"),
        (["10.0.0.1:5000->127.0.0.1:80"], "10.0.0.1:5000", "127.0.0.1:80"),
        (["10.0.0.1:5000->", "127.0.0.1:80"], "10.0.0.1:5000", "127.0.0.1:80"),
        (["[::1]:5000", "->", "[::1]:53"], "[::1]:5000", "[::1]:53"),
    ],
)
def test_parse_route_args(words: list[str], src: str | None, dst: str) -> None:
    s, d = parse_route_args(words)
    assert (str(s) if s else None, str(d)) == (src, dst)


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["80"],
        ["a->b->c"],
        ["->", "127.0.0.1:80"],
        ["127.0.0.1:80", "127.0.0.1:81"],
        ["1.2.3.4:1-5"],
    ],
)
def test_parse_route_args_rejects(words: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_route_args(words)


def test_mixed_families_and_other_protocols_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        route_packet("tcp", ep("127.0.0.1", 80), [], source=ep("::1", 5))
    with pytest.raises(UsageError):
        route_packet(Protocol.SCTP, ep("127.0.0.1", 80), [])
    with pytest.raises(UsageError, match="multicast"):
        route_packet("udp", ep("224.0.0.251", 5353), [])
    with pytest.raises(InvalidPortSpecError):
        parse_route_args(["127.0.0.1:99999"])


# ---------------------------------------------------------------------- CLI


def test_cli_route_names_the_owning_program() -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,time\n"
            "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n"
            "print(s.getsockname()[1], flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        result = run_cli("route", "tcp", f"127.0.0.1:{port}", "--json")
        assert result.status == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["rule"] == "exact-listener" and data["group_size"] == 1
        assert server.pid in [p["pid"] for p in data["socket"]["processes"]]
        text = run_cli("route", "tcp", f"127.0.0.1:{port}")
        assert "exact-listener" in text.stdout and f"[{server.pid}]" in text.stdout
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


def test_cli_route_source_arrow_forms(socks: Sockets) -> None:
    listener = socks.tcp("127.0.0.1")
    port = listener.getsockname()[1]
    client = socks.connect("127.0.0.1", port)
    conn, _ = listener.accept()
    socks.adopt(conn)
    src = f"127.0.0.1:{client.getsockname()[1]}"
    dst = f"127.0.0.1:{port}"
    for argv in ([src, "->", dst], [f"{src}->{dst}"], [f"{src}->", dst]):
        result = run_cli("route", "tcp", *argv, "--json")
        assert result.status == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["rule"] == "established" and data["socket"]["inode"] == inode(conn)
    # PROTO/DST, as other commands take tcp/PORT; options may come first.
    for argv in ([f"tcp/{src}", "->", dst], ["--json", f"TCP/{src}->{dst}"]):
        result = run_cli("route", *argv, "--json")
        assert result.status == 0, result.stderr
        assert json.loads(result.stdout)["socket"]["inode"] == inode(conn)
    result = run_cli("route", "--device", "lo", "--json", f"tcp/{dst}")
    assert result.status == 0 and json.loads(result.stdout)["rule"] == "exact-listener", result


def test_cli_route_none_exits_1(socks: Sockets) -> None:
    holder = socks.udp("127.0.0.1")
    holder.connect(socks.udp("127.0.0.1").getsockname())
    port = holder.getsockname()[1]
    result = run_cli("route", "udp", f"127.0.0.3:{port}")
    assert result.status == 1
    assert "ICMP port unreachable" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["route", "sctp", "127.0.0.1:80"],
        ["route", "sctp/127.0.0.1:80"],
        ["route", "tcp/"],
        ["route", "--device", "tcp/127.0.0.1:80"],
        ["route", "tcp", "80"],
        ["route", "tcp", "127.0.0.1:80", "->"],
        ["route", "tcp", "--device", "no-such-device0", "127.0.0.1:80"],
        ["route", "tcp", "[::1]:5", "->", "127.0.0.1:80"],
    ],
)
def test_cli_route_usage_errors(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.status == 2, result
    assert result.stderr.startswith("portbook: error:") and result.stderr.count("\n") == 1


def test_tcp_time_wait_entry_holds_the_four_tuple(socks: Sockets) -> None:
    listener = socks.tcp("127.0.0.1")
    port = listener.getsockname()[1]
    client = socks.connect("127.0.0.1", port)
    conn, _ = listener.accept()
    cport = client.getsockname()[1]
    conn.close()  # the server closes first: its side of the 4-tuple enters TIME-WAIT
    client.close()
    src = ep("127.0.0.1", cport)
    deadline = time.monotonic() + 2
    while True:
        # TIME-WAIT belongs to the kernel, not to a socket object: only the
        # kernel's table has it.
        r = route("tcp", ep("127.0.0.1", port), source=src)
        if r.rule is RouteRule.ESTABLISHED or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert r.rule is RouteRule.ESTABLISHED
    assert r.socket is not None and r.socket.state.value == "TIME-WAIT"
    assert any("TIME-WAIT" in n for n in r.notes)
    # Any other source still reaches the listener.
    rule, _, chosen = decide(socks, "tcp", ep("127.0.0.1", port), ep("127.0.0.1", cport ^ 1))
    assert rule is RouteRule.EXACT_LISTENER and chosen == inode(listener)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="SO_BINDTODEVICE needs CAP_NET_RAW")
def test_tcp_listener_bound_to_another_device_never_matches(socks: Sockets) -> None:
    others = [name for _, name in socket.if_nameindex() if name != "lo"]
    if not others:
        pytest.skip("no network device besides lo")
    # Traffic to 127.0.0.1 from this machine arrives on lo, never on others[0].
    elsewhere = socks.tcp("0.0.0.0", device=others[0])
    port = elsewhere.getsockname()[1]
    r = check(socks, "tcp", ep("127.0.0.1", port))
    assert r.rule is RouteRule.NONE
    with pytest.raises(ConnectionRefusedError):
        socks.connect("127.0.0.1", port)


def test_an_address_of_no_interface_here_is_not_local() -> None:
    # 192.0.2.0/24 is TEST-NET-1: documentation only, on no interface of a test machine.
    shown = run_cli("route", "tcp", "192.0.2.123:8081", "--json")
    assert shown.status == 1, shown
    answer = json.loads(shown.stdout)
    assert answer["rule"] == "not-local" and answer["socket"] is None
    assert "not an address of this machine" in answer["reason"] and answer["via"]


def test_a_broadcast_address_is_not_unicast_delivery() -> None:
    shown = run_cli("route", "udp", "127.255.255.255:53")
    assert shown.status == 2 and "broadcast" in shown.stderr and shown.stderr.count("\n") == 1


def test_route_takes_one_of_your_names(tmp_path: Path) -> None:
    from portbook import Store, assign

    with Store(tmp_path / "s.sqlite3") as store:
        port = assign("api", store=store).port
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        shown = run_portbook(
            "route", "tcp", "api", env={"PORTBOOK_STORE": str(tmp_path / "s.sqlite3")}
        )
    assert shown.returncode == 0, shown.stderr
    assert f"127.0.0.1:{port}" in shown.stdout and "exact-listener" in shown.stdout
