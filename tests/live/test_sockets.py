"""The live table from the kernel: real loopback sockets, their states, addresses, owners."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import portbook
import portbook._live.build
from portbook import (
    Exposure,
    Family,
    PortRange,
    Protocol,
    Socket,
    SocketState,
    UsageError,
    list_sockets,
    sockets_json,
    sockets_on_port,
)
from tests.live_helpers import needs_ipv6, needs_linux, open_sockets, port_of, start_holder

pytestmark = needs_linux


def _one(sockets: list[Socket], **match: object) -> Socket:
    found = [s for s in sockets if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


@pytest.mark.parametrize(
    "family", [socket.AF_INET, pytest.param(socket.AF_INET6, marks=needs_ipv6)]
)
def test_tcp_listener_and_connected_pair(family: int) -> None:
    with open_sockets() as ss:
        listener = ss.tcp_listener(family)
        port = port_of(listener)
        client, server = ss.tcp_pair(listener)
        cport = port_of(client)
        found = list_sockets(port=port)  # every state, local port == port
        found_client = list_sockets(port=cport)
        inodes = (os.fstat(listener.fileno()).st_ino, os.fstat(server.fileno()).st_ino)
    me = os.getpid()
    loop = ipaddress.ip_address("127.0.0.1" if family == socket.AF_INET else "::1")
    fam = Family.INET if family == socket.AF_INET else Family.INET6

    lsock = _one(found, state=SocketState.LISTEN)
    assert (lsock.protocol, lsock.family, lsock.local_address) == (Protocol.TCP, fam, loop)
    assert lsock.remote_address is None and lsock.remote_port is None
    assert lsock.inode == inodes[0]
    assert lsock.uid == os.geteuid()
    assert [p.pid for p in lsock.processes] == [me] and lsock.owner_note is None
    assert lsock.processes[0].name and lsock.processes[0].cmdline
    assert lsock.exposure is Exposure.LOOPBACK
    assert lsock.listening

    accepted = _one(found, state=SocketState.ESTAB, remote_port=cport)
    assert accepted.remote_address == loop and accepted.remote_port == cport
    assert accepted.inode == inodes[1]

    # Another connection elsewhere may share the ephemeral port (with another peer).
    csock = _one(found_client, state=SocketState.ESTAB, remote_port=port)
    assert csock.local_port == cport and csock.ephemeral
    assert [p.pid for p in csock.processes] == [me]
    if family == socket.AF_INET6:
        # Binding a specific IPv6 address (not v4-mapped) makes the kernel set
        # IPV6_V6ONLY on the socket: it can never receive IPv4 anyway.
        assert lsock.v6only is True
    else:
        assert lsock.v6only is None


@pytest.mark.parametrize(
    "family", [socket.AF_INET, pytest.param(socket.AF_INET6, marks=needs_ipv6)]
)
def test_udp_unconnected_and_connected(family: int) -> None:
    with open_sockets() as ss:
        bound = ss.udp_bound(family)
        bport = port_of(bound)
        connected = ss.udp_connected(bound)
        udp = list_sockets(protocols=["udp"], port=bport)
        udp_conn = sockets_on_port(port_of(connected), "udp")
    unconn = _one(udp, state=SocketState.UNCONN)
    assert unconn.protocol is Protocol.UDP and unconn.remote_port is None and unconn.listening
    estab = _one(udp_conn, state=SocketState.ESTAB, remote_port=bport)
    assert estab.remote_port == bport and not estab.listening
    assert [p.pid for p in estab.processes] == [os.getpid()]


@needs_ipv6
def test_v6only_is_read_from_the_kernel() -> None:
    with open_sockets() as ss:
        s = ss.keep(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::1", 0))
        s.listen(1)
        # Matched by address and state: another test's connection may have the same number.
        at = ipaddress.ip_address("::1")
        found = _one(sockets_on_port(port_of(s), "tcp"), state=SocketState.LISTEN, local_address=at)
    assert found.v6only is True and found.family is Family.INET6


@needs_ipv6
def test_v6only_of_a_wildcard_socket_follows_the_sysctl() -> None:
    with open("/proc/sys/net/ipv6/bindv6only") as fh:
        default = fh.read().strip() == "1"
    with open_sockets() as ss:
        s = ss.keep(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
        s.bind(("::", 0))
        s.listen(1)
        found = _one(sockets_on_port(port_of(s), "tcp"), state=SocketState.LISTEN)
    assert found.v6only is default and found.exposure is Exposure.ALL


def test_exposure_all_and_specific() -> None:
    with open_sockets() as ss:
        everywhere = ss.tcp_listener(socket.AF_INET, "0.0.0.0")
        found = _one(sockets_on_port(port_of(everywhere)), state=SocketState.LISTEN)
    assert found.exposure is Exposure.ALL
    # The exposure of an address on one interface; the socket is never used.
    assert portbook._live.build.exposure(ipaddress.ip_address("192.0.2.7")) is Exposure.SPECIFIC
    mapped = ipaddress.ip_address("::ffff:127.0.0.1")
    assert portbook._live.build.exposure(mapped) is Exposure.LOOPBACK


@pytest.mark.parametrize("family", [4, pytest.param(6, marks=needs_ipv6)])
def test_socket_held_by_a_child_process(family: int) -> None:
    holder = start_holder(family)
    try:
        found = _one(sockets_on_port(holder.port, "tcp"), state=SocketState.LISTEN)
    finally:
        holder.close()
    (proc,) = found.processes
    assert proc.pid == holder.process.pid
    assert proc.name is not None and proc.name.startswith("python")
    assert proc.cmdline is not None and proc.cmdline[0] == sys.executable
    assert proc.user is not None


def test_socket_shared_by_two_processes_lists_both() -> None:
    holder = start_holder(4, shared=True)
    try:
        found = _one(sockets_on_port(holder.port, "tcp"), state=SocketState.LISTEN)
        by_pid = list_sockets(pid=holder.pids[1], port=holder.port)
    finally:
        holder.close()
    assert sorted(p.pid for p in found.processes) == sorted(holder.pids)
    assert len(by_pid) == 1 and {p.pid for p in by_pid[0].processes} == set(holder.pids)


def test_socket_inherited_by_a_child_process_lists_parent_and_child() -> None:
    import subprocess

    with open_sockets() as ss:
        listener = ss.tcp_listener()
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"],
            stdin=subprocess.PIPE,
            pass_fds=[listener.fileno()],
        )
        try:
            found = _one(sockets_on_port(port_of(listener), "tcp"), state=SocketState.LISTEN)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
    assert {p.pid for p in found.processes} == {os.getpid(), child.pid}


def test_filters_select_what_they_say() -> None:
    with open_sockets() as ss:
        listener = ss.tcp_listener()
        port = port_of(listener)
        client, _server = ss.tcp_pair(listener)
        bound = ss.udp_bound()
        lo = min(port, port_of(bound), port_of(client))
        hi = max(port, port_of(bound), port_of(client))
        span = PortRange(lo, hi)

        listening = list_sockets(listening=True, port=span)
        assert {
            (s.protocol, s.state) for s in listening if s.local_port in (port, port_of(bound))
        } == {
            (Protocol.TCP, SocketState.LISTEN),
            (Protocol.UDP, SocketState.UNCONN),
        }
        assert all(s.listening for s in listening)

        estab = list_sockets(states=["established"], protocols=["tcp"], port=span)
        assert {s.local_port for s in estab} >= {port, port_of(client)}
        assert all(s.state is SocketState.ESTAB for s in estab)

        assert list_sockets(families=[6], port=port) == []
        mine = list_sockets(pid=os.getpid(), port=span)
        assert {s.local_port for s in mine} >= {port, port_of(bound), port_of(client)}
        assert list_sockets(pid=1 if os.getpid() != 1 else 2, port=port) == []
        program = mine[0].processes[0].name
        assert program is not None
        assert list_sockets(program=program, port=port)
        assert list_sockets(program="no-such-program-here", port=port) == []
        assert list_sockets(user=os.geteuid(), port=port)
        assert list_sockets(user=str(os.geteuid()), port=port)
        no_owners = list_sockets(port=port, owners=False)
        assert no_owners and all(s.processes == () and s.owner_note is None for s in no_owners)


def test_time_wait_has_no_process_and_says_why() -> None:
    with open_sockets() as ss:
        listener = ss.tcp_listener()
        client, server = ss.tcp_pair(listener)
        cport = port_of(client)
        # The side that closes first goes to TIME-WAIT.
        lport = port_of(listener)
        client.close()
        server.close()
        # The last FIN crosses loopback asynchronously: look until it has.
        deadline = time.monotonic() + 5
        found: list[Socket] = []
        while not found and time.monotonic() < deadline:
            found = [
                s for s in list_sockets(states=["TIME-WAIT"], port=cport) if s.remote_port == lport
            ]
            time.sleep(0.01)
    assert len(found) == 1
    assert found[0].processes == () and found[0].inode == 0
    assert found[0].owner_note == "held by the kernel, not by a process"


def test_bad_filters_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown socket state"):
        list_sockets(states=["SLEEPY"])
    with pytest.raises(UsageError, match="tcp and udp"):
        list_sockets(protocols=["sctp"])
    with pytest.raises(UsageError):
        list_sockets(port=70000)
    with pytest.raises(UsageError, match="owners"):
        list_sockets(pid=1, owners=False)
    with pytest.raises(UsageError, match="families"):
        list_sockets(families=[5])


def test_json_contract_and_fast_text_match_to_json() -> None:
    with open_sockets() as ss:
        listener = ss.tcp_listener()
        ss.tcp_pair(listener)
        ss.udp_bound()
        found = list_sockets(port=PortRange(1, 65535))
        lport = port_of(listener)
    text = sockets_json(found)
    assert text == json.dumps([s.to_json() for s in found], ensure_ascii=False)
    assert json.loads(sockets_json(found, indent=2)) == json.loads(text)
    one = next(d for d in json.loads(text) if d["local_port"] == lport and d["state"] == "LISTEN")
    for key in (
        "protocol",
        "family",
        "state",
        "local_address",
        "local_port",
        "remote_address",
        "remote_port",
        "inode",
        "uid",
        "processes",
        "service",
        "exposure",
    ):
        assert key in one
    assert one["remote_address"] is None and one["remote_port"] is None
    assert one["protocol"] == "tcp" and one["family"] == 4 and one["state"] == "LISTEN"
    assert set(one["processes"][0]) == {"pid", "name", "user", "cmdline", "container", "unit"}
    # Read without netns: no namespace; a socket of this test leads nowhere else.
    assert one["netns"] is None and one["published"] is None


def test_backend_is_chosen_once_and_named() -> None:
    backend = portbook.socket_backend()
    assert backend is portbook.socket_backend()
    assert backend.name in ("netlink", "procfs", "psutil")


@pytest.mark.parametrize("count", [0, 1, 511, 512, 513, 1100])
def test_json_written_in_pieces_equals_json_dumps(count: int) -> None:
    import io

    from portbook._live.jsontext import _JSON_CHUNK, write_sockets_json
    from portbook._live.records import SocketProcess

    assert _JSON_CHUNK == 512  # the counts above straddle piece boundaries
    owner = (SocketProcess(7, "caf\u00e9", ("srv", '"quoted"\n'), "root"),)
    sockets = [
        Socket(
            Protocol.TCP,
            Family.INET6 if i % 3 else Family.INET,
            SocketState.ESTAB,
            ipaddress.ip_address("::1" if i % 3 else "127.0.0.1"),
            40000 + i,
            ipaddress.ip_address("::1" if i % 3 else "127.0.0.2"),
            5432,
            1000 + i,
            0,
            i % 5,
            0,
            None if i % 2 else False,
            None,
            owner if i % 4 else (),
            None if i % 4 else "held by the kernel, not by a process",
            None if i % 7 else "postgresql",
            portbook.PortClass.USER,
            bool(i % 2),
            Exposure.LOOPBACK,
        )
        for i in range(count)
    ]
    expected = json.dumps([s.to_json() for s in sockets], ensure_ascii=False)
    stream = io.StringIO()
    write_sockets_json(sockets, stream)
    assert stream.getvalue() == expected == sockets_json(sockets)
    stream = io.StringIO()
    write_sockets_json(sockets, stream, indent=2)
    assert stream.getvalue() == json.dumps(
        [s.to_json() for s in sockets], indent=2, ensure_ascii=False
    )


class _FailingBackend:
    name = "failing"
    provides_owners = False

    def available(self) -> bool:
        return True

    def sockets(self, query: object) -> list[Any]:
        raise portbook.SocketTableError("the table could not be read")


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_it_was(enabled: bool) -> None:
    import gc

    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        with open_sockets() as ss:
            listener = ss.tcp_listener()
            assert list_sockets(port=port_of(listener))
        assert gc.isenabled() is enabled
        with pytest.raises(portbook.SocketTableError):
            list_sockets(backend=_FailingBackend())
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()


def test_json_of_namespaces_containers_units_and_published_ports_matches_to_json() -> None:
    from portbook import Container, Netns, NetnsKind, Published, Runtime, Unit
    from portbook._live.records import SocketProcess

    web = Container(Runtime.DOCKER, "ab" * 32, 'w"eb\u00e9', pid=42)
    unit = Unit("docker.service", "service", "system", None, "system.slice", None, "/x")
    inside = (SocketProcess(42, "httpd", ("httpd",), "root", web, None),)
    proxy = (SocketProcess(7, "docker-proxy", ("docker-proxy",), "root", None, unit),)
    published = Published("docker-proxy", 7, "tcp", 8080, web, "172.17.0.2", 80, inside)
    space = Netns(4026532185, NetnsKind.CONTAINER, "web", None, "/run/docker/netns/x", (42,), web)
    host = Netns(4026531833, NetnsKind.HOST, "host", None, None, (1,))

    def sock(port: int, procs: tuple[SocketProcess, ...], **extra: Any) -> Socket:
        return Socket(
            Protocol.TCP, Family.INET, SocketState.LISTEN, ipaddress.ip_address("127.0.0.1"),
            port, None, None, port, 0, 0, 128, None, None, procs, None, None,
            portbook.PortClass.USER, False, Exposure.LOOPBACK, **extra,
        )  # fmt: skip

    sockets = [
        sock(8080, proxy, netns=host, container=web, unit=unit, published=published),
        sock(80, inside, netns=space, container=web),
        sock(8081, proxy, netns=host, unit=unit),
    ] * 3
    assert sockets_json(sockets) == json.dumps([s.to_json() for s in sockets], ensure_ascii=False)
    first = json.loads(sockets_json(sockets))[0]
    assert first["published"]["target"] == {
        "address": "172.17.0.2",
        "port": 80,
        "processes": [inside[0].to_json()],
    }
    assert first["container"]["name"] == 'w"eb\u00e9' and first["unit"]["name"] == "docker.service"


def _retained(make: Any) -> tuple[Any, int]:
    """``make()``'s result and the bytes it keeps allocated (tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = make()
        return made, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@contextlib.contextmanager
