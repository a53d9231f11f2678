"""The pytest plugin, run for real: a pytest-xdist session whose workers never share a port."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from portbook import Store, get, list_leases

_TESTS = """
import json, os, socket, time
import pytest

def _hold(kind, port, sock_type):
    s = socket.socket(socket.AF_INET, sock_type)
    s.bind(("127.0.0.1", port))  # would fail if another worker held it right now
    start = time.monotonic()
    time.sleep(0.03)
    end = time.monotonic()
    s.close()
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps({"kind": kind, "port": port, "start": start, "end": end,
                            "worker": os.environ.get("PYTEST_XDIST_WORKER")}) + "\\n")

@pytest.mark.parametrize("i", range(12))
def test_tcp(free_tcp_port, i):
    _hold("tcp", free_tcp_port, socket.SOCK_STREAM)

@pytest.mark.parametrize("i", range(6))
def test_udp(free_udp_port, i):
    _hold("udp", free_udp_port, socket.SOCK_DGRAM)

@pytest.mark.parametrize("i", range(4))
def test_named(named_port, i):
    port = named_port("shared-api")
    assert port == named_port("shared-api")
    assert named_port("other") != port
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps({"kind": "named", "port": port}) + "\\n")
"""


@pytest.mark.slow
def test_xdist_workers_never_share_a_port(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    (tmp_path / "test_ports.py").write_text(_TESTS)
    record = tmp_path / "record.jsonl"
    store = tmp_path / "s.sqlite3"
    env = {**os.environ, "PORTBOOK_STORE": str(store), "RECORD": str(record)}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "xdist",
            "-n",
            "2",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_ports.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    held = [r for r in rows if r["kind"] != "named"]
    assert len(held) == 18
    assert {r["worker"] for r in held} == {"gw0", "gw1"}
    by_port: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    for r in held:
        by_port[(r["kind"], r["port"])].append(r)
    for uses in by_port.values():
        uses.sort(key=lambda r: r["start"])
        for before, after in itertools.pairwise(uses):
            assert before["end"] <= after["start"], f"two tests held {before['port']} at once"
    named = {r["port"] for r in rows if r["kind"] == "named"}
    assert named == {get("shared-api", store=Store(store)).port}
    assert list_leases(store=Store(store)) == []  # every fixture gave its port back
