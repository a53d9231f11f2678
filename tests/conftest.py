"""Shared fixtures: run the CLI in-process (rendering into strings) or as a real process."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portbook import Store
from portbook._cli import main
from portbook._cli._output import Output

# The suite's own data directory (the default names store, a user copy of the
# registry): nothing a test does through the defaults reaches the data of the
# user who runs it. Set before any test (and so inherited by every child
# process); a test that needs another one sets its own.
if "PORTBOOK_DATA_DIR" not in os.environ:
    _DATA_DIR = tempfile.mkdtemp(prefix="portbook-test-data-")
    os.chmod(_DATA_DIR, 0o755)  # tests that drop privileges still read it
    os.environ["PORTBOOK_DATA_DIR"] = _DATA_DIR
    atexit.register(shutil.rmtree, _DATA_DIR, ignore_errors=True)


@dataclass(frozen=True)
class CliResult:
    status: int
    stdout: str
    stderr: str


def run_cli(*argv: str, tty: bool = False) -> CliResult:
    """Run ``portbook ARGV`` in this process, output rendered into strings."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), Output(stream=out, err=err, tty=tty, width=100))
    return CliResult(status, out.getvalue(), err.getvalue())


def run_portbook(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m portbook ARGV`` as a real child process."""
    return subprocess.run(
        [sys.executable, "-m", "portbook", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def cli() -> type[CliRunner]:
    return CliRunner


class CliRunner:
    run = staticmethod(run_cli)
    spawn = staticmethod(run_portbook)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A names store in a real SQLite file of this test's own."""
    with Store(tmp_path / "s.sqlite3") as s:
        yield s