def _connected(count: int) -> Iterator[int]:
    """A loopback listener with ``count`` connections accepted; its port."""
    with socket.create_server(("127.0.0.1", 0), backlog=count) as server:
        port = port_of(server)
        ends = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        ends += [server.accept()[0] for _ in range(count)]
        try:
            yield port
        finally:
            for end in ends:
                end.close()


@needs_linux
def test_netlink_rows_are_kept_as_the_kernel_sent_them_and_decode_to_the_same_rows() -> None:
    """A large table's rows cost their messages (72 bytes a socket), not a row object each."""
    from portbook._live.backends.base import RawRows, TableQuery

    count = 300
    with _connected(count) as port:
        query = TableQuery(frozenset({"tcp"}), frozenset({4}), ports=(port, port))
        portbook.NetlinkBackend().sockets(query)  # imports and first-call caches
        rows, kept = _retained(lambda: portbook.NetlinkBackend().sockets(query))
        assert isinstance(rows, RawRows) and len(rows) == count + 1
        # Row objects would take about 200 bytes each; the messages 72.
        assert kept < 100 * len(rows) + 2048, kept
        decoded = list(rows)
        assert decoded == list(rows)  # every pass decodes the same rows
        assert all(type(r) is portbook.RawSocket for r in decoded)
        assert rows.port_pairs() == {(port, "tcp")}
        assert list(rows.holder_keys()) == [(r.inode, None) for r in decoded]

        # The same sockets as /proc/net/tcp has them (whose queues of a
        # listener differ: netlink gives its backlog as the send queue).
        def facts(r: portbook.RawSocket) -> tuple[Any, ...]:
            return (r.state, r.local_address, r.local_port, r.remote_address,
                    r.remote_port, r.inode, r.uid, r.interface)  # fmt: skip

        procfs = sorted(map(facts, portbook.ProcfsBackend().sockets(query)))
        assert sorted(map(facts, decoded)) == procfs


