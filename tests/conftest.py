"""Shared fixtures: run the CLI in-process (rendering into strings) or as a real process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portbook import Store
from portbook._cli import main
from portbook._cli._output import Output


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
