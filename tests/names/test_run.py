"""`portbook run`: PORT in the environment, the port held while the command runs, and
systemd-style socket passing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portbook import Store, get, list_leases, list_names

# A socket-activated server: checks the systemd variables, accepts one
# connection on fd 3 and answers with what it saw.
_SERVER = """
import json, os, socket
sock = socket.socket(fileno=3)
conn, _ = sock.accept()
conn.sendall(json.dumps({
    "pid": os.getpid(),
    "listen_pid": os.environ.get("LISTEN_PID"),
    "listen_fds": os.environ.get("LISTEN_FDS"),
    "fdnames": os.environ.get("LISTEN_FDNAMES"),
    "port": os.environ.get("PORT"),
    "name": os.environ.get("PORTBOOK_NAME"),
    "sockname_port": sock.getsockname()[1],
}).encode())
conn.close()
"""


def _portbook(*argv: str, store: Path, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "portbook", *argv],
        env={**os.environ, "PORTBOOK_STORE": str(store)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_run_puts_port_and_name_in_the_environment(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    proc = _portbook(
        "run",
        "api",
        "--",
        sys.executable,
        "-c",
        "import os; print(os.environ['PORT'], os.environ['PORTBOOK_NAME'],"
        " os.environ.get('LISTEN_FDS'))",
        store=store,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    port = get("api", store=Store(store)).port  # assigned on first run
    assert out.split() == [str(port), "api", "None"]
    assert list_leases(store=Store(store)) == []  # given back when the command ended


def test_run_passes_the_exit_status(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    proc = _portbook("run", "api", "--", "sh", "-c", "exit 7", store=store)
    proc.communicate(timeout=60)
    assert proc.returncode == 7
    proc = _portbook("run", "api", "--", "sh", "-c", "kill -9 $$", store=store)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + 9
    proc = _portbook("run", "api", "--", str(tmp_path / "no-such-program"), store=store)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 127 and err.count("\n") == 1


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _command_lease(store: Path, runner: subprocess.Popen[str]) -> int:
    """Wait until the run's lease is held by its command (a child of the runner); its pid."""
    deadline = time.monotonic() + 30
    while True:
        leases = list_leases(store=Store(store))
        if leases and leases[0].pid != runner.pid:
            assert leases[0].pid is not None
            return leases[0].pid
        assert time.monotonic() < deadline, "the run never handed its lease to the command"
        time.sleep(0.05)


@pytest.mark.linux
def test_run_holds_the_name_while_the_command_runs(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    first = _portbook("run", "api", "--", "sleep", "30", store=store)
    try:
        holder = _command_lease(store, first)
        assert _ppid(holder) == first.pid  # the command itself holds the port
        assert list_leases(store=Store(store))[0].name == "api"
        second = _portbook("run", "api", "--", "true", store=store)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1 and f"held by pid {holder}" in err
        listing = subprocess.run(
            [sys.executable, "-m", "portbook", "names", "--store", str(store)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"held by pid {holder}" in listing.stdout
    finally:
        first.terminate()  # passed on to the command; portbook then gives the port back
        first.communicate(timeout=60)
    assert first.returncode == 128 + 15
    assert list_leases(store=Store(store)) == []


@pytest.mark.linux
def test_the_command_keeps_the_name_when_portbook_is_killed(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    first = _portbook("run", "api", "--", "sleep", "30", store=store)
    holder = _command_lease(store, first)
    first.kill()  # portbook only; its command runs on
    first.wait(timeout=60)  # not communicate(): the command still holds the pipes open
    for pipe in (first.stdout, first.stderr):
        if pipe is not None:
            pipe.close()
    try:
        second = _portbook("run", "api", "--", "true", store=store)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1 and f"held by pid {holder}" in err
    finally:
        os.kill(holder, 9)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{holder}").exists():  # reaped by init once portbook is gone
        assert time.monotonic() < deadline
        time.sleep(0.05)
    third = _portbook("run", "api", "--", "true", store=store)
    third.communicate(timeout=60)
    assert third.returncode == 0


def test_run_socket_hands_over_a_listening_socket_systemd_style(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    proc = _portbook("run", "web", "--socket", "--", sys.executable, "-c", _SERVER, store=store)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None:
            assert time.monotonic() < deadline, "no lease appeared"
            leases = list_leases(store=Store(store))
            port = leases[0].port if leases else None
            time.sleep(0.05)
        # The socket listens before the command even starts: connect at once.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        seen = json.loads(data)
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert seen["listen_pid"] == str(seen["pid"])  # the server's own pid, not portbook's
    assert seen["listen_fds"] == "1" and seen["fdnames"] == "web"
    assert seen["port"] == str(port) == str(seen["sockname_port"])
    assert seen["name"] == "web"


def test_run_needs_a_command(tmp_path: Path) -> None:
    proc = _portbook("run", "api", store=tmp_path / "s.sqlite3")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "needs a command" in err
    proc = _portbook("run", "api", "--bogus", "--", "true", store=tmp_path / "s.sqlite3")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--bogus" in err


@pytest.mark.slow
def test_run_reclaims_the_name_of_a_killed_runner(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    first = _portbook("run", "api", "--", "sleep", "30", store=store, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not list_leases(store=Store(store)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, 9)  # portbook and its command, without a word
        first.communicate(timeout=60)
    second = _portbook("run", "api", "--", "true", store=store)
    second.communicate(timeout=60)
    assert second.returncode == 0


def test_run_says_so_when_the_command_listens_elsewhere(tmp_path: Path) -> None:
    # A server that ignores $PORT: it listens where the kernel puts it.
    ignores = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
        "time.sleep(30)"
    )
    proc = _portbook(
        "run", "web", "--", sys.executable, "-c", ignores, store=tmp_path / "s.sqlite3"
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the warning comes within about 5 s
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert "listens on" in line and "not on its port" in line and "$PORT" in line


def test_run_refuses_a_port_another_program_holds(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    from portbook import assign

    with Store(store) as s:
        port = assign("web", store=s).port
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        proc = _portbook("run", "web", "--", "true", store=store)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and f"pid {os.getpid()}" in err and err.count("\n") == 1


def test_run_store_option_is_the_store_used(tmp_path: Path) -> None:
    """--store after NAME is read before any store is opened: the default one stays untouched."""
    default, chosen = tmp_path / "default.sqlite3", tmp_path / "chosen.sqlite3"
    runner = _portbook("run", "api", "--store", str(chosen), "--", "true", store=default)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err
    assert not default.exists()
    assert [a.name for a in list_names(store=Store(chosen))] == ["api"]
