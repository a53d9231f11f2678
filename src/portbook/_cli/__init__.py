"""The ``portbook`` command: a thin client of the public API.

This package is the only place that imports argparse or renders for a
terminal. Each command group lives in its own module with a ``register``
function; this module builds the parser, runs the chosen handler and turns
errors into exit codes: 0 success, 1 failure or nothing found, 2 usage.
"""

from __future__ import annotations

import os
import sys

from portbook._cli._output import Output

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

__all__ = ["console", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Command-group modules; each defines register(subparsers) and imports the
# library only inside its handlers, so that building the parser stays cheap.
_GROUPS = ("book", "live", "names", "check", "wait", "kill", "route", "ephemeral", "serve")

# Which group defines each command. Building every subparser costs more than a
# whole lookup (argparse creates ~20 parsers and runs gettext for each), so
# only the group of the command being run is registered; `portbook --help` and
# unknown commands register them all. tests/test_cli_basics.py checks this
# table against what the groups really register.
_COMMANDS: dict[str, str] = {
    "lookup": "book",
    "search": "book",
    "info": "book",
    "update": "book",
    "ls": "live",
    "who": "live",
    "pick": "names",
    "assign": "names",
    "get": "names",
    "release": "names",
    "names": "names",
    "run": "names",
    "env": "names",
    "check": "check",
    "wait": "wait",
    "kill": "kill",
    "route": "route",
    "ephemeral": "ephemeral",
    "serve": "serve",
    "metrics": "serve",
}

# What `portbook` with no arguments runs.
_DEFAULT_ARGV = ("ls",)


class CliUsageError(Exception):
    """argparse found the command line unusable (exit status 2)."""


class _ParserExit(Exception):
    """argparse is done (``--help``, ``--version``): exit with ``status``."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(status)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (see :func:`portbook._cli._parser.build_parser`)."""
    from portbook._cli._parser import build_parser as build

    return build(command)


def console() -> None:
    """``portbook`` and ``python -m portbook``: :func:`main`, then exit with its status."""
    status = main()
    # The process ends here. Left on, the cyclic collector makes one last
    # full pass over every object at exit (2.5-3M instructions, about 2.5%
    # of a cold `portbook`), only to free memory the kernel takes back
    # anyway; every command has closed its own files and stores by now.
    import gc

    gc.disable()
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None, out: Output | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    output = out if out is not None else Output.for_stdout()
    try:
        status = _run(args_list or list(_DEFAULT_ARGV), output)
        output.stream.flush()  # a full disk or a closed stdout shows here, not at exit
    except BrokenPipeError:
        # The reader went away (`portbook ls | head`): not an error worth a line.
        _silence_stdout()
        return EXIT_FAILURE
    except OSError as exc:
        output.error(f"cannot write the output: {exc.strerror or exc}")
        _silence_stdout()
        return EXIT_FAILURE
    return status


def _run(args_list: list[str], output: Output) -> int:
    """Parse and run one command; errors become one line and an exit status."""
    from portbook import CommandError, PortbookError, UsageError

    try:
        args = quick_args(args_list)
        if args is None:
            from portbook._cli._parser import parse

            args = parse(args_list, output.stream)
            if args is None:  # no command: the help was printed
                return EXIT_USAGE
        status: int = args.handler(args, output)
        return status
    except _ParserExit as done:
        return done.status
    except (CliUsageError, UsageError) as exc:
        output.error(str(exc))
        return EXIT_USAGE
    except CommandError as exc:
        output.error(str(exc))
        return exc.status
    except PortbookError as exc:
        output.error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130


def quick_args(args_list: list[str]) -> Any:
    """What argparse would make of the command lines people type most, without argparse.

    ``portbook`` (``ls``), ``portbook who WORD`` and ``portbook lookup WORD``
    (WORD not an option): importing argparse and building the parser cost
    about a seventh of a cold start of these (BENCHMARKS.md). The defaults
    are the command modules' own (``LS_DEFAULTS`` and friends), and
    tests/cli/test_basics.py pins each form to what the real parser gives.
    ``None`` for every other command line: the parser reads it.
    """
    from types import SimpleNamespace

    if args_list == ["ls"]:
        from portbook._cli import live

        return SimpleNamespace(command="ls", **live.LS_DEFAULTS, handler=live.run_ls)
    if len(args_list) != 2 or args_list[1].startswith("-"):
        return None
    command, word = args_list
    if command == "who":
        from portbook._cli import live

        return SimpleNamespace(command="who", port=word, **live.WHO_DEFAULTS, handler=live.run_who)
    if command == "lookup":
        from portbook._cli import book

        return SimpleNamespace(
            command="lookup", query=word, **book.LOOKUP_DEFAULTS, handler=book.run_lookup
        )
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
