"""kill: real child processes holding loopback ports, signalled (or refused) for real."""

from __future__ import annotations

import errno
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portbook import ProcessSignalError
from portbook._exceptions import UsageError
from portbook._live.records import SocketProcess
from portbook._tools.kill import PortHolder, kill_port, parse_signal, port_holders
from tests.conftest import run_cli, run_portbook

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and pidfd")

SERVER = """
import signal, socket, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


class Server:
    """A child process listening on a loopback port (0: the kernel picks)."""

    def __init__(self, port: int = 0, mode: str = "plain") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise OSError(errno.EADDRINUSE, "server could not bind")
        self.port = int(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.close()


def start(servers: list[Server], port: int = 0, mode: str = "plain") -> Server:
    server = Server(port, mode)
    servers.append(server)
    return server


def prefix_pair(servers: list[Server]) -> tuple[Server, Server]:
    """Two servers on ports P and P*10+1 (as 3000 and 30001), both found free at run time."""
    rng = random.Random()
    for _ in range(50):
        short = rng.randint(1025, 6552)
        try:
            a = start(servers, short)
        except OSError:
            continue
        try:
            b = start(servers, short * 10 + 1)
        except OSError:
            servers.remove(a)
            a.close()
            continue
        return a, b
    pytest.skip("no free pair of ports P and P*10+1 found")


def test_parse_signal() -> None:
    assert parse_signal("TERM") == signal.SIGTERM
    assert parse_signal("sigkill") == signal.SIGKILL
    assert parse_signal("1") == signal.SIGHUP
    for bad in ("NOPE", "999"):
        with pytest.raises(UsageError):
            parse_signal(bad)


def test_holders_match_the_exact_port_only(servers: list[Server]) -> None:
    short, long = prefix_pair(servers)
    holders = port_holders(short.port)
    assert [h.pid for h in holders] == [short.pid]
    assert all(s.local_port == short.port for h in holders for s in h.sockets)
    result = run_cli("kill", "--yes", str(short.port))
    assert result.status == 0, result.stderr
    short.proc.wait(5)
    assert not short.alive() and long.alive()
    assert short.proc.returncode == -signal.SIGTERM


def test_kill_releases_the_port(servers: list[Server]) -> None:
    server = start(servers)
    result = kill_port(server.port, sig="TERM", timeout=5)
    assert result.signalled == (server.pid,) and result.released and not result.killed
    server.proc.wait(5)
    with socket.socket() as probe:  # released means bindable again
        probe.bind(("127.0.0.1", server.port))


def test_stubborn_holder_needs_force(servers: list[Server]) -> None:
    server = start(servers, mode="stubborn")
    held = run_cli("kill", "--yes", "--timeout", "0.2", str(server.port))
    assert held.status == 1 and "still held" in held.stderr and "--force" in held.stderr
    assert server.alive()
    forced = run_cli("kill", "--yes", "--force", "--timeout", "0.2", "--json", str(server.port))
    assert forced.status == 0, forced.stderr
    assert server.proc.wait(5) == -signal.SIGKILL
    assert '"killed": [' in forced.stdout


def test_no_tty_and_no_yes_refuses(servers: list[Server]) -> None:
    server = start(servers)
    result = run_portbook("kill", str(server.port))
    assert result.returncode == 2
    assert "--yes" in result.stderr and result.stderr.count("\n") == 1
    assert str(server.pid) in result.stdout  # the holders were shown
    assert server.alive()


def test_dry_run_signals_nothing(servers: list[Server]) -> None:
    server = start(servers)
    result = run_cli("kill", "--dry-run", str(server.port))
    assert result.status == 0 and "would send SIGTERM" in result.stdout
    assert server.alive()


def test_nothing_holds_the_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("kill", "--yes", f"tcp/{port}")
    assert result.status == 1 and "no process holds" in result.stdout


PID1_SERVER = """
import os, socket, subprocess, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
port = s.getsockname()[1]
r = subprocess.run(
    [sys.executable, "-m", "portbook", "kill", "--yes", "--force", str(port)],
    capture_output=True, text=True,
)
print(os.getpid(), r.returncode, r.stderr.strip())
"""


@pytest.mark.root
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_real_pid_1_holder_is_refused() -> None:
    # In a new pid namespace the server itself is pid 1 and holds the port;
    # portbook runs inside the same namespace and must refuse.
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", PID1_SERVER],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"no pid namespace here: {done.stderr.strip()}")
    pid, status, message = done.stdout.strip().split(" ", 2)
    assert pid == "1" and status == "1", done
    assert "pid 1 (init) is never signalled" in message
    assert "nothing was signalled" in message


def test_never_pid_1() -> None:
    # pid 1 cannot be made to hold a test port; the list a caller shows the
    # user is the seam, and protection is decided again inside kill_port.
    init = PortHolder(SocketProcess(1, "init", None, "root"), ())
    with pytest.raises(ProcessSignalError, match="pid 1"):
        kill_port(9, holders=[init], sig="KILL")


def test_never_itself_or_its_parents() -> None:
    # This process holds the port: in-process, portbook would signal itself.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli("kill", "--yes", str(port))
        assert result.status == 1 and "portbook itself" in result.stderr
        # As a child process, the holder is its parent (this test process).
        child = run_portbook("kill", "--yes", str(port))
        assert child.returncode == 1 and "parent of portbook" in child.stderr
        assert "nothing was signalled" in child.stderr


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a command as another user")
def test_without_permission_nothing_is_signalled(servers: list[Server]) -> None:
    server = start(servers)  # runs as root
    # The interpreter may live where another user cannot read it, so the child
    # starts as root, loads everything by a dry run, then drops to nobody.
    code = (
        "import io, os, sys\n"
        "from portbook._cli import main\n"
        "from portbook._cli._output import Output\n"
        "main(['kill', '--dry-run', sys.argv[1]], Output(io.StringIO(), io.StringIO()))\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "sys.exit(main(['kill', '--yes', sys.argv[1]]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "nothing was signalled" in result.stderr
    assert server.alive()


@pytest.mark.parametrize(
    "argv",
    [
        ["kill", "a b"],
        ["kill", "3000-3005"],
        ["kill", "127.0.0.1:80"],
        ["kill", "--signal", "NOPE", "80"],
        ["kill", "--timeout", "-1", "80"],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.status == 2, result
    assert result.stderr.startswith("portbook: error:")


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss")
def test_holders_agree_with_ss(servers: list[Server]) -> None:
    server = start(servers)
    out = subprocess.run(
        ["ss", "-Htlnp", "sport", "=", f":{server.port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pids = {int(m) for m in re.findall(r"pid=(\d+)", out)}
    assert pids == {h.pid for h in port_holders(server.port)} == {server.pid}


AS_USER_SERVER = """
import os, socket, sys, time
uid, host = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(sys.argv[3])))
os.setgroups([]); os.setgid(uid); os.setuid(uid)
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


