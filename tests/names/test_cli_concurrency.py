"""32 processes assign, release and pick through the real CLI while this test
SIGKILLs CLI processes at random: the store stays sound, every acknowledged
name is there with its port, and no port is leased twice."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from portbook import Store, list_names
from tests.names._support import python_child

WORKERS = 32
SECONDS = 4.0

# One worker: runs the CLI in a loop and prints, after each command returned 0,
# what it acknowledged. Names it tried to release may or may not be gone.
_WORKER = """
import json, os, subprocess, sys, time
store, worker, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
env = {**os.environ, "PORTBOOK_STORE": store}
deadline = time.monotonic() + seconds

def cli(*words):
    done = subprocess.run([sys.executable, "-m", "portbook", *words, "--json"],
                          capture_output=True, text=True, env=env)
    if done.returncode not in (0, -9):
        print(json.dumps(["failed", words, done.returncode, done.stderr]), flush=True)
    return json.loads(done.stdout) if done.returncode == 0 else None

k, mine = 0, []
while time.monotonic() < deadline or k < 2:  # some work, however loaded the machine
    name = f"w{worker}-{k}"
    got = cli("assign", name)
    if got is not None:
        print(json.dumps(["assigned", name, got["port"]]), flush=True)
        mine.append(name)
    lease = cli("pick", "--ttl", "600") if k % 2 else cli("pick")
    if lease is not None:
        print(json.dumps(["picked", lease["port"]]), flush=True)
    if k % 3 == 2 and mine:
        old = mine.pop(0)
        print(json.dumps(["releasing", old]), flush=True)
        cli("release", old)
    k += 1
print(json.dumps(["end"]), flush=True)
sys.stdin.read()  # keep the leases picked for this process until the test is done
"""


def _portbook_processes(workers: list[subprocess.Popen[str]]) -> list[int]:
    """The CLI processes the workers are running now (the kernel's list of each
    worker's children: scanning all of /proc takes seconds on a loaded machine)."""
    found: list[int] = []
    for worker in workers:
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text()
            found.extend(int(pid) for pid in text.split())
    return found


def _kill_at_random(workers: list[subprocess.Popen[str]], stop: threading.Event) -> int:
    """SIGKILL a running CLI process every 200-500 ms until ``stop``; how many were killed."""
    killed = 0
    while not stop.wait(random.uniform(0.2, 0.5)):
        running = _portbook_processes(workers)
        if running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(random.choice(running), signal.SIGKILL)
                killed += 1
    return killed


@pytest.mark.slow
def test_32_cli_processes_with_sigkills_keep_every_promise(tmp_path: Path) -> None:
    store = tmp_path / "store" / "s.sqlite3"
    store.parent.mkdir(mode=0o700)
    workers = [python_child(_WORKER, str(store), str(i), str(SECONDS)) for i in range(WORKERS)]
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        killer = pool.submit(_kill_at_random, workers, stop)
        try:
            reports = [_lines(w) for w in workers]
        finally:
            stop.set()
            for w in workers:
                w.kill()
                w.communicate()
        killed = killer.result()
    events = [event for report in reports for event in report]
    assert not [e for e in events if e[0] == "failed"]
    assert killed >= 10
    _check_store(store, events)


def _lines(worker: subprocess.Popen[str]) -> list[list[object]]:
    """What the worker acknowledged, up to the line that ends its loop."""
    assert worker.stdout is not None
    lines = []
    for line in worker.stdout:
        event = json.loads(line)
        if event == ["end"]:
            break
        lines.append(event)
    return lines


def _check_store(store: Path, events: list[list[object]]) -> None:
    assigned = {str(e[1]): int(str(e[2])) for e in events if e[0] == "assigned"}
    maybe_gone = {str(e[1]) for e in events if e[0] == "releasing"}
    picked = [int(str(e[1])) for e in events if e[0] == "picked"]
    with Store(store) as s:
        assert s.integrity_check() == ["ok"]
        names = {a.name: a.port for a in list_names(store=s)}
    for name, port in assigned.items():
        if name not in maybe_gone:
            assert names.get(name) == port, name
    assert len(picked) == len(set(picked)), "a port was picked twice"
    assert len(names) == len(set(names.values())), "two names share a port"
    assert not set(picked) & set(names.values()), "a picked port is also a name's port"
    assert len(assigned) >= WORKERS // 2 and len(picked) >= WORKERS // 2
