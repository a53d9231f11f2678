"""A store process killed with SIGKILL in the middle of writes loses nothing it acknowledged."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from portbook import Store, list_names
from tests.names._support import python_child

# Assigns names as fast as it can and prints each one after its commit
# returned: a printed name is an acknowledged name.
_WRITER = """
import sys
from portbook import Store, assign, pick_port, release_lease
store = Store(sys.argv[1])
i = 0
while True:
    assign(f"n{i}", store=store)
    print(f"n{i}", flush=True)
    lease = pick_port(store=store)  # lease writes too, between the names
    release_lease(lease, store=store)
    i += 1
"""


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_sigkill_mid_write_keeps_every_acknowledged_name(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "s.sqlite3"
    child = python_child(_WRITER, str(path))
    assert child.stdout is not None
    acknowledged: list[str] = []
    stop_after = random.randint(5, 60)
    try:
        for line in child.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) >= stop_after:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    with Store(path) as store:
        assert store.integrity_check() == ["ok"]
        present = {a.name for a in list_names(store=store)}
        ports = [a.port for a in list_names(store=store)]
    assert set(acknowledged) <= present
    assert len(ports) == len(set(ports))


_FORKER = """
import os, sys
from portbook import Store, assign, get
store = Store(sys.argv[1])
assign("parent-before", store=store)
pid = os.fork()
if pid == 0:
    # The child reuses the Store object: it must open a connection of its own.
    for i in range(20):
        assign(f"child-{i}", store=store)
    store.close()
    os._exit(0)
for i in range(20):
    assign(f"parent-{i}", store=store)
_, status = os.waitpid(pid, 0)
assert get("child-19", store=store).name == "child-19"
print(os.waitstatus_to_exitcode(status), store.integrity_check()[0], flush=True)
"""


@pytest.mark.linux
def test_a_forked_child_gets_its_own_connection(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    child = python_child(_FORKER, str(path))
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.split() == ["0", "ok"]
    with Store(path) as store:
        assert len(list_names(store=store)) == 41