def _as_user(uid: int, host: str, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    """A listener started as root that drops to ``uid`` before listening (the test's own)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", AS_USER_SERVER, str(uid), host, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


KILL_AS_USER = (
    "import io, os, sys\n"
    "from portbook._cli import main\n"
    "from portbook._cli._output import Output\n"
    "main(['kill', '--dry-run', sys.argv[2]], Output(io.StringIO(), io.StringIO()))\n"
    "uid = int(sys.argv[1]); os.setgroups([]); os.setgid(uid); os.setuid(uid)\n"
    "sys.exit(main(['kill', '--yes', '--json', sys.argv[2]]))"
)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run processes as other users")
def test_a_holder_of_another_user_on_another_address_means_nothing_is_signalled() -> None:
    # uid A listens on 127.0.0.1:P, uid B on 127.0.0.2:P; B's kill must not
    # signal its own process and call the port released.
    a, port = _as_user(65534, "127.0.0.1")
    b, _ = _as_user(65533, "127.0.0.2", port)
    try:
        done = subprocess.run(
            [sys.executable, "-c", KILL_AS_USER, "65533", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done
        assert "cannot see" in done.stderr and "nothing was signalled" in done.stderr
        assert a.poll() is None and b.poll() is None
    finally:
        for proc in (a, b):
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


@pytest.mark.parametrize("timeout", ["nan", "inf", "1e308", "-1", "3601", "\u0669"])
def test_timeouts_that_could_never_end_are_refused(timeout: str) -> None:
    result = run_cli("kill", "--yes", "--timeout", timeout, "9")
    assert result.status == 2 and result.stderr.count("\n") == 1, result
    with pytest.raises(UsageError):
        kill_port(9, timeout=float(timeout) if timeout != "\u0669" else math.nan)


@pytest.mark.parametrize("sig", ["\u0669", "\u00b2", "99999999999999999999"])
def test_signals_are_ascii_names_or_numbers(sig: str) -> None:
    result = run_cli("kill", "--dry-run", "--signal", sig, "9")
    assert result.status == 2 and result.stderr.count("\n") == 1, result


def test_waiting_for_a_stubborn_holder_does_not_spin(servers: list[Server]) -> None:
    import resource

    def cpu_of(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = run_portbook(*args)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return done, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    server = start(servers, mode="stubborn")
    # The unit is one start-up and one owner walk of this machine, which on a
    # machine with many open files costs tenths of a second by itself.
    _, one_read = cpu_of("who", str(server.port))
    done, cpu = cpu_of("kill", "--yes", "--timeout", "2", str(server.port))
    assert done.returncode == 1 and "still held" in done.stderr
    # Three walks (who holds it; who still does, once pinned; who is left at
    # the end) and a few filtered reads between them; spinning for the 2 s
    # would cost about 2 s more.
    assert cpu < 3 * one_read + 0.5, f"{cpu:.2f} s of CPU to wait 2 s ({one_read:.2f} s a read)"


PREFORK = """
import os, signal, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
other = socket.socket()
other.bind(("127.0.0.1", 0))
other.listen()
workers = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        time.sleep(60)
        os._exit(0)
    workers.append(pid)

def stop(signum, frame):
    for w in workers:
        os.kill(w, signal.SIGTERM)
    for w in workers:
        os.waitpid(w, 0)
    os._exit(0)

signal.signal(signal.SIGTERM, stop)
print(s.getsockname()[1], other.getsockname()[1], " ".join(map(str, workers)), flush=True)
time.sleep(60)
"""


def test_a_prefork_server_is_a_tree_signalled_from_its_root() -> None:
    proc = subprocess.Popen([sys.executable, "-c", PREFORK], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        port, other, *workers = (int(x) for x in proc.stdout.readline().split())
        holders = port_holders(port)
        assert [h.pid for h in holders] == [proc.pid, *sorted(workers)]
        assert holders[0].parent is None and all(h.parent == proc.pid for h in holders[1:])
        assert [s.local_port for s in holders[0].also_holds] == [other]
        shown = run_cli("kill", "--dry-run", str(port))
        assert f"also holds tcp LISTEN 127.0.0.1:{other}" in shown.stdout
        result = kill_port(port, timeout=5)
        assert result.released and result.signalled[0] == proc.pid
        assert proc.wait(5) == 0  # the root stopped its workers itself
        assert result.to_json()["holders"][1]["parent"] == proc.pid
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_container_runtimes_helper_is_never_signalled(tmp_path: Path) -> None:
    """A program called docker-proxy holds ports for containers: kill refuses, signals none."""
    helper = tmp_path / "docker-proxy"
    helper.symlink_to(sys.executable)  # the kernel names a process after the file it ran
    proc = subprocess.Popen(
        [str(helper), "-c", SERVER, "0", "plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        (holder,) = port_holders(port)
        assert holder.process.name == "docker-proxy" and holder.protected is not None
        with pytest.raises(ProcessSignalError, match="holds this port for a container"):
            kill_port(port, timeout=1)
        result = run_cli("kill", "--yes", str(port))
        assert result.status == 1 and "nothing was signalled" in result.stderr
        with pytest.raises(ProcessSignalError, match="no container portbook can name"):
            kill_port(port, container=True, timeout=1)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
