"""The benchmark's socket fixture opens exactly what it says, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench.live_fixture import LiveFixture, iter_fds, plan_sockets

pytestmark = [
    pytest.mark.linux,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux"),
]

FIXTURE = Path(__file__).resolve().parents[2] / "bench" / "live_fixture.py"


@pytest.mark.parametrize("unowned", [False, True])
@pytest.mark.parametrize("total", [33, 200, 1001, 50_000])
def test_plan_is_exact(total: int, unowned: bool) -> None:
    plans = plan_sockets(total, 4, unowned=unowned)
    assert sum(plan.sockets for plan in plans) == total
    assert all(plan.listeners == 4 and plan.udp >= 4 for plan in plans)
    assert sum(plan.unowned for plan in plans) == unowned


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ss(*args: str) -> str | None:
    ss = shutil.which("ss")
    if ss is None:
        return None
    return subprocess.run([ss, *args], capture_output=True, text=True, check=True).stdout


def _time_wait(ports: list[int]) -> set[str]:
    """TIME-WAIT sockets that have one of ``ports`` at either end."""
    table = _ss("-tan", "state", "time-wait") or ""
    ends = {f":{port}" for port in ports}
    return {
        line
        for line in table.splitlines()
        if any(field[field.rfind(":") :] in ends for field in line.split())
    }


def test_opens_holds_and_closes_200_sockets() -> None:
    with LiveFixture(200, unowned=True) as fixture:
        assert fixture.sockets == 200
        assert len(fixture.pids) == 4 and len(fixture.tcp_listeners) == 16
        unowned = fixture.unowned_port
        assert unowned is not None
        held = sum(
            target.startswith("socket:[") for pid in fixture.pids for target in iter_fds(pid)
        )
        assert held == 199 + 2  # the unowned listener is not held; its Unix pair is
        table = _ss("-tuanp")
        if table is not None:
            # ss as the oracle: every fixture socket with its owner, but one.
            owned = sum(len(re.findall(rf"pid={pid},", table)) for pid in fixture.pids)
            assert owned == 199
            # The listener itself (state and local address columns): another
            # socket may name the same port as its peer or in TIME-WAIT.
            [line] = [
                ln
                for ln in table.splitlines()
                if ln.split()[1:2] == ["LISTEN"] and ln.split()[4:5] == [f"127.0.0.1:{unowned}"]
            ]
            assert "users:" not in line
        pids = fixture.pids
        ports = [port for _, port in fixture.tcp_listeners]
        # Other tests' connections leave TIME-WAIT sockets for a minute, and one
        # of them may name a port number that a fixture listener got later:
        # only TIME-WAIT sockets that appear during close() count.
        before = _time_wait(ports)
    assert not any(_alive(pid) for pid in pids)
    # Connections were reset, not closed: no TIME-WAIT left on the fixture's ports.
    assert _time_wait(ports) <= before
    listening = _ss("-tln")
    if listening is not None:
        # The unowned listener went with the message that held it.
        assert f"127.0.0.1:{unowned} " not in listening


def test_workers_die_with_a_killed_parent() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURE), "--sockets", "64"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        pids = [int(p) for p in first.split("pids ", 1)[1].split(" (")[0].split()]
        assert len(pids) == 4 and all(_alive(pid) for pid in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
