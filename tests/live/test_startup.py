"""What `portbook who` and `portbook ls` load: their fixed cost is kept down by design.

Each module named in HEAVY costs a tenth or more of a bare interpreter start
to import (BENCHMARKS.md); none is needed to list sockets. `ipaddress` is
expected: the Socket record holds address objects. `json` only for --json.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.test_startup import PARSER

HEAVY = (
    "dataclasses",
    "inspect",
    "typing",
    "pathlib",
    "shutil",
    "importlib",
    "contextlib",
    "json",
    "sqlite3",  # the package; the book's registry uses the C module _sqlite3
)

pytestmark = [
    pytest.mark.linux,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux backends' path"),
]


def _loaded_after(argv: list[str], heavy: tuple[str, ...] = HEAVY) -> tuple[int, list[str]]:
    """(exit status, ``heavy`` modules loaded) of ``portbook ARGV`` in a fresh interpreter."""
    code = (
        "import sys\n"
        "from portbook._cli import main\n"
        f"status = main({argv!r})\n"
        f"print('LOADED', status, [m for m in {heavy!r} if m in sys.modules])\n"
    )
    status, _, loaded = _last_line(code).removeprefix("LOADED ").partition(" ")
    return int(status), list(eval(loaded))


def _last_line(code: str) -> str:
    """The last line ``python -c CODE`` prints, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_who_loads_none_of_the_heavy_modules(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert _loaded_after(["who", str(port)]) == (0, [])


def test_who_json_loads_only_json(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert _loaded_after(["who", str(port), "--json"]) == (0, ["json"])


def test_ls_loads_none_of_the_heavy_modules(listener: socket.socket) -> None:
    # Only the test's own port: a container's published port (other tests start some)
    # is named from its runtime's JSON state, which rightly loads json.
    port = str(listener.getsockname()[1])
    assert _loaded_after(["ls", "--tcp", "--port", port]) == (0, [])


def test_ls_all_json_loads_only_json(listener: socket.socket) -> None:
    assert _loaded_after(["ls", "--all", "--json"]) == (0, ["json"])


def test_ls_names_its_ports_without_datetime_or_the_books_records(
    listener: socket.socket,
) -> None:
    # Only the book's Service records carry dates; naming a port is a string.
    # (`who` shows the book's entry for its port, dates and all.)
    heavy = ("datetime", "_datetime", "portbook._book.records")
    assert _loaded_after(["ls"], heavy) == (0, [])
    port = str(listener.getsockname()[1])
    # The check can fail: `who` prints the book's entries, records and all.
    records = ("portbook._book.records",)
    assert _loaded_after(["who", port], records) == (0, ["portbook._book.records"])


@pytest.mark.parametrize("argv", [[], ["ls"], ["who", "PORT"]])
def test_the_everyday_forms_build_no_parser(listener: socket.socket, argv: list[str]) -> None:
    port = str(listener.getsockname()[1])
    argv = [port if a == "PORT" else a for a in argv]
    assert _loaded_after(argv, PARSER) == (0, [])


def test_an_option_builds_the_parser(listener: socket.socket) -> None:
    """The check above can fail: a form with an option goes through argparse."""
    assert _loaded_after(["ls", "--tcp"], ("argparse",)) == (0, ["argparse"])


def _command() -> str:
    """The installed ``portbook`` command of this interpreter's environment."""
    import shutil

    found = shutil.which("portbook", path=os.path.dirname(sys.executable))
    if found is None:
        pytest.fail("no portbook command installed beside this interpreter")
    return found


@pytest.mark.parametrize("argv", [["lookup", "443"], ["lookup", "https"]])
def test_the_installed_command_does_not_import_re(argv: list[str]) -> None:
    """The command is bin/portbook: an entry point's wrapper would import re (8M instructions).

    (`portbook` and `who` import it too where containers run or other
    namespaces exist, as the test machine may have at any moment: their
    readers use it. A lookup's path is the same everywhere.)
    """
    script = _command()
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('RE', 're' in sys.modules))\n"
        f"sys.argv = [{script!r}, *{argv!r}]\n"
        f"exec(compile(open({script!r}).read(), {script!r}, 'exec'), {{'__name__': '__main__'}})\n"
    )
    assert _last_line(code) == "RE False"
