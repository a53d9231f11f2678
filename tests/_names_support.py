"""Helpers shared by the names, store and pick tests: real stores, real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from portbook import PortRange, Store, pick_port, release_lease

SRC = str(Path(__file__).resolve().parents[1] / "src")


def spare_port(tmp_path: Path) -> int:
    """A port outside the ephemeral range that is free right now (picked in a scratch store)."""
    scratch = Store(tmp_path / "scratch.sqlite3")
    try:
        lease = pick_port(store=scratch)
        release_lease(lease, store=scratch)
    finally:
        scratch.close()
    return lease.port


def single(port: int) -> PortRange:
    return PortRange(port, port)


def python_child(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    """Start ``python -c CODE ARGS`` with portbook importable; pipes on stdin and stdout."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )
