"""Helpers shared by the names, store and pick tests: real stores, real child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from portbook import PortRange, Store, pick_port

SRC = str(Path(__file__).resolve().parents[2] / "src")


def spare_port(tmp_path: Path) -> int:
    """A port outside the ephemeral range, free right now, and given to no other test.

    Leased (to this test process, for its life) in a store shared by every
    test process of the run (pytest-xdist workers included: the store sits
    next to their temporary directories), so two tests never get one port.
    """
    shared = Store(tmp_path.parent.parent / "portbook-spare-ports.sqlite3")
    try:
        return pick_port(store=shared).port
    finally:
        shared.close()


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
