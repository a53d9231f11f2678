"""The book's commands: lookup, search, info; output for people and programs; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_portbook

CONTRACT = {"name", "port", "port_end", "protocol", "description", "source", "status"}


def test_lookup_groups_by_source() -> None:
    result = run_cli("lookup", "8080")
    assert result.status == 0 and result.stderr == ""
    out = result.stdout
    iana, etc, unofficial = (
        out.index("IANA registry"),
        out.find("/etc/services"),
        out.index("unofficial"),
    )
    assert iana < unofficial and (etc == -1 or iana < etc < unofficial)
    assert "http-alt" in out and "Tomcat" in out
    assert "8080 is a User port (registered)" in out


def test_lookup_shows_ranges_and_blocks() -> None:
    out = run_cli("lookup", "6003", "--proto", "tcp").stdout
    assert "6000-6063" in out and "x11" in out and "udp" not in out.split("\n\n")[0]
    out = run_cli("lookup", "29500").stdout
    assert "29170-29998" in out and "unassigned" in out
    out = run_cli("lookup", "2/tcp").stdout
    assert "reserved" in out


def test_lookup_long_shows_every_field() -> None:
    out = run_cli("lookup", "finger/tcp", "--long").stdout
    assert "unauthorized_use" in out and "RFC4146" in out and "assignee" in out


def test_lookup_json_follows_the_contract() -> None:
    result = run_cli("lookup", "443", "--json")
    assert result.status == 0
    data = json.loads(result.stdout)
    assert isinstance(data, list) and data
    for item in data:
        assert set(item) >= CONTRACT
        assert item["source"] in ("iana", "etc-services", "unofficial")
        assert item["status"] in ("assigned", "reserved", "unassigned")
        assert item["port"] == 443 and item["port_end"] == 443
        assert isinstance(item["protocol"], str)
    [argus] = json.loads(run_cli("lookup", "argus", "--json").stdout)
    assert (argus["port"], argus["port_end"], argus["protocol"]) == (None, None, None)


def test_nothing_found_prints_an_empty_array_and_exits_1() -> None:
    result = run_cli("lookup", "no-such-service-xyz", "--json")
    assert (result.status, result.stdout.strip()) == (1, "[]")
    result = run_cli("lookup", "no-such-service-xyz")
    assert result.status == 1 and result.stderr.count("\n") == 1
    result = run_cli("search", "zzzz-nothing-zzzz", "--json")
    assert (result.status, result.stdout.strip()) == (1, "[]")


def test_search_best_first_with_limit() -> None:
    result = run_cli("search", "kerberos", "--limit", "3", "--json")
    data = json.loads(result.stdout)
    assert result.status == 0 and len(data) == 3
    assert all(set(item) >= CONTRACT for item in data)
    table = run_cli("search", "kerberos", "--limit", "3").stdout.splitlines()
    assert table[0].split() == ["PORT", "PROTO", "NAME", "SOURCE", "DESCRIPTION"]
    assert len(table) == 4


def test_info_shows_sources_counts_and_ranges() -> None:
    result = run_cli("info")
    assert result.status == 0
    assert "2026-08-17" in result.stdout and "14533" in result.stdout
    assert "ephemeral range" in result.stdout and "Dynamic/Private" in result.stdout
    data = json.loads(run_cli("info", "--json").stdout)
    assert data["registry"]["records"] >= 10_000
    assert {"port_classes", "ephemeral", "reserved", "ranges_source"} <= set(data)


def test_tty_output_is_a_table_and_pipe_output_has_no_colour() -> None:
    assert "\x1b[" not in run_cli("lookup", "22").stdout
    assert run_cli("lookup", "22", tty=True).status == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["lookup", "70000"],
        ["lookup", "-1"],
        ["lookup", ""],
        ["lookup", "x" * 5000],
        ["lookup", "443", "--proto", "icmp"],
        ["lookup", "tcp/443", "--proto", "udp"],
        ["lookup", "bad name!"],
        ["lookup"],
        ["search", ""],
        ["search", "x", "--limit", "0"],
        ["search", "x", "--limit", "many"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.status == 2, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("portbook: error:")
    assert result.stdout == ""


def test_bad_input_in_a_real_process_has_no_traceback() -> None:
    for argv in (["lookup", "70000"], ["lookup", "\x01\x02"], ["search", " "]):
        result = run_portbook(*argv)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_info_is_the_overview() -> None:
    # `portbook` with no arguments is the live table (`ls`); the overview is `info`.
    result = run_portbook("info")
    assert result.returncode == 0 and "IANA" in result.stdout and "ephemeral" in result.stdout


def test_unauthorized_use_of_an_unnamed_block_is_labelled_with_the_block() -> None:
    import portbook

    blocks = [
        s
        for port in range(1024, 49152, 97)
        for s in portbook.lookup(port)
        if s.name is None and s.unauthorized_use and s.port != s.port_end
    ]
    assert blocks, "the registry has unnamed blocks with unauthorized-use notes"
    block = blocks[0]
    assert block.port is not None and block.port_end is not None
    result = run_cli("lookup", str(block.port_end))
    assert f"({block.status.value} block {block.port}-{block.port_end})" in result.stdout
    assert "unauthorized use reported (-)" not in result.stdout


@pytest.mark.parametrize("argv", [["lookup", "443"], ["search", "ssh"], ["who", "22"], ["ls"]])
def test_a_damaged_user_registry_is_said_once_and_the_packaged_one_answers(
    argv: list[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "registry.sqlite3").write_bytes(b"not a database " * 300)
    done = run_portbook(*argv, env={"PORTBOOK_DATA_DIR": str(data)})
    assert done.returncode in (0, 1), done.stderr
    lines = [x for x in done.stderr.splitlines() if x.startswith("portbook: warning:")]
    assert len(lines) == 1 and lines[0].startswith("portbook: warning: registry data"), lines
    assert "using the packaged registry instead" in lines[0]
    if argv[0] == "lookup":
        assert "https" in done.stdout
