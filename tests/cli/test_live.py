"""The live-table commands: ls, who and ls --watch, in-process and as real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from portbook import Socket
from tests.conftest import run_cli, run_portbook
from tests.live_helpers import needs_ipv6, needs_linux, open_sockets, port_of, start_holder

pytestmark = needs_linux


def test_ls_shows_listeners_with_their_program() -> None:
    with open_sockets() as ss:
        listener = ss.tcp_listener()
        port = port_of(listener)
        ss.tcp_pair(listener)
        result = run_cli("ls", "--port", str(port))
    assert result.status == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if f":{port}" in line]
    assert len(lines) == 1  # the listener; the accepted connection is not listening
    assert "LISTEN" in lines[0] and f"[{os.getpid()}]" in lines[0]
    assert result.stdout.splitlines()[0].split()[:3] == ["PROTO", "STATE", "LOCAL"]


def test_no_arguments_is_ls() -> None:
    holder = start_holder()
    try:
        result = run_portbook()
    finally:
        holder.close()
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{holder.port}" in result.stdout
    assert f"[{holder.process.pid}]" in result.stdout


def test_ls_all_json_contract() -> None:
    with open_sockets() as ss:
        listener = ss.tcp_listener()
        port = port_of(listener)
        client, _server = ss.tcp_pair(listener)
        result = run_cli("ls", "--all", "--json", "--port", str(port))
        cport = port_of(client)
    assert result.status == 0, result.stderr
    # Another program's connection may use the same number as its own local port.
    rows = [r for r in json.loads(result.stdout) if r["remote_port"] in (None, cport)]
    assert {r["state"] for r in rows} == {"LISTEN", "ESTAB"}
    estab = next(r for r in rows if r["state"] == "ESTAB")
    assert estab["remote_port"] == cport and estab["remote_address"] == "127.0.0.1"
    for row in rows:
        assert row["protocol"] == "tcp" and row["family"] == 4
        assert row["processes"][0]["pid"] == os.getpid()
        assert {"inode", "uid", "service", "exposure"} <= row.keys()


def test_ls_filters_from_the_command_line() -> None:
    with open_sockets() as ss:
        tcp = ss.tcp_listener()
        udp = ss.udp_bound()
        lo, hi = sorted((port_of(tcp), port_of(udp)))
        span = f"{lo}-{hi}"

        def ports(*argv: str) -> set[tuple[str, int]]:
            result = run_cli("ls", "--json", "--port", span, *argv)
            assert result.status == 0, result.stderr
            return {
                (r["protocol"], r["local_port"])
                for r in json.loads(result.stdout)
                if r["local_port"] in (lo, hi)
            }

        both = {("tcp", port_of(tcp)), ("udp", port_of(udp))}
        assert ports() == both
        assert ports("--tcp") == {("tcp", port_of(tcp))}
        assert ports("--udp") == {("udp", port_of(udp))}
        assert ports("-6") == set()
        assert ports("-4") == both
        assert ports("--pid", str(os.getpid())) == both
        assert ports("--user", str(os.geteuid())) == both
        assert ports("--state", "UNCONN") == {("udp", port_of(udp))}
        assert ports("--program", "no-such-program") == set()


@pytest.mark.parametrize("form", ["{port}", "tcp/{port}", ":{port}", "127.0.0.1:{port}"])
def test_who_finds_every_socket_on_the_port(form: str) -> None:
    holder = start_holder(shared=True)
    try:
        result = run_cli("who", form.format(port=holder.port))
        as_json = run_cli("who", "--json", form.format(port=holder.port))
    finally:
        holder.close()
    assert result.status == 0, result.stderr
    assert f"127.0.0.1:{holder.port}" in result.stdout
    for pid in holder.pids:
        assert f"[{pid}]" in result.stdout
    (row,) = json.loads(as_json.stdout)
    assert sorted(p["pid"] for p in row["processes"]) == sorted(holder.pids)


@needs_ipv6
def test_who_with_an_ipv6_address() -> None:
    with open_sockets() as ss:
        port = port_of(ss.tcp_listener(socket.AF_INET6))
        result = run_cli("who", f"[::1]:{port}")
        other = run_cli("who", f"127.0.0.1:{port}")
    assert result.status == 0 and f"[::1]:{port}" in result.stdout
    assert other.status == 1


def test_who_on_a_free_port_exits_1() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = port_of(s)
    result = run_cli("who", str(port))
    assert result.status == 1 and "nothing" in result.stdout
    assert run_cli("who", "--json", str(port)).stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ["who", "70000"],
        ["who", "sctp/80"],
        ["who", "foo:bar:baz"],
        ["ls", "--state", "SLEEPY"],
        ["ls", "--port", "9-1"],
        ["ls", "--pid", "x"],
        ["ls", "--watch", "--interval", "0"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.status == 2, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("portbook: error:")


def test_help_says_root_shows_all_owners() -> None:
    for command in ("ls", "who"):
        result = run_portbook(command, "--help")
        assert result.returncode == 0
        assert "root" in result.stdout and "all owners" in " ".join(result.stdout.split())


# A shell starts background jobs with SIGINT ignored, and a child inherits
# that (Python then installs no KeyboardInterrupt handler). The watch test is
# about what Ctrl-C does, so its child restores Python's own handler first,
# whatever ran the tests.
_WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('portbook', run_name='__main__')"
)


def test_watch_prints_opened_and_closed_events_when_piped() -> None:
    import signal

    # The port is held from the start: a TCP socket that is only bound is in
    # no table the kernel reports, so it appears to the watch only at listen().
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    base = port_of(held)
    span = f"{max(base - 50, 1024)}-{min(base + 50, 65535)}"
    # Already listening when the watch starts: its "=" line says the first
    # refresh is done, so what listens after it is an opened socket.
    marker = socket.socket()
    for candidate in range(max(base - 50, 1024), min(base + 50, 65535) + 1):
        try:
            marker.bind(("127.0.0.1", candidate))
            break
        except OSError:
            continue
    marker.listen(1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WITH_CTRL_C,
            "ls",
            "--watch",
            "--interval",
            "0.05",
            "--count",
            "600",  # a bound: the watch ends by itself within a minute or so
            "--tcp",
            "--port",
            span,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    opened = f"+ tcp 127.0.0.1:{base} LISTEN"
    closed = f"- tcp 127.0.0.1:{base} LISTEN"

    def wait_for(prefix: str) -> str:
        assert proc.stdout is not None
        while line := proc.stdout.readline():
            if line.startswith(prefix):
                return line
        raise AssertionError(f"the watch ended without {prefix!r}")

    try:
        wait_for(f"= tcp 127.0.0.1:{port_of(marker)} LISTEN")
        with held:
            held.listen(1)
            # Held until the watch has seen it, however slow the machine.
            first = wait_for(opened)
        wait_for(closed)
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends the watch cleanly
        _out, err = proc.communicate(timeout=30)
    finally:
        held.close()
        marker.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert f"[{os.getpid()}]" in first
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_watch_on_a_terminal_redraws_a_table() -> None:
    result = run_cli("ls", "--watch", "--count", "2", "--interval", "0.01", tty=True)
    assert result.status == 0
    assert result.stdout.count("portbook ls --watch:") == 2 and "PROTO" in result.stdout


def test_who_by_service_name_uses_the_book() -> None:
    result = run_cli("who", "ssh")
    assert result.status in (0, 1), result.stderr  # 1: nothing listens on 22 here
    assert ":22" in result.stdout or "using 22" in result.stdout
    assert "ssh" in result.stdout  # the book's lines
    unknown = run_cli("who", "no-such-service-name-here")
    assert unknown.status == 1 and unknown.stderr.startswith("portbook: error:")


def test_watch_json_events_are_one_object_per_line() -> None:
    with open_sockets() as ss:
        port = port_of(ss.tcp_listener())
        result = run_cli(
            "ls", "--watch", "--json", "--count", "1", "--interval", "0.01", "--port", str(port)
        )
    assert result.status == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all(e["event"] == "opened" for e in events)
    assert any(e["socket"]["local_port"] == port for e in events)


def test_ls_and_who_leave_the_garbage_collector_running() -> None:
    import gc

    assert gc.isenabled()
    with open_sockets() as ss:
        port = port_of(ss.tcp_listener())
        assert run_cli("ls", "--all", "--json", "--port", str(port)).status == 0
        assert gc.isenabled()
        assert run_cli("who", str(port)).status == 0
        assert gc.isenabled()
    assert run_cli("who", "nosuchservicename").status != 0
    assert gc.isenabled()


def _table_of(sockets: list[Socket], *, tty: bool, width: int = 200) -> list[str]:
    import argparse
    import io

    from portbook._cli._output import Output
    from portbook._cli.live import _render

    out = io.StringIO()
    args = argparse.Namespace(sort="port", wide=False)
    _render(sockets, Output(out, io.StringIO(), tty=tty, width=width), args, show_peer=False)
    return out.getvalue().splitlines()


def test_container_unit_and_namespace_columns_appear_only_when_known() -> None:
    import ipaddress

    from portbook import (
        Container,
        Exposure,
        Family,
        Netns,
        NetnsKind,
        PortClass,
        Protocol,
        Published,
        Runtime,
        SocketProcess,
        SocketState,
        Unit,
    )

    def sock(port: int, name: str, **extra: object) -> Socket:
        proc = SocketProcess(7, name, (name,), "root")
        return Socket(
            Protocol.TCP, Family.INET, SocketState.LISTEN, ipaddress.ip_address("127.0.0.1"),
            port, None, None, port, 0, 0, 128, None, None, (proc,), None, None, PortClass.USER,
            False, Exposure.LOOPBACK, "root", **extra,  # type: ignore[arg-type]
        )  # fmt: skip

    plain = [sock(8000, "python3")]
    assert _table_of(plain, tty=False)[0].split() == [
        "PROTO", "STATE", "LOCAL", "USER", "SERVICE", "PROCESS",
    ]  # fmt: skip
    web = Container(Runtime.DOCKER, "ab" * 32, "web\x1b[2J")
    unit = Unit("docker.service", "service", "system", None, "system.slice", None, "/x")
    host = Netns(1, NetnsKind.HOST, "host", None, None, ())
    published = Published("docker-proxy", 7, "tcp", 8080, web, "172.17.0.2", 80)
    rich = [sock(8080, "docker-proxy", netns=host, container=web, unit=unit, published=published)]
    lines = _table_of(rich, tty=False)
    assert lines[0].split()[-3:] == ["NETNS", "CONTAINER", "UNIT"]
    # A hostile container name is shown escaped; the published port says where it leads.
    assert "web\\x1b[2J (docker) -> 172.17.0.2:80" in lines[1] and "\x1b" not in lines[1]
    assert lines[1].split()[-1] == "docker.service"
    # A narrow terminal drops USER, UNIT and SERVICE before the container.
    narrow = _table_of(rich, tty=True, width=95)
    assert "CONTAINER" in narrow[0] and "UNIT" not in narrow[0] and "USER" not in narrow[0]
