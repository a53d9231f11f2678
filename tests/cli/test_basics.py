from __future__ import annotations

import subprocess
import sys

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


@pytest.mark.parametrize(
    "argv",
    [["ls"], ["who", "22"], ["who", "api"], ["who", ""], ["lookup", "443"], ["lookup", "https"]],
)
def test_the_quick_forms_are_what_the_parser_makes_of_them(argv: list[str]) -> None:
    from portbook._cli import build_parser, quick_args

    quick = quick_args(argv)
    assert quick is not None
    assert vars(quick) == vars(build_parser(argv[0]).parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [["ls", "--all"], ["who", "--help"], ["who", "-h"], ["lookup"], ["search", "x"], ["who"]],
)
def test_other_command_lines_go_to_the_parser(argv: list[str]) -> None:
    from portbook._cli import quick_args

    assert quick_args(argv) is None


def test_the_quick_forms_import_no_argparse() -> None:
    code = (
        "import sys, io\n"
        "from portbook._cli import main\n"
        "from portbook._cli._output import Output\n"
        "for argv in (['ls'], ['who', '1'], ['lookup', '443']):\n"
        "    main(argv, Output(stream=io.StringIO(), err=io.StringIO()))\n"
        "print('argparse' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr
