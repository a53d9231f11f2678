"""Owners: the whole walk (here and in its helper), the targeted walk; /proc/net parsing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from portbook import ProcfsBackend, list_sockets
from portbook._live.backends.base import RawSocket, TableQuery
from portbook._live.owners import (
    BackgroundWalk,
    OwnerScan,
    merge_scans,
    scan_all,
    split_walk,
)
from portbook._live.processes import process_details
from tests.conftest import run_cli
from tests.live_helpers import needs_linux, open_sockets, port_of

pytestmark = needs_linux

_MANY = textwrap.dedent(
    """
    import os, resource, socket, sys
    count, spread = int(sys.argv[1]), int(sys.argv[2])
    if spread > 1:
        # Descriptors far apart (a table much larger than the number open).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    keep = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        if spread > 1:
            fd = os.dup2(s.fileno(), 100 + i * spread)
            os.close(s.detach())
            s = socket.socket(fileno=fd)
        keep.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in keep), flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("spread", [1, 25])
def test_every_socket_of_a_process_with_many_descriptors_is_found(spread: int) -> None:
    # 300 sockets, dense or spread over a large descriptor table (100, 125,
    # 150, ...): the walk reads every descriptor, wherever it is.
    child = subprocess.Popen(
        [sys.executable, "-c", _MANY, "300", str(spread)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ports = [int(p) for p in child.stdout.readline().split()]
        sockets = {s.local_port: s for s in list_sockets(protocols=["udp"], owners=False)}
        inodes = [sockets[p].inode for p in ports]
        whole = scan_all()
        assert all(whole.owners[i] == [child.pid] for i in inodes)
        # and through the public call, for a port in the middle
        (one,) = list_sockets(protocols=["udp"], port=ports[200])
        assert [p.pid for p in one.processes] == [child.pid]
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()


def test_helper_process_walk_equals_the_walk_here() -> None:
    with open_sockets() as ss:
        listener = ss.tcp_listener()
        ss.tcp_pair(listener)
        inode = os.fstat(listener.fileno()).st_ino
        helper = BackgroundWalk()
        assert helper._pid > 0  # the helper really ran
        background = helper.result()
        here = scan_all()
        # and shared between a helper and this process
        theirs, ours = split_walk()
        split_helper = BackgroundWalk(pids=theirs)
        merged = merge_scans(split_helper.result(), scan_all(pids=ours))
    assert background.owners[inode] == here.owners[inode] == [os.getpid()]
    assert background.hidden == here.hidden
    assert merged.owners[inode] == [os.getpid()]
    assert set(theirs).isdisjoint(ours) and theirs


def test_cancelled_helper_leaves_nothing_behind() -> None:
    helper = BackgroundWalk()
    pid = helper._pid
    helper.cancel()
    helper.cancel()  # twice is harmless
    assert pid > 0
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # reaped: nothing left
    else:
        raise AssertionError("the helper was not reaped")


def test_process_details_of_this_process_and_of_a_missing_one() -> None:
    details = process_details([os.getpid(), 2**22 + 12345])
    me = details[os.getpid()]
    assert (me.name and me.cmdline and me.cmdline[0] == sys.argv[0]) or me.cmdline
    assert me.user is not None
    gone = details[2**22 + 12345]
    assert (gone.name, gone.cmdline, gone.user) == (None, None, None)


def test_procfs_parsing_from_a_fixture_directory(tmp_path: Path) -> None:
    header = "sl local rem st tx:rx tr:when retrnsmt uid timeout inode\n"
    (tmp_path / "tcp").write_text(
        header
        + "0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000 1000 0 4242 1\n"
        + "1: 0100007F:C350 0100007F:1F90 01 00000010:00000020 00:00000000 00000000 1000 0 4243 1\n"
    )
    (tmp_path / "tcp6").write_text(
        header
        + "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 99 1\n"
    )
    (tmp_path / "udp").write_text(
        header
        + "0: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000 101 0 77 2\n"
    )
    backend = ProcfsBackend(str(tmp_path))
    assert backend.available()
    raw = sorted(backend.sockets(TableQuery()))
    little = sys.byteorder == "little"
    assert len(raw) == 4
    listener = next(r for r in raw if r.inode == 4242)
    assert (listener.protocol, listener.family, listener.state, listener.local_port) == (
        "tcp",
        4,
        10,
        8080,
    )
    if little:
        assert listener.local_address == bytes([127, 0, 0, 1])
    assert listener.uid == 1000 and listener.recv_queue == 3
    conn = next(r for r in raw if r.inode == 4243)
    assert (conn.state, conn.local_port, conn.remote_port, conn.recv_queue, conn.send_queue) == (
        1,
        50000,
        8080,
        0x20,
        0x10,
    )
    v6 = next(r for r in raw if r.inode == 99)
    if little:
        assert v6.local_address == socket.inet_pton(socket.AF_INET6, "::1")
    udp = next(r for r in raw if r.inode == 77)
    assert (udp.protocol, udp.state, udp.local_port, udp.uid) == ("udp", 7, 53, 101)
    only = list(backend.sockets(TableQuery(state_mask=1 << 10, ports=(8000, 9000))))
    assert [r.inode for r in only] == [4242]
    assert not ProcfsBackend(str(tmp_path / "missing")).available()


def test_who_localhost_matches_loopback_sockets() -> None:
    with open_sockets() as ss:
        port = port_of(ss.tcp_listener(socket.AF_INET))
        result = run_cli("who", f"localhost:{port}")
        bad = run_cli("who", f"example.org:{port}")
    assert result.status == 0 and f"127.0.0.1:{port}" in result.stdout
    assert bad.status == 2


def test_the_normaliser_from_raw_facts() -> None:
    from ipaddress import ip_address

    from portbook import Exposure, PortClass, PortRange, SocketState
    from portbook._live.build import build_sockets
    from portbook._live.owners import OwnerScan
    from portbook._live.processes import ProcessInfo
    from portbook._live.records import NOTE_NO_PROCESS, NOTE_NOT_FOUND, NOTE_NOT_VISIBLE
    from portbook._machine import LocalRanges

    lo4 = bytes([127, 0, 0, 1])
    any4 = bytes(4)
    v6 = socket.inet_pton(socket.AF_INET6, "2001:db8::5")
    raws = [
        RawSocket("tcp", 4, 10, any4, 80, any4, 0, 11, 0, 0, 128, None, 0, None),
        RawSocket("tcp", 4, 1, lo4, 40001, lo4, 80, 12, 1000, 1, 2, None, 3, None),
        RawSocket("tcp", 4, 6, lo4, 40002, lo4, 80, 0, 0, 0, 0, None, 0, None),
        RawSocket("udp", 6, 7, v6, 40003, bytes(16), 0, 13, 0, 0, 0, True, 0, None),
        RawSocket("udp", 4, 1, lo4, 5353, lo4, 53, 14, 0, 0, 0, None, 0, None),
    ]
    scan = OwnerScan(single={11: 100, 13: 100}, shared={12: (100, 200)})
    details = {
        100: ProcessInfo(100, "web", ("web", "-d"), "www"),
        200: ProcessInfo(200, None, None, None),
    }
    ranges = LocalRanges(PortRange(40000, 41000), (PortRange(40003, 40003),), "test")
    names = {(80, "tcp"): "http"}
    socks = build_sockets(
        raws,
        scan=scan,
        processes=details,
        ranges=ranges,
        names=lambda port, proto: (names.get((port, proto.value)), "iana", None),
    )
    listen, estab, tw, udp6, udp4 = socks
    assert listen.state is SocketState.LISTEN and listen.exposure is Exposure.ALL
    assert (
        listen.service == "http" and listen.port_class is PortClass.SYSTEM and not listen.ephemeral
    )
    assert listen.remote_address is None and listen.remote_port is None
    assert [p.pid for p in listen.processes] == [100] and listen.processes[0].cmdline == (
        "web",
        "-d",
    )
    assert estab.state is SocketState.ESTAB and estab.remote_address == ip_address("127.0.0.1")
    assert [p.pid for p in estab.processes] == [100, 200] and estab.processes[1].name is None
    assert estab.ephemeral and estab.port_class is PortClass.USER and estab.interface == 3
    assert tw.state is SocketState.TIME_WAIT and tw.owner_note == NOTE_NO_PROCESS
    assert udp6.state is SocketState.UNCONN and udp6.exposure is Exposure.SPECIFIC
    assert not udp6.ephemeral  # reserved on this machine
    assert udp6.v6only is True and udp6.processes[0].pid == 100
    assert udp4.state is SocketState.ESTAB and udp4.owner_note == NOTE_NOT_FOUND
    # Root, but the descriptors of a process of the socket's user were refused.
    me = os.getuid()
    mine = RawSocket("udp", 4, 1, lo4, 5353, lo4, 53, 14, me, 0, 0, None, 0, None)
    refused = build_sockets(
        [mine],
        scan=OwnerScan({}, {}, refused=(os.getpid(),)),
        processes={},
        ranges=ranges,
        viewer_uid=me,
    )
    assert refused[0].owner_note == (
        f"held by a process whose descriptors cannot be read (pid {os.getpid()})"
    )
    # Not root, and the socket is another user's: hidden even when no walk failed.
    as_user = build_sockets(
        raws[4:],
        scan=OwnerScan({}, {}),
        processes={},
        ranges=ranges,
        viewer_uid=1000,
    )
    assert as_user[0].owner_note == NOTE_NOT_VISIBLE
    own = build_sockets(
        [raws[1]],
        scan=OwnerScan({}, {}),
        processes={},
        ranges=ranges,
        viewer_uid=1000,
    )
    assert own[0].uid == 1000 and own[0].owner_note == NOTE_NOT_FOUND
    no_walk = build_sockets(raws[:1], scan=None, processes={}, ranges=ranges)
    assert no_walk[0].processes == () and no_walk[0].owner_note is None
    assert (
        PortClass.DYNAMIC
        is build_sockets(
            [RawSocket("tcp", 4, 10, lo4, 50000, any4, 0, 1, 0, 0, 0, None, 0, ())],
            scan=None,
            processes={},
            ranges=ranges,
        )[0].port_class
    )


def test_whole_table_is_the_same_with_and_without_the_helper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import portbook._live.owners as live
    from tests.live_helpers import Row, portbook_rows

    def _ours(rows: set[Row], ports: set[int]) -> set[Row]:
        # This test's own sockets only: another program may use the same port
        # numbers on other loopback addresses (127.0.0.0/8 is all loopback).
        return {r for r in rows if (r[1], r[2]) in endpoints and (r[4] is None or r[4] in ports)}

    with open_sockets() as ss:
        listener = ss.tcp_listener()
        ss.tcp_pair(listener)
        ss.udp_bound()
        ports = {port_of(s) for s in ss.sockets}
        endpoints = {(str(s.getsockname()[0]), port_of(s)) for s in ss.sockets}
        monkeypatch.setattr(live, "HELPER_FROM", 0)
        with_helper = _ours(portbook_rows(list_sockets(), ports), ports)
        monkeypatch.setattr(live, "HELPER_FROM", 10**9)
        without = _ours(portbook_rows(list_sockets(), ports), ports)
    assert with_helper == without
    assert {r[5] for r in with_helper} >= {"LISTEN", "ESTAB", "UNCONN"}
    assert all(r[6] == frozenset({os.getpid()}) for r in with_helper)


def test_merging_two_walks_joins_shared_sockets() -> None:
    first = OwnerScan(single={1: 10, 2: 10, 3: 10}, shared={4: (10, 11)}, refused=(7,))
    second = OwnerScan(single={2: 20, 5: 20}, shared={3: (20, 21), 4: (22, 23)}, refused=(9, 8))
    merged = merge_scans(first, second)
    assert merged.single == {1: 10, 5: 20}
    assert merged.shared == {2: (10, 20), 3: (10, 20, 21), 4: (10, 11, 22, 23)}
    assert merged.hidden == 3 and merged.refused == (7, 8, 9)
    assert merge_scans(second, first).owners == merged.owners


class _RecordingBackend:
    """A backend at the designed seam: records the queries, returns fixed facts."""

    name = "fake"
    provides_owners = True

    def __init__(self) -> None:
        self.queries: list[TableQuery] = []

    def available(self) -> bool:
        return True

    def sockets(self, query: TableQuery) -> list[RawSocket]:
        self.queries.append(query)
        lo = bytes([127, 0, 0, 1])
        return [
            RawSocket(
                proto,
                4,
                10 if proto == "tcp" else 7,
                lo,
                7000,
                bytes(4),
                0,
                0,
                -1,
                0,
                0,
                None,
                0,
                (1,),
            )
            for proto in sorted(query.protocols)
        ]


def test_queries_reach_the_backend_as_kernel_state_masks() -> None:
    from portbook import SocketState

    backend = _RecordingBackend()
    found = list_sockets(listening=True, backend=backend)
    masks = {tuple(sorted(q.protocols)): q.state_mask for q in backend.queries}
    assert masks == {("tcp",): 1 << 10, ("udp",): 1 << 7}  # LISTEN; UNCONN is TCP_CLOSE
    assert {s.state for s in found} == {SocketState.LISTEN, SocketState.UNCONN}
    assert all(s.processes[0].pid == 1 for s in found)

    backend.queries.clear()
    list_sockets(states=["SYN-RECV"], protocols=["tcp"], families=[6], port=7000, backend=backend)
    (query,) = backend.queries
    assert query.state_mask == (1 << 3) | (1 << 12)  # request sockets: NEW_SYN_RECV too
    assert query.families == frozenset({6}) and query.ports == (7000, 7000)

    backend.queries.clear()
    assert list_sockets(states=["LISTEN"], protocols=["udp"], backend=backend) == []
    assert backend.queries == []  # no UDP state matches: nothing asked


def test_a_refused_netlink_dump_falls_back_to_proc_net(monkeypatch: pytest.MonkeyPatch) -> None:
    from portbook import SocketTableError
    from portbook._live import backends

    class Refused:
        name = "netlink"
        provides_owners = False

        def available(self) -> bool:
            return True

        def sockets(self, query: TableQuery) -> list[RawSocket]:
            raise SocketTableError("refused")

    monkeypatch.setattr(backends, "_chosen", Refused())
    with open_sockets() as ss:
        port = port_of(ss.tcp_listener())
        (found,) = list_sockets(port=port, listening=True)  # not a connection of the same number
    assert found.local_port == port and found.processes[0].pid == os.getpid()
