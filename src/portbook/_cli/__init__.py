"""The ``portbook`` command: a thin client of the public API.

This package is the only place that imports argparse or renders for a
terminal. Each command group lives in its own module with a ``register``
function; this module builds the parser, runs the chosen handler and turns
errors into exit codes: 0 success, 1 failure or nothing found, 2 usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from portbook import __version__

from ._output import Output

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Command-group modules; each defines register(subparsers) and imports the
# library only inside its handlers, so that building the parser stays cheap.
_GROUPS = ("book", "live")

# What `portbook` with no arguments runs.
_DEFAULT_ARGV = ("ls",)


class CliUsageError(Exception):
    """argparse found the command line unusable (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliUsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
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
    for group in _GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, out: Output | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    output = out if out is not None else Output.for_stdout()
    from portbook._exceptions import PortbookError, UsageError

    try:
        parser = build_parser()
        args = parser.parse_args(args_list or list(_DEFAULT_ARGV))
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(output.stream)
            return EXIT_USAGE
        status: int = handler(args, output)
        return status
    except CliUsageError as exc:
        output.error(str(exc))
        return EXIT_USAGE
    except UsageError as exc:
        output.error(str(exc))
        return EXIT_USAGE
    except PortbookError as exc:
        output.error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`portbook ls | head`): not an error worth a line.
        # Point stdout at devnull so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
