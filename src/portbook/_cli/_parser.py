"""The argument parser of the ``portbook`` command, built only when a command line needs it.

argparse and the parser's construction are about a fifth of a cold start
(BENCHMARKS.md): the forms people type most (``portbook``, ``portbook who
PORT``, ``portbook lookup PORT``) are recognised without them
(:func:`portbook._cli.quick_args`), and everything else comes here.
"""

from __future__ import annotations

import argparse
import sys

from portbook import __version__
from portbook._cli import _COMMANDS, _GROUPS, CliUsageError, _ParserExit
from portbook._cli._output import terminal_columns

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["build_parser", "parse"]


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
        module = __import__(f"portbook._cli.{group}", fromlist=("register",))
        # A group may also offer register_command(subparsers, command), which
        # registers just the command being run.
        register_command = getattr(module, "register_command", None)
        if command in _COMMANDS and register_command is not None:
            register_command(subparsers, command)
        else:
            module.register(subparsers)
    return parser


def parse(args_list: list[str], stream: Any) -> argparse.Namespace | None:
    """``args_list`` parsed; ``None`` when it names no command (the help is then
    printed on ``stream``, where --help and --version write too)."""
    _Parser.stream = stream
    try:
        parser = build_parser(args_list[0])
        args = parser.parse_args(args_list)
        if getattr(args, "handler", None) is None:
            parser.print_help(stream)
            return None
        return args
    finally:
        _Parser.stream = None