@needs_linux
def test_a_socket_stream_builds_each_record_as_it_is_asked_for() -> None:
    """``socket_stream`` gives socket_table's sockets without ever holding them all."""
    count = 300
    with _connected(count) as port:
        table, held = _retained(lambda: portbook.socket_table(port=port))
        stream = portbook.socket_stream(port=port)
        assert stream.notes == table.notes and stream.elsewhere == table.elsewhere

        def consume() -> list[tuple[int, int]]:
            return [(s.inode, len(s.processes)) for s in stream]

        seen, kept = _retained(consume)
        assert sorted(seen) == sorted((s.inode, len(s.processes)) for s in table.sockets)
        assert len(seen) == count + 1 and all(n == 1 for _, n in seen)
        # What remains is the list of (inode, holders) pairs, not the records.
        assert kept < held / 3, (kept, held)
        assert list(stream) == []  # read once, as a file is


@contextlib.contextmanager
def _both_families() -> Iterator[int]:
    """One port with a TCP listener on 127.0.0.1 and one on ::1, each with a connection."""
    with contextlib.ExitStack() as stack:
        v4 = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        port = port_of(v4)
        v6 = stack.enter_context(
            socket.create_server(("::1", port), family=socket.AF_INET6, dualstack_ipv6=False)
        )
        for server, host in ((v4, "127.0.0.1"), (v6, "::1")):
            stack.enter_context(socket.create_connection((host, port)))
            stack.enter_context(server.accept()[0])
        yield port


