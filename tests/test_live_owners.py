"""Owners: the whole walk (here and in its helper), the targeted walk; /proc/net parsing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from portbook import ProcfsBackend, list_sockets
from portbook._backends.base import TableQuery
from portbook._owners import BackgroundWalk, find_owners, process_details, scan_all
from tests.conftest import run_cli
from tests.live_helpers import needs_linux, open_sockets, port_of

pytestmark = needs_linux

_MANY = textwrap.dedent(
    """
    import socket, sys
    keep = []
    for _ in range(int(sys.argv[1])):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        keep.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in keep), flush=True)
    sys.stdin.read()
    """
)


def test_targeted_walk_finds_sockets_inside_a_process_with_many_descriptors() -> None:
    # 300 sockets: large enough that the walk probes this process instead of
    # reading it whole, and reads outward from its best guess.
    child = subprocess.Popen(
        [sys.executable, "-c", _MANY, "300"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ports = [int(p) for p in child.stdout.readline().split()]
        sockets = {s.local_port: s for s in list_sockets(protocols=["udp"], owners=False)}
        inodes = [sockets[p].inode for p in ports]
        for pick in (inodes[0], inodes[150], inodes[-1]):
            scan = find_owners([pick])
            assert scan.owners == {pick: [child.pid]}
        everything = find_owners(inodes)
        assert everything.owners == {i: [child.pid] for i in inodes}
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
    assert background.owners[inode] == here.owners[inode] == [os.getpid()]
    assert background.hidden == here.hidden


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
    listener = next(r for r in raw if r[7] == 4242)
    assert listener[:5] == ("tcp", 4, 10, bytes([127, 0, 0, 1]) if little else listener[3], 8080)
    assert listener[8] == 1000 and listener[9] == 3
    conn = next(r for r in raw if r[7] == 4243)
    assert (conn[2], conn[4], conn[6], conn[9], conn[10]) == (1, 50000, 8080, 0x20, 0x10)
    v6 = next(r for r in raw if r[7] == 99)
    if little:
        assert v6[3] == socket.inet_pton(socket.AF_INET6, "::1")
    udp = next(r for r in raw if r[7] == 77)
    assert (udp[0], udp[2], udp[4], udp[8]) == ("udp", 7, 53, 101)
    only = list(backend.sockets(TableQuery(state_mask=1 << 10, ports=(8000, 9000))))
    assert [r[7] for r in only] == [4242]
    assert not ProcfsBackend(str(tmp_path / "missing")).available()


def test_who_localhost_matches_loopback_sockets() -> None:
    with open_sockets() as ss:
        port = port_of(ss.tcp_listener(socket.AF_INET))
        result = run_cli("who", f"localhost:{port}")
        bad = run_cli("who", f"example.org:{port}")
    assert result.status == 0 and f"127.0.0.1:{port}" in result.stdout
    assert bad.status == 2
