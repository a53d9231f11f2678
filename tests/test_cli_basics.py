from __future__ import annotations

import pytest

from tests.conftest import run_cli, run_portbook


def test_no_arguments_runs_the_main_job() -> None:
    result = run_portbook()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_version_and_help() -> None:
    assert "portbook" in run_portbook("--version").stdout
    assert run_portbook("--help").returncode == 0


@pytest.mark.parametrize("argv", [["no-such-command"], ["info", "--bogus"]])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str]) -> None:
    result = run_portbook(*argv)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("portbook: error:")
    assert "Traceback" not in result.stderr


def test_in_process_runner_renders_into_strings() -> None:
    result = run_cli("info")
    assert result.status == 0 and "System" in result.stdout and result.stderr == ""
