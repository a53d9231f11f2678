"""portbook's table against other readers of the same sockets: ss, /proc/net, psutil,
an unprivileged reader, and a network namespace the test owns whole."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from portbook import (
    NetlinkBackend,
    ProcfsBackend,
    PsutilBackend,
    Socket,
    ipv6_available,
    list_sockets,
)
from tests.live_helpers import (
    Row,
    SocketSet,
    needs_linux,
    needs_root,
    needs_ss,
    open_sockets,
    port_of,
    portbook_rows,
    ss_rows,
    start_holder,
)

pytestmark = needs_linux


@contextmanager
def quiet_set() -> Iterator[tuple[SocketSet, set[int]]]:
    """Every kind of socket the table shows, on ports this test owns; holders included."""
    holders = [start_holder(4), start_holder(4, shared=True)]
    try:
        with open_sockets() as ss:
            families = [socket.AF_INET] + ([socket.AF_INET6] if ipv6_available() else [])
            for family in families:
                listener = ss.tcp_listener(family)
                ss.tcp_pair(listener)
                bound = ss.udp_bound(family)
                ss.udp_connected(bound)
            ports = {port_of(s) for s in ss.sockets} | {h.port for h in holders}
            yield ss, ports
    finally:
        for holder in holders:
            holder.close()


def _ours(rows: set[Row], ports: set[int]) -> set[Row]:
    # Both ends on the test's own ports: another program's connection that
    # happens to use one of these numbers as its ephemeral port is not ours.
    return {r for r in rows if r[2] in ports and (r[4] is None or r[4] in ports)}


@needs_ss
def test_the_table_equals_ss_at_the_same_moment() -> None:
    with quiet_set() as (_ss, ports):
        ours = _ours(portbook_rows(list_sockets(), ports), ports)
        theirs = _ours(ss_rows(ports), ports)
    assert ours == theirs
    states = {r[5] for r in ours}
    assert {"LISTEN", "ESTAB", "UNCONN"} <= states
    assert any(len(r[6]) == 2 for r in ours)  # the shared socket, both owners


def _facts(sockets: list[Socket], ports: set[int]) -> set[tuple[object, ...]]:
    return {
        (
            s.protocol,
            s.family,
            s.state,
            s.local_address,
            s.local_port,
            s.remote_address,
            s.remote_port,
            s.inode,
            s.uid,
            s.recv_queue,
            # A listener's send queue is its backlog limit over netlink (as
            # ss shows it); /proc/net cannot tell it.
            None if s.listening else s.send_queue,
            tuple(p.pid for p in s.processes),
            s.service,
            s.exposure,
            s.ephemeral,
        )
        for s in sockets
        if s.local_port in ports and (s.remote_port is None or s.remote_port in ports)
    }


def test_procfs_and_netlink_backends_agree() -> None:
    with quiet_set() as (_ss, ports):
        netlink = list_sockets(backend=NetlinkBackend())
        procfs = list_sockets(backend=ProcfsBackend())
        # and with kernel-side filters against Python-side ones
        listening_n = list_sockets(listening=True, backend=NetlinkBackend())
        listening_p = list_sockets(listening=True, backend=ProcfsBackend())
        one_port = min(ports)
        port_n = list_sockets(port=one_port, backend=NetlinkBackend())
        port_p = list_sockets(port=one_port, backend=ProcfsBackend())
    assert _facts(netlink, ports) == _facts(procfs, ports)
    assert len(_facts(netlink, ports)) >= 8
    assert _facts(listening_n, ports) == _facts(listening_p, ports)
    assert _facts(port_n, ports) == _facts(port_p, ports) != set()


def test_psutil_backend_sees_the_same_sockets() -> None:
    pytest.importorskip("psutil")
    with quiet_set() as (_ss, ports):
        netlink = portbook_rows(list_sockets(backend=NetlinkBackend()), ports)
        via_psutil = portbook_rows(list_sockets(backend=PsutilBackend()), ports)
    # psutil names one process per socket (on Linux it keeps the last pid
    # seen for an inode), so a shared socket shows one of its two owners.
    by_socket = {r[:6]: r[6] for r in _ours(netlink, ports)}
    psutil_by_socket = {r[:6]: r[6] for r in _ours(via_psutil, ports)}
    assert psutil_by_socket.keys() == by_socket.keys()
    for key, pids in psutil_by_socket.items():
        assert pids and pids <= by_socket[key], key


_UNPRIVILEGED = textwrap.dedent(
    """
    import json, os, socket, sys
    from portbook import list_sockets
    list_sockets()  # load every module while the files can still be read
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    own.bind(("127.0.0.1", 0))
    ports = set(json.loads(sys.argv[1])) | {own.getsockname()[1]}
    rows = [
        [s.protocol.value, str(s.local_address), s.local_port, s.state.value, s.uid,
         [p.pid for p in s.processes], s.owner_note]
        for s in list_sockets() if s.local_port in ports
    ]
    print(json.dumps({"own": own.getsockname()[1], "pid": os.getpid(), "rows": rows}))
    """
)


@needs_root
def test_without_root_every_socket_is_listed_and_hidden_owners_are_marked() -> None:
    with quiet_set() as (_ss, ports):
        as_root = {
            (s.protocol.value, str(s.local_address), s.local_port, s.state.value)
            for s in list_sockets()
            if s.local_port in ports and (s.remote_port is None or s.remote_port in ports)
        }
        result = subprocess.run(
            [sys.executable, "-c", _UNPRIVILEGED, json.dumps(sorted(ports))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    rows = seen["rows"]
    listed = {(r[0], r[1], r[2], r[3]) for r in rows if r[2] in ports}
    assert as_root <= listed
    for proto, addr, port, state, uid, pids, note in rows:
        if port == seen["own"] and proto == "udp":
            assert pids == [seen["pid"]] and uid == 65534  # its own socket: visible
        elif (proto, addr, port, state) in as_root:
            # Only this test's sockets: another program's socket may share a port
            # number on another address (or be in TIME-WAIT, held by no process).
            assert pids == [] and note == "not visible without root" and uid == os.geteuid()


_NETNS = textwrap.dedent(
    """
    import json, socket, subprocess
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from portbook import list_sockets
    keep = []
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(4)
    client = socket.socket(); client.connect(listener.getsockname())
    server, _ = listener.accept()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
    table = [
        [s.protocol.value, str(s.local_address), s.local_port,
         None if s.remote_address is None else str(s.remote_address), s.remote_port,
         s.state.value, [p.pid for p in s.processes]]
        for s in list_sockets(states=None, listening=False)
    ]
    ss = subprocess.run(["ss", "-tuanpH"], capture_output=True, text=True, check=True).stdout
    import os
    print(json.dumps({"table": table, "ss": ss, "pid": os.getpid(),
                      "ports": [listener.getsockname()[1], client.getsockname()[1],
                                udp.getsockname()[1]]}))
    """
)


@pytest.mark.netns
def test_in_a_network_namespace_of_its_own_the_whole_table_is_exact() -> None:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip")
    # Root makes a plain network namespace; anyone else needs a user namespace
    # around it (where the machine allows unprivileged user namespaces).
    flags = ["--net"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--net"]
    probe = subprocess.run([unshare, *flags, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("network namespaces are not allowed here")
    result = subprocess.run(
        [unshare, *flags, sys.executable, "-c", _NETNS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    lport, cport, uport = seen["ports"]
    pid = seen["pid"]
    table = {tuple(tuple(x) if isinstance(x, list) else x for x in row) for row in seen["table"]}
    assert table == {
        ("tcp", "127.0.0.1", lport, None, None, "LISTEN", (pid,)),
        ("tcp", "127.0.0.1", cport, "127.0.0.1", lport, "ESTAB", (pid,)),
        ("tcp", "127.0.0.1", lport, "127.0.0.1", cport, "ESTAB", (pid,)),
        ("udp", "127.0.0.1", uport, None, None, "UNCONN", (pid,)),
    }
    assert len(seen["ss"].splitlines()) == len(table)  # ss sees exactly as many
