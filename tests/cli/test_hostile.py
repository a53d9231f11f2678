"""Hostile arguments, environments and files: one line on stderr, the right status, no traceback.

Each case is a real ``python -m portbook`` process (argv as bytes where the
case is bytes that are not UTF-8), with its own store and data directory.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ARGV_CASES: list[tuple[list[str | bytes], int]] = [
    (["search", "a", "--limit", "99999999999999999999"], 2),
    (["search", "a", "--limit", "\u0669"], 2),
    (["search", b"\xff\xfe"], 2),
    (["ls", "--watch", "--interval", "inf"], 2),
    (["ls", "--watch", "--interval", "nan"], 2),
    (["ls", "--count", "0", "--watch"], 2),
    (["ls", "--user", "no-such-user-here"], 2),
    (["ls", "--pid", "\u0669"], 2),
    (["wait", "1", "-t", "nan"], 2),
    (["wait", "1", "-t", "inf"], 2),
    (["wait", "-h", "a" * 64, "-p", "80"], 2),
    (["wait", "-h", "a..b", "-p", "80"], 2),
    (["kill", "--signal", "\u00b2", "9"], 2),
    (["kill", "--signal", "\u0669", "9"], 2),
    (["kill", "--timeout", "1e308", "9"], 2),
    (["pick", "--ttl", "\u0669"], 2),
    (["pick", "--ttl", "nan"], 2),
    (["pick", "--range", ""], 2),
    (["pick", "--store", ""], 2),
    (["assign", "api", "--port", "9" * 5000], 2),
    (["lookup", "9" * 5000], 2),
    (["who", "\x1b[2J"], 2),
    (["ephemeral", "--threshold", "nan"], 2),
    (["ephemeral", "--top", "99999999999999999999"], 2),
    (["route", "tcp", "127.0.0.1:99999"], 2),
    (["check", "70000"], 2),
    (["ls", "--bogus"], 2),
    (["nosuchcommand"], 2),
]


def _run(argv: Sequence[str | bytes], tmp: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    base = {
        **os.environ,
        "PORTBOOK_STORE": str(tmp / "store" / "s.sqlite3"),
        "PORTBOOK_DATA_DIR": str(tmp / "data"),
    }
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "portbook", *argv],
        capture_output=True,
        env=base,
        timeout=60,
        check=False,
    )


def _one_error_line(done: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    assert done.stderr.count(b"\n") == 1 and done.stderr.startswith(b"portbook: error:"), done


@pytest.mark.parametrize(("argv", "status"), ARGV_CASES, ids=lambda x: repr(x)[:40])
def test_hostile_arguments(argv: list[str | bytes], status: int, tmp_path: Path) -> None:
    done = _run(argv, tmp_path)
    assert done.returncode == status, done
    _one_error_line(done)


@pytest.mark.parametrize(
    ("store", "status"),
    [("a" * 300 + "/s.sqlite3", 2), ("~no-such-user-here/s.sqlite3", 2), ("/dev/null", 1)],
)
def test_hostile_store_paths(store: str, status: int, tmp_path: Path) -> None:
    done = _run(["get", "api"], tmp_path, PORTBOOK_STORE=store)
    assert done.returncode == status, done
    _one_error_line(done)
    assert not Path("/dev/null-journal").exists()


def test_a_store_holding_rows_no_portbook_writes(tmp_path: Path) -> None:
    assert _run(["assign", "api"], tmp_path).returncode == 0
    path = tmp_path / "store" / "s.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE names SET protocol = 'xyz' WHERE name = 'api'")
        conn.execute(
            "INSERT INTO leases (port, protocols, families, created) VALUES (4000, 'tcp', 'x', 0)"
        )
    for argv in (["names"], ["get", "api"]):
        done = _run(list(argv), tmp_path)
        assert done.returncode == 1, (argv, done)
        _one_error_line(done)
    assert _run(["ls"], tmp_path).returncode == 0  # the live table only names less


@pytest.mark.parametrize(
    "document",
    [
        '{"format": "portbook-names", "version": "x", "names": []}',
        '{"format": "portbook-names", "version": true, "names": []}',
        "[" * 100_000 + "]" * 100_000,
        '{"names": [{"name": "api", "port": ' + "9" * 5000 + "}]}",
        '{"names": [{"name": "api", "port": 80.5}]}',
        '{"names": "api"}',
        "\x00\x01",
    ],
    ids=["version-text", "version-bool", "deep", "huge-port", "float-port", "not-a-list", "binary"],
)
def test_hostile_import_files(document: str, tmp_path: Path) -> None:
    path = tmp_path / "names.json"
    path.write_text(document)
    done = _run(["names", "--import", str(path)], tmp_path)
    assert done.returncode == 2, done
    _one_error_line(done)
    assert json.loads(_run(["names", "--json"], tmp_path).stdout) == []
