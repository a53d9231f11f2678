"""What a cold `portbook lookup` loads: the cost of start-up is kept out by design.

Each module named here costs a tenth or more of a bare interpreter start to
import (BENCHMARKS.md, the book); none is needed to answer a lookup. A new
import of one of them on this path is a start-up regression.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from portbook._book.registry import PACKAGED_REGISTRY
from portbook._cli._output import terminal_columns
from portbook._paths import file_uri

HEAVY = (
    "dataclasses",
    "inspect",
    "typing",
    "pathlib",
    "urllib.parse",
    "ipaddress",
    "shutil",
    "importlib",
    "json",
    # The package, not the C module _sqlite3 that the registry uses: it imports
    # datetime and registers adapters, about a fifth of a bare start.
    "sqlite3",
    # The Python module, not the C module _datetime whose `date` the records use.
    "datetime",
)

# argparse, and gettext with locale behind its first message, cost about a
# seventh of a cold start (BENCHMARKS.md): the everyday forms never build the parser.
PARSER = ("argparse", "gettext", "locale")


def _loaded_after(argv: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    code = (
        "import sys\n"
        "from portbook._cli import main\n"
        f"main({argv!r})\n"
        f"print('LOADED', [m for m in {heavy!r} if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return list(eval(out.stdout.strip().splitlines()[-1].removeprefix("LOADED ")))


@pytest.mark.parametrize(
    "argv", [["lookup", "443"], ["lookup", "https"], ["lookup", "6000-6010", "--proto", "tcp"]]
)
def test_a_cold_lookup_imports_none_of_the_heavy_modules(argv: list[str]) -> None:
    assert _loaded_after(argv) == []


@pytest.mark.parametrize("argv", [["lookup", "443"], ["lookup", "https"]])
def test_a_lookup_without_options_builds_no_parser(argv: list[str]) -> None:
    assert _loaded_after(argv, PARSER) == []
    assert _loaded_after([*argv, "--proto", "tcp"], ("argparse",)) == ["argparse"]


def test_an_address_in_the_query_loads_ipaddress_only_then() -> None:
    assert _loaded_after(["lookup", "[::1]:443"]) == ["ipaddress"]


@pytest.mark.parametrize(
    "name", ["plain", "with space", "q?mark", "hash#sign", "per%cent", "caf\u00e9", "semi;colon"]
)
def test_file_uri_matches_pathlib_and_sqlite_opens_it(tmp_path: Path, name: str) -> None:
    directory = tmp_path / name
    directory.mkdir()
    copy = directory / "registry.sqlite3"
    shutil.copyfile(PACKAGED_REGISTRY, copy)
    assert file_uri(str(copy)) == copy.resolve().as_uri()
    from portbook import Book

    book = Book(registry_path=copy, services_path=False, unofficial=False)
    try:
        assert [s.name for s in book.lookup(22, "tcp")] == ["ssh"]
        assert book.registry_info().path == str(copy)
    finally:
        book.close()


def test_file_uri_resolves_relative_paths_and_links(tmp_path: Path) -> None:
    target = tmp_path / "real.sqlite3"
    target.touch()
    link = tmp_path / "link.sqlite3"
    link.symlink_to(target)
    assert file_uri(str(link)) == link.resolve().as_uri()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert file_uri("real.sqlite3") == target.resolve().as_uri()
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("columns", ["123", "0", "-5", "wide", None])
def test_terminal_columns_follows_shutil(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setenv("LINES", "40")  # shutil reads both; only COLUMNS matters here
    assert terminal_columns(77) == shutil.get_terminal_size((77, 24)).columns


def test_help_is_wrapped_to_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    from portbook._cli import build_parser

    monkeypatch.setenv("COLUMNS", "60")
    text = io.StringIO()
    build_parser("lookup").parse_known_args(["lookup", "x"])
    build_parser().print_help(text)
    assert max(len(line) for line in text.getvalue().splitlines()) <= 58


@pytest.mark.parametrize(
    "argv",
    [
        ["lookup", "443", "--proto", "tcp", "--json"],
        ["lookup", "https", "-l"],
        ["search", "x window", "--limit", "3"],
        ["info", "--json"],
        ["update", "--from", "file.xml"],
    ],
)
def test_registering_one_book_command_parses_like_the_whole_group(argv: list[str]) -> None:
    import argparse

    from portbook._cli import _COMMANDS, build_parser
    from portbook._cli import book as book_cli
    from portbook._cli._parser import _Parser

    whole = _Parser(prog="portbook")
    book_cli.register(whole.add_subparsers(dest="command", parser_class=_Parser))
    one = build_parser(argv[0])
    sub = next(a for a in one._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [argv[0]] and _COMMANDS[argv[0]] == "book"
    assert vars(one.parse_args(argv)) == vars(whole.parse_args(argv))


def test_a_user_copy_in_an_awkward_data_dir_is_used(tmp_path: Path) -> None:
    from portbook import Book
    from portbook._book.registry import USER_REGISTRY_NAME

    data_dir = tmp_path / "my data?#%"
    data_dir.mkdir()
    shutil.copyfile(PACKAGED_REGISTRY, data_dir / USER_REGISTRY_NAME)
    for given in (data_dir, str(data_dir)):
        book = Book(data_dir=given, services_path=False)
        try:
            info = book.registry_info()
            assert (info.origin, info.path, info.warning) == (
                "user",
                str(data_dir / USER_REGISTRY_NAME),
                None,
            )
            assert [s.name for s in book.lookup(22, "tcp")] == ["ssh"]
        finally:
            book.close()
