"""Many real processes at once: no port handed out twice, no bind failure, no name lost."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from portbook import PortRange, RangeExhaustedError, Store, list_names, pick_port
from portbook._names.holder import Holder, process_start_time
from tests.names._support import python_child, single, spare_port

WORKERS = 16

# Picks PICKS ports, binds each (TCP, IPv4 and IPv6 as picked) after a random
# 0-100 ms delay, holds them all, reports, and waits for stdin to close.
_PICKER = """
import json, random, socket, sys, time
from portbook import Store, pick_port
store = Store(sys.argv[1])
picks = int(sys.argv[2])
ports, failures, held = [], [], []
for _ in range(picks):
    lease = pick_port(store=store)
    time.sleep(random.uniform(0, 0.1))
    for family in lease.families:
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        s = socket.socket(af, socket.SOCK_STREAM)
        if af == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            s.bind(("0.0.0.0" if af == socket.AF_INET else "::", lease.port))
            s.listen()
            held.append(s)
        except OSError as exc:
            failures.append([lease.port, family, exc.strerror])
            s.close()
    ports.append(lease.port)
print(json.dumps({"ports": ports, "failures": failures}), flush=True)
sys.stdin.read()
"""

_ASSIGNER = """
import sys
from portbook import Store, assign
store = Store(sys.argv[1])
worker = sys.argv[2]
sys.stdin.readline()  # start together
for i in range(20):
    assign(f"w{worker}-{i}", store=store)
print("done", flush=True)
"""


@pytest.mark.slow
def test_16_processes_picking_and_binding_never_collide(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"  # not created yet: the workers race to create it too
    children = [python_child(_PICKER, str(path), "5") for _ in range(WORKERS)]
    reports = []
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            reports.append(json.loads(line))
    finally:
        for child in children:
            child.communicate(input="", timeout=60)
    ports = [p for r in reports for p in r["ports"]]
    assert len(ports) == WORKERS * 5
    assert len(set(ports)) == len(ports), "a port was handed out twice while held"
    assert [f for r in reports for f in r["failures"]] == []


@pytest.mark.slow
def test_16_processes_assigning_20_names_each(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"  # not created yet: the workers race to create it too
    children = [python_child(_ASSIGNER, str(path), str(w)) for w in range(WORKERS)]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.strip() == "done"
    with Store(path) as store:
        names = list_names(store=store)
    assert len(names) == WORKERS * 20
    assert {a.name for a in names} == {f"w{w}-{i}" for w in range(WORKERS) for i in range(20)}
    assert len({a.port for a in names}) == len(names)


def test_sigkilled_holder_gives_its_port_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    port = spare_port(tmp_path)
    code = """
import sys
from portbook import PortRange, Store, pick_port
port = int(sys.argv[2])
lease = pick_port(port_range=PortRange(port, port), store=Store(sys.argv[1]))
print(lease.port, flush=True)
sys.stdin.read()
"""
    child = python_child(code, str(path), str(port))
    try:
        assert child.stdout is not None
        assert int(child.stdout.readline()) == port
        with Store(path) as store, pytest.raises(RangeExhaustedError):
            pick_port(port_range=single(port), store=store)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        # A killed process is a zombie until reaped; reaped here, it is gone.
        with Store(path) as store:
            assert pick_port(port_range=single(port), store=store).port == port
    finally:
        child.kill()
        child.communicate()


def test_a_reused_pid_does_not_keep_the_lease(tmp_path: Path) -> None:
    """The lease names its holder by pid and start time: another process with that pid is
    a stranger. Simulated through the designed seam, a Holder whose recorded start time
    is not the start time of the live process that has the pid now."""
    port = spare_port(tmp_path)
    with Store(tmp_path / "s.sqlite3") as store:
        child = python_child("import sys; sys.stdin.read()")
        try:
            now = process_start_time(child.pid)
            assert now is not None
            pick_port(port_range=single(port), holder=Holder(child.pid, now), store=store)
            with pytest.raises(RangeExhaustedError):
                pick_port(port_range=single(port), store=store)
            # Same port, same pid, but the process that started then is gone.
            other = spare_port(tmp_path)
            stale = Holder(child.pid, now + 12345)
            pick_port(port_range=single(other), holder=stale, store=store)
            assert pick_port(port_range=single(other), store=store).port == other
        finally:
            child.communicate(input="")


def test_a_pick_waits_for_a_concurrent_writer_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    code = """
import sys, time
from portbook import Store
with Store(sys.argv[1]).write() as conn:
    print("locked", flush=True)
    time.sleep(0.3)
"""
    Store(path).close()
    child = python_child(code, str(path))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with Store(path) as store:
            pick_port(port_range=PortRange(1024, 65535), store=store)
        assert time.monotonic() - started >= 0.1
    finally:
        child.communicate()


_BINDER = """
import json, sys
from portbook import Store, bind_free_port
store = Store(sys.argv[1])
sys.stdin.readline()  # start together
held = [bind_free_port(host="127.0.0.1", store=store) for _ in range(5)]
print(json.dumps([sock.getsockname()[1] for sock, _ in held]), flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_concurrent_bind_free_port_hands_out_bound_distinct_ports(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    children = [python_child(_BINDER, str(path)) for _ in range(8)]
    ports: list[int] = []
    try:
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            ports += json.loads(line)
    finally:
        for child in children:
            child.communicate(input="", timeout=60)
    assert len(ports) == 40 and len(set(ports)) == 40


_FIRST_OPENER = """
import sys
from portbook import Store, assign
store = Store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # start together
assign(sys.argv[2], store=store)
print("done", flush=True)
"""


@pytest.mark.slow
def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Turning a new file into a WAL database is raced by every first opener.

    SQLite answers that race with an immediate "database is locked" (no busy
    handler); the store must wait it out instead of failing.
    """
    for round_ in range(8):
        path = tmp_path / f"s{round_}.sqlite3"  # not created yet
        children = [python_child(_FIRST_OPENER, str(path), f"n{i}") for i in range(8)]
        try:
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
            for child in children:
                assert child.stdin is not None
                child.stdin.write("\n")
                child.stdin.flush()
            for child in children:
                out, err = child.communicate(timeout=60)
                assert child.returncode == 0, err
                assert out.strip() == "done"
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.communicate()
        assert {a.name for a in list_names(store=Store(path))} == {f"n{i}" for i in range(8)}
