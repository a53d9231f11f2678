"""The ``portbook`` command: a thin client of the public API.

This package is the only place that imports argparse or renders for a
terminal. Each command group lives in its own module with a ``register``
function; this module builds the parser, runs the chosen handler and turns
errors into exit codes: 0 success, 1 failure or nothing found, 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys

from portbook import __version__
from portbook._cli._output import Output, terminal_columns

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["main"]

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


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal width instead of asking shutil for it.

    argparse makes a formatter for every add_argument() call and, without a
    width, imports shutil to measure the terminal each time (shutil brings
    fnmatch, zlib, bz2 and lzma); that import alone was a fifth of an
    interpreter start on every command. Same rule, same result.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
        **kwargs: Any,  # what newer Pythons add (color), passed on
    ) -> None:
        if width is None:
            width = terminal_columns(80) - 2
        super().__init__(prog, indent_increment, max_help_position, width, **kwargs)


class _Parser(argparse.ArgumentParser):
    # The help to point at when this (top-level) parser finds an error that
    # belongs to the command being run: argparse reports unknown options there.
    hint: str | None = None
    # Where --help and --version write: the command's own output, so that a
    # closed or full stdout is reported like any other write error.
    stream: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliUsageError(f"{message} (see '{self.hint or self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            raise CliUsageError(message.strip())
        raise _ParserExit(status)

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            (file or _Parser.stream or sys.stdout).write(message)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only the group that defines it is registered
    (only the command itself, when its group offers ``register_command``)."""
    parser = _Parser(
        prog="portbook",
        description=(
            "The port-number naming system of this computer: what each port means, "
            "which program holds it, and stable ports for your own services."
        ),
        epilog="Run 'portbook COMMAND --help' for one command's options.",
    )
    parser.add_argument("--version", action="version", version=f"portbook {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    if command in _COMMANDS:
        groups: tuple[str, ...] = (_COMMANDS[command],)
        parser.hint = f"portbook {command}"
    elif command == "--version":
        groups = ()
    else:
        groups = _GROUPS
    for group in groups:
        # A non-empty fromlist makes __import__ return the submodule itself
        # (importlib.import_module would import importlib and warnings).
        module = __import__(f"{__name__}.{group}", fromlist=("register",))
        # A group may also offer register_command(subparsers, command), which
        # registers just the command being run.
        register_command = getattr(module, "register_command", None)
        if command in _COMMANDS and register_command is not None:
            register_command(subparsers, command)
        else:
            module.register(subparsers)
    return parser


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

    _Parser.stream = output.stream
    try:
        parser = build_parser(args_list[0])
        args = parser.parse_args(args_list)
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(output.stream)
            return EXIT_USAGE
        status: int = handler(args, output)
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
    finally:
        _Parser.stream = None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
