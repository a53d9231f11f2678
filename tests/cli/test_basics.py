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


def test_command_table_names_what_each_group_registers() -> None:
    """Only the group of the command being run is registered: the table must be exact."""
    import argparse
    import importlib

    from portbook import _cli

    seen: dict[str, str] = {}
    for group in _cli._GROUPS:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(f"portbook._cli.{group}").register(sub)
        seen.update(dict.fromkeys(sub.choices, group))
    assert seen == _cli._COMMANDS


def test_top_level_help_lists_every_command() -> None:
    from portbook import _cli

    result = run_portbook("--help")
    for command in _cli._COMMANDS:
        assert command in result.stdout
