"""Docker, for real: who holds a published port (docker-proxy, or dockerd without the userland
proxy), which container it leads into, the server inside and its namespace."""

from __future__ import annotations

import pytest

from portbook import Socket, list_sockets
from portbook._live.backends.base import TableQuery
from portbook._live.cgroups import Runtime
from portbook._live.containers import ContainerIndex
from portbook._live.nat import read_dnat_rules, rules_for_port
from portbook._live.netns import NetnsKind, find_namespaces, read_namespace
from portbook._live.owners import scan_all
from portbook._live.published import published_by, published_by_rule
from portbook._proc import parent_pid
from tests.conftest import run_cli
from tests.live._containers import (
    Running,
    check_published,
    docker_container,
    docker_lock,
    dockerd_without_userland_proxy,
    run,
)

pytestmark = [pytest.mark.linux, pytest.mark.root]


def _holder(port: int, protocol: str = "tcp") -> Socket:
    found = [
        s
        for s in list_sockets(protocols=[protocol], port=port, listening=True)
        if str(s.local_address) == "127.0.0.1"
    ]
    assert len(found) == 1, found
    assert found[0].processes, found[0]
    return found[0]


def _udp_port(name: str) -> int:
    return int(run("docker", "port", name, "5353/udp").strip().rpartition(":")[2])


def _check_inside(index: ContainerIndex, c: Running) -> None:
    """The server is in the container; its namespace is the container's and holds it."""
    member = index.container_of(c.pid)
    assert member is not None
    assert (member.runtime, member.id, member.name, member.pid) == (
        Runtime.DOCKER,
        c.id,
        c.name,
        c.pid,
    )
    shim = parent_pid(c.pid)
    assert shim is not None
    monitored = index.monitored_by(shim)
    assert monitored is not None and monitored.id == c.id
    assert index.container_of(shim) is None  # the shim watches the container from outside
    found = find_namespaces(containers=index)
    ns = next(n for n in found if n.container is not None and n.container.id == c.id)
    assert (ns.kind, ns.name) == (NetnsKind.CONTAINER, c.name)
    assert ns.path is not None and "/docker/netns/" in ns.path
    table = read_namespace(ns, TableQuery(frozenset({"tcp"}), state_mask=1 << 10, ports=(80, 80)))
    assert [r.local_port for r in table.rows] == [80]
    assert scan_all().single.get(table.rows[0].inode) == c.pid


def _check_rule(index: ContainerIndex, c: Running) -> None:
    rules = rules_for_port(read_dnat_rules().rules, "tcp", c.host_port, "127.0.0.1")
    assert rules, f"no DNAT rule for {c.host_port}"
    by_rule = published_by_rule(index, rules[0], c.host_port)
    assert by_rule.container is not None and by_rule.container.id == c.id
    assert (by_rule.by, by_rule.target_address, by_rule.target_port) == ("dnat", c.address, 80)


def test_docker_proxy_holds_the_port_and_leads_into_the_container() -> None:
    with docker_lock(exclusive=False), docker_container("127.0.0.1::5353/udp") as c:
        holder = _holder(c.host_port)
        proxy = holder.processes[0]
        if proxy.name != "docker-proxy":
            pytest.skip(f"dockerd runs without the userland proxy here ({proxy.name} holds it)")
        index = ContainerIndex()
        published = published_by(index, proxy.pid, "tcp", "127.0.0.1", c.host_port)
        assert published is not None
        assert published.container is not None
        assert (published.by, published.holder) == ("docker-proxy", proxy.pid)
        assert (published.container.id, published.container.name) == (c.id, c.name)
        assert (published.target_address, published.target_port) == (c.address, 80)
        assert index.container_of(proxy.pid) is None  # the proxy is the host's
        udp_port = _udp_port(c.name)
        udp = _holder(udp_port, "udp").processes[0]
        by_udp = published_by(index, udp.pid, "udp", "127.0.0.1", udp_port)
        assert by_udp is not None and by_udp.container is not None
        assert (by_udp.container.id, by_udp.target_port) == (c.id, 5353)
        _check_inside(index, c)
        _check_rule(index, c)
        check_published(c, "docker-proxy")
        # The metrics name the container behind the port, not the proxy alone.
        from portbook._serve.metrics import listener_labels

        labels = listener_labels(_holder(c.host_port), {})
        assert (labels["program"], labels["container"], labels["netns"]) == (
            "docker-proxy",
            c.name,
            "",
        )


def test_kill_container_stops_it_with_docker_and_frees_the_port() -> None:
    with docker_lock(exclusive=False), docker_container() as c:
        # tcp/: another container may publish the same number on UDP meanwhile.
        result = run_cli("kill", f"tcp/{c.host_port}", "--container", "--yes", "--timeout", "1")
        assert result.status == 0, result.stderr
        assert f"stopped container {c.name} (docker)" in result.stdout
        assert "released" in result.stdout
        state = run("docker", "inspect", "-f", "{{.State.Running}}", c.name).strip()
        assert state == "false"
        assert not list_sockets(protocols=["tcp"], port=c.host_port, listening=True)


@pytest.mark.slow
def test_dockerd_itself_holds_the_port_without_the_userland_proxy() -> None:
    """Restarts dockerd twice (a few seconds): the mode is a daemon option."""
    with (
        docker_lock(exclusive=True),
        dockerd_without_userland_proxy(),
        docker_container() as c,
    ):
        holder = _holder(c.host_port)
        daemon = holder.processes[0]
        assert daemon.name == "dockerd"
        index = ContainerIndex()
        published = published_by(index, daemon.pid, "tcp", "127.0.0.1", c.host_port)
        assert published is not None
        assert published.container is not None
        assert (published.by, published.container.id, published.container.name) == (
            "dockerd",
            c.id,
            c.name,
        )
        assert (published.target_address, published.target_port) == (c.address, 80)
        _check_inside(index, c)
        _check_rule(index, c)
        check_published(c, "dockerd")
        # dockerd only reserves the port: route says the DNAT rule carries the traffic.
        routed = run_cli("route", "tcp", f"127.0.0.1:{c.host_port}")
        assert routed.status == 0 and "DNAT rule sends the traffic" in routed.stdout
