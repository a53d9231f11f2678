"""Names: assign, get, release, list, export/import, env, and their clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portbook import (
    Assignment,
    InvalidNameError,
    NotFoundError,
    PortUnavailableError,
    Protocol,
    Store,
    UsageError,
    assign,
    export_names,
    get,
    holder_for,
    import_names,
    list_leases,
    list_names,
    name_status,
    pick_port,
    release,
)
from tests.conftest import run_cli
from tests.names._support import single, spare_port


@pytest.fixture
def env_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.sqlite3"
    monkeypatch.setenv("PORTBOOK_STORE", str(path))
    return path


def test_assign_is_stable_until_released(store: Store) -> None:
    first = assign("api", store=store)
    assert first.protocol is Protocol.TCP and first.port >= 1024
    assert assign("api", store=store) == first
    assert get("api", store=store) == first
    assert release("api", store=store) == first
    with pytest.raises(NotFoundError):
        get("api", store=store)
    with pytest.raises(NotFoundError):
        release("api", store=store)


def test_names_get_distinct_ports_and_list_sorted(store: Store) -> None:
    for name in ("web", "api", "db", "cache"):
        assign(name, store=store)
    names = list_names(store=store)
    assert [a.name for a in names] == ["api", "cache", "db", "web"]
    assert len({a.port for a in names}) == 4


def test_assign_a_given_port_and_protocol(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    a = assign("dns", port=port, protocol="udp", store=store)
    assert a == Assignment("dns", port, Protocol.UDP)
    # The same number on the other protocol is another name's to have.
    assert assign("dns-tcp", port=port, protocol="tcp", store=store).port == port


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("x" * 64, "longer than 63"),
        ("a\x00b", "control characters"),
        ("api\n", "control characters"),
        ("a\x1bb", "control characters"),
        ("caf\u00e9", "ASCII"),
        ("has space", "ASCII letters"),
        ("9lives", "start with a letter"),
        ("-api", "start with a letter"),
    ],
)
def test_bad_names_are_refused_clearly(store: Store, name: str, reason: str) -> None:
    with pytest.raises(InvalidNameError, match=reason):
        assign(name, store=store)
    result = run_cli("assign", "--store", str(store.path), "--", name)
    assert result.status == 2
    assert result.stderr.count("\n") == 1 and "invalid name" in result.stderr


def test_good_names_include_port_for_style(store: Store) -> None:
    for name in ("api", "A", "example.com/apache", "my_db-2", "x" * 63):
        assert assign(name, store=store).name == name


def test_port_of_another_name_is_refused(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    assign("api", port=port, store=store)
    with pytest.raises(PortUnavailableError, match="'api'"):
        assign("web", port=port, store=store)
    with pytest.raises(PortUnavailableError, match="release it first"):
        assign("api", port=port + 1, store=store)
    with pytest.raises(PortUnavailableError, match="release it first"):
        assign("api", protocol="udp", store=store)


def test_port_held_by_a_live_program_is_refused_naming_it(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(PortUnavailableError, match=f"pid {os.getpid()}") as info:
            assign("api", port=port, store=store)
    assert info.value.port == port
    assert assign("api", port=port, store=store).port == port  # free again


def test_a_port_leased_to_another_process_is_refused(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pick_port(port_range=single(port), store=store, holder=holder_for(other.pid))
        with pytest.raises(PortUnavailableError, match=f"leased to pid {other.pid}"):
            assign("api", port=port, store=store)
    finally:
        other.kill()
        other.wait()


def test_the_callers_own_pick_is_no_conflict_for_assign(tmp_path: Path) -> None:
    # P=$(portbook pick) leases P to the shell; the same shell's assign takes it over.
    store = tmp_path / "s.sqlite3"
    portbook = f"{sys.executable} -m portbook"
    script = f'P=$({portbook} pick) && {portbook} assign api --port "$P" && echo "$P"'
    done = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PORTBOOK_STORE": str(store)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assigned, picked = done.stdout.split()
    assert assigned == picked
    assert list_leases(store=Store(store)) == []  # the name holds the port now, not a lease


def test_port_zero_and_nonsense_ports_are_usage_errors(store: Store) -> None:
    with pytest.raises(UsageError):
        assign("api", port=0, store=store)
    result = run_cli("assign", "api", "--port", "70000", "--store", str(store.path))
    assert result.status == 2 and result.stderr.count("\n") == 1
    result = run_cli("assign", "api", "--proto", "icmp", "--store", str(store.path))
    assert result.status == 2 and "unknown protocol" in result.stderr


def test_name_status_says_who_listens(store: Store) -> None:
    a = assign("api", store=store)
    b = assign("idle", store=store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", a.port))
        s.listen()
        status = {st.assignment.name: st for st in name_status(store=store)}
    assert status["api"].listening
    assert [p.pid for p in status["api"].processes] == [os.getpid()]
    assert not status["idle"].listening and status["idle"].processes == ()
    assert status["idle"].assignment == b


def test_cli_json_contract(env_store: Path) -> None:
    assigned = json.loads(run_cli("assign", "api", "--json").stdout)
    assert set(assigned) == {"name", "port", "protocol"} and assigned["name"] == "api"
    assert json.loads(run_cli("get", "api", "--json").stdout) == assigned
    assert run_cli("get", "api").stdout.strip() == str(assigned["port"])
    assert run_cli("assign", "api").stdout.strip() == str(assigned["port"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", assigned["port"]))
        s.listen()
        listing = json.loads(run_cli("names", "--json").stdout)
    assert listing[0]["name"] == "api" and listing[0]["listening"] is True
    assert {"name", "port", "protocol", "listening", "processes"} == set(listing[0])
    assert listing[0]["processes"][0]["pid"] == os.getpid()
    table = run_cli("names")
    assert "api" in table.stdout and "NAME" in table.stdout
    released = run_cli("release", "api", "--json")
    assert json.loads(released.stdout) == assigned
    missing = run_cli("get", "api")
    assert missing.status == 1 and missing.stderr.count("\n") == 1
    assert run_cli("names", "--json").stdout.strip() == "[]"


def test_export_import_round_trip(tmp_path: Path, store: Store) -> None:
    assign("api", store=store)
    assign("dns", protocol="udp", store=store)
    doc = export_names(store=store)
    with Store(tmp_path / "other.sqlite3") as other:
        added = import_names(json.dumps(doc), store=other)
        assert sorted(a.name for a in added) == ["api", "dns"]
        assert list_names(store=other) == list_names(store=store)
        assert import_names(json.dumps(doc), store=other) == []  # idempotent


def test_import_port_for_ini(store: Store, tmp_path: Path) -> None:
    a, b = spare_port(tmp_path), spare_port(tmp_path)
    ini = f"[DEFAULT]\nfoo = {a}\nexample.com/apache = {b}\n"
    added = import_names(ini, store=store)
    assert {(x.name, x.port) for x in added} == {("foo", a), ("example.com/apache", b)}
    path = tmp_path / "port-for.conf"
    path.write_text(ini)
    result = run_cli("names", "--import", str(path), "--store", str(store.path))
    assert result.status == 0 and "imported 0 names" in result.stdout


def test_import_is_all_or_nothing(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    assign("api", port=port, store=store)
    doc = {"names": [{"name": "new", "port": port + 1}, {"name": "clash", "port": port}]}
    with pytest.raises(PortUnavailableError, match="nothing imported"):
        import_names(json.dumps(doc), store=store)
    assert [a.name for a in list_names(store=store)] == ["api"]


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"format": "something-else", "names": []}',
        '{"names": [{"name": "x"}]}',
        '[{"name": "", "port": 5}]',
        "just some words",
        "[DEFAULT]\nfoo = notaport\n",
        '{"names": [{"name": "a", "port": 20001}, {"name": "b", "port": 20001}]}',
    ],
)
def test_bad_import_files_are_usage_errors(store: Store, text: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        import_names(text, store=store)
    path = tmp_path / "bad"
    path.write_text(text)
    result = run_cli("names", "--import", str(path), "--store", str(store.path))
    assert result.status == 2 and result.stderr.count("\n") == 1


def test_import_of_a_missing_file(store: Store, tmp_path: Path) -> None:
    result = run_cli("names", "--import", str(tmp_path / "nope"), "--store", str(store.path))
    assert result.status == 2 and "cannot read" in result.stderr


def test_cli_export_then_import_via_stdin(env_store: Path, tmp_path: Path) -> None:
    run_cli("assign", "api")
    exported = run_cli("names", "--export").stdout
    other = tmp_path / "o.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-m", "portbook", "names", "--import", "-", "--store", str(other)],
        input=exported,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert [a.name for a in list_names(store=Store(other))] == ["api"]


def test_env_lines_evaluate_in_a_shell(env_store: Path) -> None:
    api = run_cli("assign", "api").stdout.strip()
    site = run_cli("assign", "example.com/web").stdout.strip()
    result = run_cli("env", "api", "example.com/web")
    assert result.status == 0
    assert result.stdout.splitlines() == [
        f"export API_PORT={api}",
        f"export EXAMPLE_COM_WEB_PORT={site}",
    ]
    out = subprocess.run(
        ["sh", "-c", f'eval "{result.stdout}"; echo "$API_PORT $EXAMPLE_COM_WEB_PORT"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [api, site]
    missing = run_cli("env", "api", "nope")
    assert missing.status == 1 and missing.stdout == ""


def test_env_refuses_two_names_with_one_variable(env_store: Path) -> None:
    run_cli("assign", "my-db")
    run_cli("assign", "my_db")
    result = run_cli("env", "my-db", "my_db")
    assert result.status == 2 and "MY_DB_PORT" in result.stderr


def test_time_wait_leftovers_do_not_refuse_a_port(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server's end lingers in TIME-WAIT
    client.close()
    server.close()
    # No program holds the port any more: asking for it is fine.
    assert assign("api", port=port, store=store).port == port


def test_udp_port_held_by_a_program_is_refused(store: Store, tmp_path: Path) -> None:
    port = spare_port(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
        with pytest.raises(PortUnavailableError, match=f"udp/{port} is in use by pid"):
            assign("dns", port=port, protocol="udp", store=store)
        # TCP on the same number is another matter.
        assert assign("web", port=port, protocol="tcp", store=store).port == port
