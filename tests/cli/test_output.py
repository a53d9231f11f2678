"""Output for any reader: escaped hostile text, any encoding, a closed or full stdout.

Real child processes named with terminal control sequences (through argv and
prctl(PR_SET_NAME)) and with non-ASCII names; real portbook processes with
stdout closed, pointed at /dev/full, or encoded as ASCII.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, prctl")

HOSTILE = "\x1b[2J\x1b[H\x1b]0;pwned\x07fake"

# A listener that renames itself (comm, through prctl) and shows argv[0] as given.
NAMED_SERVER = """
import ctypes, os, socket, sys, time
name = os.fsencode(sys.argv[1])
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


# The last name is bytes that are not UTF-8 (written as surrogateescape text).
@pytest.fixture(params=[HOSTILE, "s\u00e9rveur", "caf\u00e9\u202eevil", "\udcffsrv\udcfe"])
def named(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    name: str = request.param
    proc = subprocess.Popen(
        [sys.executable, "-c", NAMED_SERVER, name, name], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    try:
        yield name, port
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _shown(name: str) -> str:
    """How portbook's JSON gives a process name: the kernel's 15 bytes, with what
    is not UTF-8 as U+FFFD."""
    shown = os.fsencode(name)[:15].decode("utf-8", "replace")
    assert "\udcff" not in shown
    return shown


def _portbook(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "portbook", *argv],
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_control_characters_from_other_programs_never_reach_a_terminal(
    named: tuple[str, int],
) -> None:
    name, port = named
    for argv in (["who", str(port)], ["ls", "--port", str(port)], ["kill", "--dry-run", str(port)]):
        for tty in (False, True):
            shown = (
                run_cli(*argv, "--wide", tty=tty) if argv[0] == "ls" else run_cli(*argv, tty=tty)
            )
            assert shown.status == 0, shown
            text = shown.stdout + shown.stderr
            assert "\x1b[2J" not in text and "\x07" not in text and "\u202e" not in text
    # JSON keeps the exact text (escaped by the encoder).
    out = json.loads(run_cli("who", str(port), "--json").stdout)
    assert out[0]["processes"][0]["name"] == _shown(name)


def test_hostile_names_are_shown_escaped_and_readable(named: tuple[str, int]) -> None:
    name, port = named
    shown = run_cli("who", str(port)).stdout
    if name == HOSTILE:
        assert "\\x1b[2J\\x1b[H" in shown
    if name.startswith("\udcff"):
        assert "\ufffdsrv\ufffd" in shown  # bytes that are not UTF-8, as in JSON


@pytest.mark.parametrize(
    "env",
    [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}],
    ids=["ascii", "C-locale"],
)
@pytest.mark.parametrize(
    "argv",
    [["ls"], ["ls", "--json"], ["lookup", "690", "-l"], ["search", "vatp"], ["info"]],
    ids=" ".join,
)
def test_any_encoding_degrades_instead_of_failing(env: dict[str, str], argv: list[str]) -> None:
    done = _portbook(*argv, env=env)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    done.stdout.decode("ascii")  # nothing the stream could not hold
    if argv[:2] == ["lookup", "690"]:
        assert b"Guti\\xe9rrez" in done.stdout  # the registry's name, escaped


def test_a_non_ascii_process_name_under_ascii_output(named: tuple[str, int]) -> None:
    name, port = named
    for argv in (["who", str(port)], ["ls", "--json"], ["kill", "--dry-run", str(port)]):
        done = _portbook(*argv, env={"PYTHONIOENCODING": "ascii"})
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
        done.stdout.decode("ascii")
    data = json.loads(
        _portbook("who", str(port), "--json", env={"PYTHONIOENCODING": "ascii"}).stdout
    )
    assert data[0]["processes"][0]["name"] == _shown(name)


COMMANDS = [
    ["ls"],
    ["ls", "--json"],
    ["who", "22"],
    ["lookup", "443"],
    ["search", "http"],
    ["info"],
    ["names"],
    ["ephemeral"],
    ["route", "tcp", "127.0.0.1:9"],
    ["--help"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_a_closed_or_full_stdout_is_one_line_never_a_traceback(
    argv: list[str], tmp_path: os.PathLike[str]
) -> None:
    env = {**os.environ, "PORTBOOK_STORE": os.path.join(tmp_path, "s.sqlite3")}
    for redirect in ("exec >&-", "exec >/dev/full"):
        done = subprocess.run(
            ["sh", "-c", f'{redirect}; exec "$@"', "sh", sys.executable, "-m", "portbook", *argv],
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode in (1, 2), (redirect, done)
        assert b"Traceback" not in done.stderr and done.stderr.count(b"\n") == 1, done.stderr


def test_a_narrow_terminal_cuts_the_header_like_the_rows() -> None:
    from io import StringIO

    from portbook._cli._output import Output

    out = StringIO()
    table = Output(out, StringIO(), tty=True, width=30)
    table.table(
        ["PROTO", "LOCAL", "COMMAND LINE OF THE PROGRAM"],
        [["tcp", "127.0.0.1:80", "x" * 50]],
        drop=[1],
    )
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 30 for line in lines)
    assert "LOCAL" not in lines[0]  # the column that may go went first