def _tcp_rows(families: frozenset[int], port: int) -> list[portbook.RawSocket]:
    from portbook._live.backends.base import TableQuery

    query = TableQuery(frozenset({"tcp"}), families, ports=(port, port))
    return list(portbook.NetlinkBackend().sockets(query))


@needs_linux
@needs_ipv6
def test_one_tcp_dump_answers_both_families_as_two_dumps_would() -> None:
    """TCP's two families come from one request (one walk of the kernel's hash), row for row."""
    from portbook._live.backends.base import TableQuery
    from portbook._live.backends.netlink import dumps

    assert list(dumps(TableQuery())) == [("tcp", (4, 6)), ("udp", (4,)), ("udp", (6,))]
    with _both_families() as port:
        both = _tcp_rows(frozenset({4, 6}), port)
        apart = _tcp_rows(frozenset({4}), port) + _tcp_rows(frozenset({6}), port)
    # Per family, the listener and the accepted end (the client end has its own port).
    assert [r.family for r in both] == [4, 4, 6, 6]
    assert both == apart


@needs_linux
@needs_ipv6
def test_a_kernel_that_refuses_the_two_family_dump_is_asked_one_family_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sent as a message type the kernel does not serve, the one dump is refused (EINVAL)."""
    from portbook._live import cgroup_ids
    from portbook._live.backends import netlink

    with _both_families() as port:
        expected = _tcp_rows(frozenset({4, 6}), port)
        ids = cgroup_ids.socket_cgroup_ids()
        monkeypatch.setattr(netlink, "TCPDIAG_GETSOCK", 17)
        assert _tcp_rows(frozenset({4, 6}), port) == expected
        assert cgroup_ids.socket_cgroup_ids() == ids
        monkeypatch.setattr(netlink, "SOCK_DIAG_BY_FAMILY", 17)
        with pytest.raises(portbook.SocketTableError, match=r"refused.*EINVAL"):
            _tcp_rows(frozenset({4, 6}), port)


@needs_linux
def test_a_dump_batch_larger_than_the_buffer_is_refused_not_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's batches (up to 32 KiB) fit the buffer; one that did not would lose sockets."""
    from portbook._live.backends import netlink
    from portbook._live.backends.base import TableQuery

    with _connected(100) as port:
        query = TableQuery(frozenset({"tcp"}), frozenset({4}), ports=(port, port))
        assert len(portbook.NetlinkBackend().sockets(query)) == 101
        monkeypatch.setattr(netlink, "_RECV_BUFFER", 1024)
        with pytest.raises(portbook.SocketTableError, match="did not fit in 1024"):
            portbook.NetlinkBackend().sockets(query)
