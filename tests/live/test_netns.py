"""Network namespaces: a real `ip netns` namespace with a server in it, found, named and read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from portbook._exceptions import NotFoundError, UnsupportedError
from portbook._live.backends.base import TableQuery
from portbook._live.netns import (
    NetnsKind,
    find_namespaces,
    own_namespace,
    read_namespace,
    read_namespace_tables,
    select_namespaces,
)
from portbook._live.owners import scan_all
from tests.conftest import run_cli
from tests.live._containers import named_netns, server_in

pytestmark = [pytest.mark.linux, pytest.mark.netns, pytest.mark.root]

LISTENING = TableQuery(state_mask=(1 << 10) | (1 << 7))


def _ports(rows: object) -> set[tuple[str, int]]:
    return {(r.protocol, r.local_port) for r in rows}  # type: ignore[attr-defined]


def test_the_callers_own_namespace_comes_first_as_host() -> None:
    found = find_namespaces()
    assert found[0].kind is NetnsKind.HOST
    assert found[0].inode == own_namespace()
    assert found[0].name == "host"
    assert os.getpid() in found[0].pids
    assert select_namespaces("host", found) == [found[0]]
    assert select_namespaces(str(os.getpid()), found) == [found[0]]


def test_a_server_in_a_named_namespace_is_found_named_and_read() -> None:
    with named_netns() as name, server_in(name) as (child, tcp, udp):
        inode = os.stat(f"/run/netns/{name}").st_ino
        found = find_namespaces()
        ns = next(n for n in found if n.inode == inode)
        assert (ns.kind, ns.name, ns.named, ns.path) == (
            NetnsKind.NAMED,
            name,
            name,
            f"/run/netns/{name}",
        )
        assert child.pid in ns.pids
        # Every way of naming it selects it.
        for spec in (name, str(child.pid), f"/run/netns/{name}", f"/proc/{child.pid}/ns/net"):
            assert select_namespaces(spec, found) == [ns], spec
        tables = read_namespace_tables([found[0], ns], LISTENING)
        host, inner = tables
        assert inner.method == "netlink" and inner.note is None
        assert {("tcp", tcp), ("udp", udp)} <= _ports(inner.rows)
        # Not in the host's table: the sockets belong to the namespace, not to the machine.
        inodes = {r.inode for r in inner.rows if r.local_port in (tcp, udp)}
        assert not inodes & {r.inode for r in host.rows}
        # The owners walk is namespace-blind: the inner sockets' holder is the server.
        scan = scan_all()
        assert {scan.single.get(i) for i in inodes} == {child.pid}
        assert _ports(read_namespace(ns, LISTENING).rows) == _ports(inner.rows)
        # One query per protocol, as the live table asks: the namespace is entered once.
        per_protocol = [
            TableQuery(frozenset({"tcp"}), state_mask=1 << 10),
            TableQuery(frozenset({"udp"}), state_mask=1 << 7),
        ]
        assert _ports(read_namespace(ns, per_protocol).rows) == _ports(inner.rows)
        _same_as_ss(name, inner.rows)


def _same_as_ss(name: str, rows: object) -> None:
    """`ss -N NAME` as the oracle for the namespace's listening sockets."""
    if shutil.which("ss") is None:
        return
    out = subprocess.run(
        ["ss", "-N", name, "-H", "-tuln"], capture_output=True, text=True, check=True
    ).stdout
    seen = set()
    for line in out.splitlines():
        fields = line.split()
        seen.add((fields[0], int(fields[4].rpartition(":")[2])))
    assert seen == _ports(rows)


def test_an_empty_named_namespace_reads_as_empty_and_a_bad_spec_is_refused() -> None:
    with named_netns() as name:
        found = find_namespaces()
        ns = select_namespaces(name, found)[0]
        assert ns.pids == ()
        table = read_namespace_tables([ns], LISTENING)[0]
        assert (table.rows, table.note, table.method) == ((), None, "netlink")
    with pytest.raises(NotFoundError, match="no network namespace named"):
        select_namespaces("portbook-no-such-namespace", find_namespaces())
    with pytest.raises(NotFoundError):
        select_namespaces("/nonexistent/netns", find_namespaces())


_UNPRIVILEGED = textwrap.dedent(
    """
    import encodings.ascii, json, os, sys
    from portbook._live.backends import netlink, procfs
    from portbook._live import walk
    from portbook._live.backends.base import TableQuery
    from portbook._live.netns import find_namespaces, read_namespace, read_namespace_tables
    from portbook._exceptions import UnsupportedError
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    found = find_namespaces()
    tables = read_namespace_tables(found, TableQuery(state_mask=(1 << 10) | (1 << 7)))
    out = [[t.netns.name, t.netns.inode, list(t.netns.pids), t.method, t.note,
            sorted([r.protocol, r.local_port] for r in t.rows)] for t in tables]
    named = next(t.netns for t in tables if t.netns.name == sys.argv[1])
    try:
        read_namespace(named, TableQuery())
        refused = None
    except UnsupportedError as exc:
        refused = str(exc)
    print(json.dumps({"tables": out, "refused": refused}))
    """
)


