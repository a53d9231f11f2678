"""The store: file mode, WAL, schema version and migrations, and its clear errors."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from portbook import (
    Store,
    StoreCorruptError,
    StoreLockedError,
    StoreReadOnlyError,
    StoreVersionError,
    assign,
    get,
    list_names,
)
from portbook._names.store import APPLICATION_ID, SCHEMA_VERSION, _v1, store_path
from tests.conftest import run_cli


def test_new_store_is_private_wal_and_current(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "s.sqlite3"
    with Store(path) as store:
        assign("api", store=store)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        conn.close()


def test_file_is_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Store(tmp_path / "s.sqlite3") as store:
            assign("api", store=store)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s.sqlite3").stat().st_mode) == 0o600


def test_store_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTBOOK_STORE", str(tmp_path / "env.sqlite3"))
    assert store_path() == tmp_path / "env.sqlite3"
    assert store_path(tmp_path / "arg.sqlite3") == tmp_path / "arg.sqlite3"
    monkeypatch.delenv("PORTBOOK_STORE")
    monkeypatch.setenv("PORTBOOK_DATA_DIR", str(tmp_path / "data"))
    assert store_path() == tmp_path / "data" / "names.sqlite3"


def test_cli_store_option_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTBOOK_STORE", str(tmp_path / "env.sqlite3"))
    assert run_cli("assign", "api", "--store", str(tmp_path / "opt.sqlite3")).status == 0
    assert run_cli("assign", "web").status == 0
    assert [a.name for a in list_names(store=Store(tmp_path / "opt.sqlite3"))] == ["api"]
    assert [a.name for a in list_names(store=Store(tmp_path / "env.sqlite3"))] == ["web"]


def test_migrates_a_version_1_store_keeping_its_names(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    _v1(conn)
    conn.execute("INSERT INTO names VALUES ('api', 12345, 'tcp', 0)")
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    with Store(path) as store:
        assert get("api", store=store).port == 12345
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "leases_expires" in indexes
    finally:
        conn.close()


def test_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    with Store(path) as store:
        assign("api", store=store)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreVersionError, match="newer than this portbook"), Store(path) as store:
        get("api", store=store)
    result = run_cli("get", "api", "--store", str(path))
    assert result.status == 1
    assert result.stderr.count("\n") == 1 and "upgrade portbook" in result.stderr


def test_garbage_file_is_corrupt_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database at all, just some text" * 100)
    with pytest.raises(StoreCorruptError), Store(path) as store:
        list_names(store=store)
    result = run_cli("names", "--store", str(path))
    assert result.status == 1 and "damaged or not a portbook store" in result.stderr
    assert path.read_bytes().startswith(b"this is not")  # left as it was


def test_database_of_another_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE recipes (title TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorruptError, match="another program"), Store(path) as store:
        list_names(store=store)


def test_lock_held_past_the_timeout_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        assign("api", store=store)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with (
            pytest.raises(StoreLockedError, match="busy timeout"),
            Store(path, timeout=0.2) as store,
        ):
            assign("web", store=store)
        # Readers are not blocked by a writer (WAL).
        with Store(path, timeout=0.2) as store:
            assert get("api", store=store).name == "api"
    finally:
        blocker.rollback()
        blocker.close()


def _run_read_only(path: Path, *argv: str) -> tuple[int, str]:
    """Run the CLI on ``path`` with its directory read-only, return (status, stderr).

    Root ignores file modes, so as root the directory is bind-mounted
    read-only in a mount namespace of the child's own (what a read-only home
    or volume looks like); otherwise plain modes do it.
    """
    top = path.parent
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("needs unshare(1) to make a read-only mount as root")
        script = (
            'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 99; shift; exec "$@"'
        )
        proc = subprocess.run(
            [
                *("unshare", "-m", "sh", "-c", script, "sh", str(top)),
                *(sys.executable, "-m", "portbook", *argv, "--store", str(path)),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if proc.returncode == 99:
            pytest.skip("this machine forbids mount namespaces")
        return proc.returncode, proc.stderr
    top.chmod(0o555)
    path.chmod(0o444)
    try:
        result = run_cli(*argv, "--store", str(path))
        with pytest.raises(StoreReadOnlyError), Store(path) as store:
            assign("web2", store=store)
    finally:
        top.chmod(0o755)
        path.chmod(0o600)
    return result.status, result.stderr


def test_read_only_store_is_a_clear_error(tmp_path: Path) -> None:
    top = tmp_path / "ro"
    path = top / "s.sqlite3"
    with Store(path) as store:
        assign("api", store=store)
    status, stderr = _run_read_only(path, "assign", "web")
    assert status == 1, stderr
    assert stderr.count("\n") == 1 and "read-only" in stderr, stderr
    # Reading still works: a read-only store is still a store.
    status, stderr = _run_read_only(path, "get", "api")
    assert status == 0, stderr
    status, stderr = _run_read_only(path, "assign", "api")  # known: answered by a read
    assert status == 0, stderr
    with Store(path) as store:
        assert [a.name for a in list_names(store=store)] == ["api"]


def test_unwritable_directory_for_a_new_store(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(StoreReadOnlyError):
            assign("api", store=Store(locked / "s.sqlite3"))
    finally:
        locked.chmod(0o755)


def test_reading_a_store_that_does_not_exist_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads see an empty store; only a write makes the file (and its directory)."""
    data = tmp_path / "data"
    monkeypatch.setenv("PORTBOOK_DATA_DIR", str(data))
    monkeypatch.delenv("PORTBOOK_STORE", raising=False)
    path = tmp_path / "later" / "names.sqlite3"
    with Store(path) as store:
        assert list_names(store=store) == []
    for argv in (["names"], ["names", "--json"], ["check", "8080"], ["ls"]):
        assert run_cli(*argv).status in (0, 1), argv  # check: 1 when 8080 is taken
    assert not path.parent.exists() and not data.exists()
    with Store(path) as store:
        assign("web", store=store)
        assert [a.name for a in list_names(store=store)] == ["web"]
    assert path.is_file()
