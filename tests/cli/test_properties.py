"""The CLI's contract as a property: for any arguments and environment, every
command exits 0, 1, 2 or 130, writes at most one error line, never lets an
exception out and never writes a control character to the terminal.

Hypothesis builds command lines from each subcommand's real parser (its option
strings) mixed with hostile values, and environments from the variables
portbook reads. Each example runs in a fresh directory with its own store and
data directory. A few commands act on the world, so their examples are held
to what cannot hurt: kill always runs with --dry-run, wait with a short
timeout and no command after "--", ls --watch with one refresh, update from a
local file, metrics never writes a file; run and serve (which start programs
and servers) have their parsers driven without running the handler.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portbook._cli import _COMMANDS, CliUsageError, _ParserExit, build_parser, main
from portbook._cli._output import Output

# Run only through the parser: their handlers start programs or servers.
PARSE_ONLY = {"run", "serve"}
# What is put in front of the generated words (argparse keeps the last value of
# an option, and these options are dropped from the generated words).
PINNED: dict[str, list[str]] = {
    "kill": ["--dry-run"],
    "wait": ["--timeout", "0.2"],
    "ls": ["--count", "1", "--interval", "0.01"],
    "update": ["--from", "registry.csv"],
}
DROPPED: dict[str, set[str]] = {
    "kill": {"-y", "--yes"},
    "wait": {"-t", "--timeout", "--"},
    "ls": {"--count", "--interval"},
    "update": {"--from"},
    "metrics": {"--textfile"},
}

# Values a hostile or careless user passes; paths are relative to the
# example's own directory, which holds the files named here.
VALUES = [
    "",
    "-",
    "--",
    "0",
    "1",
    "-1",
    "80",
    "65535",
    "65536",
    "1-65535",
    "9" * 400,
    "nan",
    "inf",
    "-inf",
    "1e308",
    "0x50",
    "\u0669",
    "\u00b2",
    "\x1b[2J\x1b[H",
    "caf\u00e9",
    "\udcff",
    "a" * 300,
    "a..b",
    "tcp",
    "udp",
    "tcp/80",
    "udp/53",
    "127.0.0.1",
    "127.0.0.1:1",
    "::1",
    "[::1]:1",
    "localhost",
    "ssh",
    "http",
    "api",
    "TERM",
    "KILL",
    "root",
    "nobody",
    "store.sqlite3",
    "garbage.sqlite3",
    "registry.csv",
    "export.json",
    "missing/file",
    "/dev/null",
]


def _actions(command: str) -> list[argparse.Action]:
    """What the command's real parser accepts, but --help."""
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if not isinstance(a, argparse._HelpAction)]


TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
VALUE = st.one_of(
    st.sampled_from(VALUES), st.sampled_from(VALUES), st.integers(-1, 70000).map(str), TEXT
)


def _given(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    """One use of an option: the flag, or the flag and a value."""
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:
        return flag.map(lambda f: [f])
    return st.tuples(flag, VALUE).map(list)


def _positional(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    if action.nargs is None:
        return VALUE.map(lambda v: [v])
    return st.lists(VALUE, min_size=1 if action.nargs == "+" else 0, max_size=2)


def _words(command: str) -> st.SearchStrategy[list[str]]:
    """Options with values and the positionals the command takes, in a shape the
    parser may accept, then now and then some words that do not fit."""
    actions = _actions(command)
    options = [_given(a) for a in actions if a.option_strings]
    positionals = [_positional(a) for a in actions if not a.option_strings]
    stray = st.one_of(
        VALUE, *(st.sampled_from(a.option_strings) for a in actions if a.option_strings)
    )
    return st.tuples(
        st.lists(st.one_of(*options), max_size=4) if options else st.just([]),
        st.tuples(*positionals) if positionals else st.just(()),
        st.lists(stray, max_size=2),
        st.integers(0, 4),
    ).map(
        lambda parts: (
            [w for group in parts[0] for w in group]
            + [w for group in parts[1] for w in group]
            + (parts[2] if parts[3] == 0 else [])
        )
    )


ENVIRONMENT = st.dictionaries(
    st.sampled_from(
        ["PORTBOOK_STORE", "PORTBOOK_DATA_DIR", "XDG_DATA_HOME", "COLUMNS", "TERM", "HOME"]
    ),
    st.sampled_from(VALUES),
    max_size=3,
)


def _held(command: str, words: list[str]) -> list[str]:
    kept = [w for w in words if w not in DROPPED.get(command, set())]
    return [command, *PINNED.get(command, []), *kept]


@contextlib.contextmanager
def _sandbox(env: dict[str, str]) -> Iterator[Path]:
    """A fresh directory as the working directory, with portbook's variables
    pointing into it unless the example sets them itself."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        here = Path(tmp)
        (here / "garbage.sqlite3").write_bytes(b"not a database" * 100)
        (here / "registry.csv").write_text("Service Name,Port Number\nx,99999\n")
        (here / "export.json").write_text('{"version": 1, "names": [{"name": "x"}]}')
        os.chdir(here)
        try:
            os.environ.update(
                {
                    "PORTBOOK_STORE": str(here / "store.sqlite3"),
                    "PORTBOOK_DATA_DIR": str(here / "data"),
                    "HOME": str(here),
                    "NO_COLOR": "1",
                }
            )
            os.environ.pop("XDG_DATA_HOME", None)
            os.environ.update(env)
            yield here
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)


# Control characters but the newline (and the tab that help texts never use).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _check(status: int, out: str, err: str) -> None:
    assert status in (0, 1, 2, 130), (status, err)
    lines = err.splitlines()
    assert sum(line.startswith("portbook: error:") for line in lines) <= 1, err
    assert all(line.startswith("portbook: ") for line in lines), err
    assert not CONTROL.search(out), out
    assert not CONTROL.search(err), err


RUN = sorted(set(_COMMANDS) - PARSE_ONLY)
SETTINGS = settings(
    max_examples=int(os.environ.get("PORTBOOK_PROPERTY_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@pytest.mark.parametrize("command", RUN)
@SETTINGS
@given(
    data=st.data(),
    env=ENVIRONMENT,
    screen=st.tuples(
        st.booleans(),
        st.sampled_from([20, 80, 200]),
        st.sampled_from(["utf-8", "ascii", "latin-1"]),
    ),
)
def test_any_command_line_keeps_the_contract(
    command: str, data: st.DataObject, env: dict[str, str], screen: tuple[bool, int, str]
) -> None:
    argv = _held(command, data.draw(_words(command), label="words"))
    tty, width, encoding = screen
    # As Output.for_stdout sets up a real stdout: what the encoding lacks becomes an escape.
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors="backslashreplace", newline="\n")
    err = io.StringIO()
    with _sandbox(env):
        status = main(argv, Output(stream=stream, err=err, tty=tty, width=width))
    stream.flush()
    shown = raw.getvalue().decode(encoding)
    if tty:  # ls --watch redraws a terminal with the one sequence it may write
        shown = shown.replace("\x1b[H\x1b[2J", "")
    _check(status, shown, err.getvalue())


@pytest.mark.parametrize("command", sorted(PARSE_ONLY))
@SETTINGS
@given(data=st.data())
def test_parsers_of_commands_that_start_things_refuse_cleanly(
    command: str, data: st.DataObject
) -> None:
    argv = [command, *data.draw(_words(command), label="words")]
    parser = build_parser(command)
    with contextlib.suppress(CliUsageError, _ParserExit):
        parser.parse_args(argv)
