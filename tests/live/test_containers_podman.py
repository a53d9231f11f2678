"""Podman, for real: conmon (rootful) and rootlessport (rootless) hold published ports; which
container they lead into, the server inside, and the namespace each socket lives in."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap

import pytest

from portbook import Socket, list_sockets
from portbook._live.backends.base import TableQuery
from portbook._live.cgroups import Runtime
from portbook._live.containers import ContainerIndex
from portbook._live.nat import read_dnat_rules, rules_for_port
from portbook._live.netns import NetnsKind, find_namespaces, read_namespace_tables
from portbook._live.owners import scan_all
from portbook._live.published import published_by, published_by_rule
from portbook._proc import parent_pid
from tests.conftest import run_cli
from tests.live._containers import (
    ROOTLESS_USER,
    check_published,
    podman,
    podman_container,
    podman_ready,
)

pytestmark = [pytest.mark.linux, pytest.mark.root]

LISTEN_80 = TableQuery(frozenset({"tcp"}), state_mask=1 << 10, ports=(80, 80))


def _holder(port: int) -> Socket:
    found = list_sockets(protocols=["tcp"], port=port, listening=True)
    assert len(found) == 1, found
    assert found[0].processes, found[0]
    return found[0]


def test_rootful_conmon_holds_the_port_of_its_container() -> None:
    podman_ready()
    with podman_container() as c:
        holder = _holder(c.host_port)
        conmon = holder.processes[0]
        assert conmon.name == "conmon"
        index = ContainerIndex()
        published = published_by(index, conmon.pid, "tcp", "127.0.0.1", c.host_port)
        assert published is not None and published.container is not None
        assert (published.by, published.container.runtime) == ("conmon", Runtime.PODMAN)
        assert (published.container.id, published.container.name) == (c.id, c.name)
        assert (published.target_address, published.target_port) == (c.address, 80)
        assert published.container.uid is None  # root's own Podman
        member = index.container_of(c.pid)
        assert member is not None and (member.id, member.name, member.pid) == (c.id, c.name, c.pid)
        assert index.container_of(conmon.pid) is None
        assert parent_pid(c.pid) == conmon.pid
        # Its namespace: a file under /run/netns, named after the container it belongs to.
        ns = next(n for n in find_namespaces(containers=index) if c.pid in n.pids)
        assert (ns.kind, ns.name) == (NetnsKind.CONTAINER, c.name)
        assert ns.named is not None and ns.named.startswith("netns-")
        inner = read_namespace_tables([ns], LISTEN_80)[0]
        assert [r.local_port for r in inner.rows] == [80]
        assert scan_all().single.get(inner.rows[0].inode) == c.pid
        # netavark's DNAT rule names the container by id in its comment.
        rules = rules_for_port(read_dnat_rules().rules, "tcp", c.host_port, "127.0.0.1")
        assert rules
        by_rule = published_by_rule(ContainerIndex(), rules[0], c.host_port)
        assert by_rule.container is not None
        assert (by_rule.container.id, by_rule.container.name) == (c.id, c.name)
        assert (by_rule.target_address, by_rule.target_port) == (c.address, 80)
        check_published(c, "conmon")


def test_rootless_port_is_held_by_rootlessport_in_the_hosts_namespace() -> None:
    podman_ready(ROOTLESS_USER)
    uid = pwd.getpwnam(ROOTLESS_USER).pw_uid
    with podman_container(ROOTLESS_USER) as c:
        holder = _holder(c.host_port)
        forwarder = holder.processes[0]
        assert forwarder.name == "rootlessport"
        index = ContainerIndex()
        published = published_by(index, forwarder.pid, "tcp", "127.0.0.1", c.host_port)
        assert published is not None and published.container is not None
        assert (published.by, published.container.id, published.container.name) == (
            "rootlessport",
            c.id,
            c.name,
        )
        assert (published.container.uid, published.target_port) == (uid, 80)
        member = index.container_of(c.pid)  # no cgroup of its own: found through conmon
        assert member is not None
        assert (member.runtime, member.id, member.name, member.uid) == (
            Runtime.PODMAN,
            c.id,
            c.name,
            uid,
        )
        found = find_namespaces(containers=index)
        ns = next(n for n in found if c.pid in n.pids)
        assert (ns.kind, ns.name) == (NetnsKind.CONTAINER, c.name)
        # The trap: rootlessport's threads are in the container's namespace or the host's
        # (Go enters it from one of its threads: the main thread, seen as the process's
        # ns/net, is often the one, not always) ...
        tasks = os.listdir(f"/proc/{forwarder.pid}/task")
        spaces = {os.stat(f"/proc/{forwarder.pid}/task/{t}/ns/net").st_ino for t in tasks}
        assert found[0].inode in spaces
        if os.stat(f"/proc/{forwarder.pid}/ns/net").st_ino == ns.inode:
            assert forwarder.pid in ns.pids
        host, inner = read_namespace_tables([found[0], ns], TableQuery(frozenset({"tcp"})))
        # ... while its listening socket lives in the host's.
        assert holder.inode in {r.inode for r in host.rows}
        assert holder.inode not in {r.inode for r in inner.rows}
        listeners = [r for r in inner.rows if r.local_port == 80 and r.state == 10]
        assert [scan_all().single.get(r.inode) for r in listeners] == [c.pid]
        _as_the_user(ROOTLESS_USER, c.name, c.pid)
        check_published(c, "rootlessport")


def test_kill_container_stops_a_rootless_one_with_its_users_podman() -> None:
    podman_ready(ROOTLESS_USER)
    with podman_container(ROOTLESS_USER) as c:
        # tcp/: another container may publish the same number on UDP meanwhile.
        result = run_cli("kill", f"tcp/{c.host_port}", "--container", "--yes", "--timeout", "1")
        assert result.status == 0, result.stderr
        assert f"stopped container {c.name} (podman)" in result.stdout
        state = podman(ROOTLESS_USER, "inspect", "-f", "{{.State.Running}}", c.name)
        assert state is not None and state.strip() == "false"
        assert not list_sockets(protocols=["tcp"], port=c.host_port, listening=True)


_AS_USER = textwrap.dedent(
    """
    import encodings.ascii, json, os, sys
    from portbook._live.backends import netlink, procfs
    from portbook._live import walk, boltdb, runtimes, published, nat
    from portbook._live.backends.base import TableQuery
    from portbook._live.containers import ContainerIndex
    from portbook._live.netns import find_namespaces, read_namespace_tables
    import pwd
    entry = pwd.getpwnam(sys.argv[1])
    os.setgroups([]); os.setgid(entry.pw_gid); os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    index = ContainerIndex()
    found = find_namespaces(containers=index)
    ns = next(n for n in found if int(sys.argv[2]) in n.pids)
    table = read_namespace_tables([ns], TableQuery(frozenset({"tcp"}), state_mask=1 << 10))[0]
    member = index.container_of(int(sys.argv[2]))
    print(json.dumps({"name": ns.name, "kind": ns.kind.value, "method": table.method,
                      "ports": [r.local_port for r in table.rows],
                      "member": member.name if member else None}))
    """
)


def _as_the_user(user: str, name: str, pid: int) -> None:
    """The rootless user itself names its container and reads its namespace (through /proc)."""
    done = subprocess.run(
        [sys.executable, "-c", _AS_USER, user, str(pid)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {
        "name": name,
        "kind": "container",
        "method": "procfs",
        "ports": [80],
        "member": name,
    }
