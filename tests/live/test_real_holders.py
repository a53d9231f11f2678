"""Holders as real programs make them: a socket passed to an unrelated process,
an IPv4 client of a dual-stack listener, a server running as another user.
``ss`` is the oracle where it can be."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, sock_diag")

# Waits on a Unix socket for one descriptor and holds it (it never made it).
_RECEIVER = """
import socket, sys, time
with socket.socket(socket.AF_UNIX) as unix:
    unix.bind(sys.argv[1])
    unix.listen()
    print("ready", flush=True)
    conn, _ = unix.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1, 1)
    held = socket.socket(fileno=fds[0])
    print("got", flush=True)
    time.sleep(120)
"""

# Makes a listener, passes it over the Unix socket and keeps its own copy.
_SENDER = """
import socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
with socket.socket(socket.AF_UNIX) as unix:
    unix.connect(sys.argv[1])
    socket.send_fds(unix, [b"x"], [listener.fileno()])
print(listener.getsockname()[1], flush=True)
time.sleep(120)
"""


def _child(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, **kwargs
    )


def _stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        proc.kill()
        proc.communicate()


@pytest.fixture
def passed(tmp_path: Path) -> Iterator[tuple[int, set[int]]]:
    """A listener held by its maker and by an unrelated process it was passed to."""
    path = str(tmp_path / "fd.sock")
    receiver = _child(_RECEIVER, path)
    assert receiver.stdout is not None and receiver.stdout.readline() == "ready\n"
    sender = _child(_SENDER, path)
    try:
        assert sender.stdout is not None
        port = int(sender.stdout.readline())
        assert receiver.stdout.readline() == "got\n"
        yield port, {sender.pid, receiver.pid}
    finally:
        _stop(sender, receiver)


def _pids(records: list[dict[str, object]]) -> set[int]:
    return {int(p["pid"]) for r in records for p in r["processes"]}  # type: ignore[attr-defined]


def _ss_pids(port: int) -> set[int]:
    shown = subprocess.run(
        ["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {int(part.split("=")[1]) for part in shown.replace(",", " ").split() if "pid=" in part}


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss")
def test_a_socket_passed_over_a_unix_socket_names_both_holders_everywhere(
    passed: tuple[int, set[int]],
) -> None:
    port, holders = passed
    assert _ss_pids(port) == holders  # the oracle sees both
    assert _pids(json.loads(run_cli("who", str(port), "--json").stdout)) == holders
    assert _pids(json.loads(run_cli("ls", "--port", str(port), "--json").stdout)) == holders
    dry = json.loads(run_cli("kill", str(port), "--dry-run", "--json").stdout)
    assert {h["pid"] for h in dry["holders"]} == holders


def test_kill_stops_both_holders_of_a_passed_socket(passed: tuple[int, set[int]]) -> None:
    port, holders = passed
    done = run_cli("kill", str(port), "--yes", "--json")
    result = json.loads(done.stdout)
    assert done.status == 0 and result["released"] is True, done
    assert set(result["signalled"]) == holders
    assert json.loads(run_cli("who", str(port), "--json").stdout) == []


def _ss_local_addresses(port: int) -> set[str]:
    shown = subprocess.run(
        ["ss", "-Htan", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    # ss writes [::ffff:127.0.0.1]:P (IPv6 in brackets) or 127.0.0.1:P.
    return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in shown.splitlines()}


@pytest.mark.ipv6
@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss")
def test_an_ipv4_client_of_a_dual_stack_listener_is_written_as_ss_writes_it() -> None:
    with socket.socket(socket.AF_INET6) as listener:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            with accepted:
                records = json.loads(run_cli("ls", "--all", "--port", str(port), "--json").stdout)
                by_ss = _ss_local_addresses(port)
                shown = run_cli("ls", "--all", "--port", str(port)).stdout
    # ss writes the dual-stack wildcard as *; the mapped address is the same text.
    assert by_ss == {"*", "::ffff:127.0.0.1"}
    assert {r["local_address"] for r in records} == {"::", "::ffff:127.0.0.1"}
    mapped = next(r for r in records if r["local_address"] == "::ffff:127.0.0.1")
    assert mapped["remote_address"] == "::ffff:127.0.0.1" and mapped["family"] == 6
    assert f"[::ffff:127.0.0.1]:{port}" in shown


# Started as root (the interpreter may sit where nobody can read), then drops to nobody.
_AS_NOBODY = """
import os, socket, time
os.setgroups([]); os.setgid(65534); os.setuid(65534)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(120)
"""


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_a_server_started_as_another_user_shows_that_user_for_the_socket_and_holder() -> None:
    import pwd

    nobody = pwd.getpwuid(65534)
    server = _child(_AS_NOBODY)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        (record,) = json.loads(run_cli("who", str(port), "--json").stdout)
        shown = run_cli("who", str(port)).stdout
        uid_by_ss = subprocess.run(
            ["ss", "-Htlne", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout
    finally:
        _stop(server)
    assert f"uid:{nobody.pw_uid}" in uid_by_ss
    assert record["uid"] == nobody.pw_uid and record["user"] == nobody.pw_name
    assert [(p["pid"], p["user"]) for p in record["processes"]] == [(server.pid, nobody.pw_name)]
    row = next(line for line in shown.splitlines() if f":{port}" in line)
    assert f" {nobody.pw_name} " in f" {row} "