def test_without_root_other_namespaces_are_read_from_proc_or_marked() -> None:
    with named_netns() as name, server_in(name) as (child, tcp, udp):
        done = subprocess.run(
            [sys.executable, "-c", _UNPRIVILEGED, name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
    tables = {t[0]: t for t in seen["tables"]}
    # The named namespace: this user may not enter it and sees none of its processes
    # by namespace, so it has a note and no rows ...
    assert tables[name][4] and not tables[name][5]
    assert "needs root" in seen["refused"]
    # ... while the server's own /proc/PID/net shows its sockets, as a namespace known
    # only by that process.
    by_server = tables[f"pid:{child.pid}"]
    assert by_server[1] is None and by_server[2] == [child.pid]
    assert by_server[3] == "procfs"
    assert {("tcp", tcp), ("udp", udp)} <= {tuple(r) for r in by_server[5]}


def test_read_namespace_raises_when_a_namespace_is_gone() -> None:
    with named_netns() as name:
        ns = select_namespaces(name, find_namespaces())[0]
    # The file is gone and no process holds it: nothing to enter, nothing to read.
    with pytest.raises(UnsupportedError, match="cannot read network namespace"):
        read_namespace(ns, LISTENING)


def _cli_json(*argv: str) -> tuple[int, object, str]:
    result = run_cli(*argv, "--json")
    return (
        result.status,
        json.loads(result.stdout) if result.stdout.strip() else None,
        result.stderr,
    )


def test_who_ls_route_and_check_reach_a_server_in_a_named_namespace() -> None:
    with named_netns() as name, server_in(name) as (child, tcp, udp):
        status, sockets, err = _cli_json("who", str(tcp), "--netns", name)
        assert status == 0, err
        assert isinstance(sockets, list) and len(sockets) == 1
        (s,) = sockets
        assert (s["netns"]["kind"], s["netns"]["name"], s["netns"]["named"]) == (
            "named",
            name,
            name,
        )
        assert [p["pid"] for p in s["processes"]] == [child.pid]
        assert s["container"] is None and s["published"] is None
        # Every namespace at once: the server's two sockets, marked with theirs.
        status, listed, err = _cli_json("ls", "--netns", "all")
        assert status == 0, err
        assert isinstance(listed, list)
        mine = {
            (x["protocol"], x["local_port"])
            for x in listed
            if x["netns"]["name"] == name and x["processes"][0]["pid"] == child.pid
        }
        assert mine == {("tcp", tcp), ("udp", udp)}
        # route decides inside the namespace, on its loopback.
        status, routed, err = _cli_json("route", "tcp", f"127.0.0.1:{tcp}", "--netns", name)
        assert status == 0, err
        assert isinstance(routed, dict)
        assert routed["rule"] == "exact-listener" and routed["netns"]["name"] == name
        assert [p["pid"] for p in routed["socket"]["processes"]] == [child.pid]
        # check binds inside the namespace: taken there, by the server.
        status, checked, err = _cli_json("check", str(tcp), "--netns", name, "-4")
        assert status == 1, err
        assert isinstance(checked, dict)
        (one,) = checked["checks"]
        assert one["netns"]["name"] == name and one["error"] == "EADDRINUSE"
        assert [r["kind"] for r in one["reasons"] if r["blocks"]] == ["listener"]
        # Without --netns the host table is shown, with a note where the port is in use.
        plain = run_cli("who", str(tcp))
        assert f"{name} (1)" in plain.stderr and "--netns all" in plain.stderr


# The same command once as root first, output dropped: every module it imports is loaded
# before the privileges go (the interpreter's own files may be unreadable to nobody).
_AS_NOBODY = textwrap.dedent(
    """
    import encodings.ascii, io, os, sys
    from portbook._cli import main
    from portbook._cli._output import Output
    main(sys.argv[1:], Output(io.StringIO(), io.StringIO()))
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    sys.exit(main(sys.argv[1:]))
    """
)


def test_without_root_ls_netns_all_says_what_it_could_not_enter() -> None:
    with named_netns() as name, server_in(name):
        done = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, "ls", "--netns", "all"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"network namespace {name} not read" in done.stderr
        assert "needs root" in done.stderr


def test_a_port_only_a_dnat_rule_forwards_is_shown_by_who_and_route() -> None:
    """In a namespace of the test's own: an nft DNAT rule and no socket on the port."""
    import random

    if shutil.which("nft") is None:
        pytest.skip("needs nft (nftables)")
    port = random.randint(20000, 60000)  # a fresh namespace: every port is free there
    with named_netns() as name:
        nft = ["ip", "netns", "exec", name, "nft"]
        script = (
            "add table ip portbook_test\n"
            "add chain ip portbook_test out { type nat hook output priority -100 ; }\n"
            f"add rule ip portbook_test out tcp dport {port} dnat to 10.99.0.2:8080\n"
        )
        made = subprocess.run(
            [*nft, "-f", "-"], input=script, text=True, capture_output=True, check=False
        )
        if made.returncode != 0:
            pytest.skip(f"cannot add an nft rule here: {made.stderr.strip()}")
        inside = ["ip", "netns", "exec", name, sys.executable, "-m", "portbook"]
        who = subprocess.run(
            [*inside, "who", f"tcp/{port}"], capture_output=True, text=True, check=False
        )
        assert who.returncode == 1, who.stderr  # no socket holds it
        assert f"a DNAT rule forwards tcp/{port} to 10.99.0.2:8080" in who.stdout, who.stdout
        routed = subprocess.run(
            [*inside, "route", "tcp", f"127.0.0.1:{port}", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert routed.returncode == 0, routed.stderr
        answer = json.loads(routed.stdout)
        assert answer["rule"] == "dnat"
        assert answer["published"]["target"]["address"] == "10.99.0.2"
        assert answer["published"]["rule"]["table"] == "ip portbook_test"


def test_a_file_that_holds_no_namespace_is_refused() -> None:
    with pytest.raises(NotFoundError, match="is not a network namespace file"):
        select_namespaces("/etc/hostname", find_namespaces())
    result = run_cli("ls", "--netns", "/etc/hostname")
    assert result.status == 1 and "not a network namespace file" in result.stderr
