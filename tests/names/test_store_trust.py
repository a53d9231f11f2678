"""The store trusts no file another user made or can change, and no path that names no file.

The hostile files are made by a real other user: a child process started
with its uid and gid dropped to nobody's (65534) after the directories were
laid out, as root (CI runs as root; these tests need it and skip without it).
The victim is this test process. After every refusal the other user's files
are byte for byte what they were, and nothing was created beside them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from portbook import (
    Store,
    StoreCorruptError,
    StoreError,
    UsageError,
    assign,
    get,
    list_names,
    pick_port,
    release,
)
from tests.conftest import run_cli, run_portbook

NOBODY = 65534
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root, to make files as another user (uid 65534)",
)


def _other_user(script: str, *args: str) -> None:
    """Run a shell script as uid/gid 65534 with no supplementary groups."""
    proc = subprocess.run(
        ["/bin/sh", "-c", script, "sh", *args],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def _their_directory(path: Path) -> Path:
    """A directory of uid 65534's own, 0755 (made for them: they cannot write into ``shared``)."""
    path.mkdir(mode=0o755)
    os.chown(path, NOBODY, NOBODY)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory of root's, 0711, in the system's temporary directory: every user reaches
    into it (pytest's own temporary directories are 0700, which uid 65534 cannot enter)."""
    base = Path(tempfile.mkdtemp(prefix="portbook-trust-"))
    base.chmod(0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base)


@pytest.fixture
def their_store(shared: Path) -> Path:
    """A real portbook store with one name ("api"), that uid 65534 may copy."""
    source = shared / "theirs-source.sqlite3"
    with Store(source) as store:
        assign("api", store=store)
    source.chmod(0o644)
    return source


def _refused(path: Path, match: str) -> None:
    """Every way in (assign, get, pick, release, names; the CLI too) is refused with ``match``."""
    for call in (
        lambda s: assign("web", store=s),
        lambda s: get("api", store=s),
        lambda s: pick_port(store=s),
        lambda s: release("api", store=s),
        lambda s: list_names(store=s),
    ):
        with pytest.raises(StoreError, match=match), Store(path) as store:
            call(store)
    result = run_cli("assign", "web", "--store", str(path))
    assert result.status == 1 and result.stderr.count("\n") == 1, result
    assert result.stderr.startswith("portbook: error: refusing the store"), result.stderr


# -- another user's files --------------------------------------------------------------


@as_root
def test_a_0666_store_another_user_made_in_a_shared_directory(shared: Path) -> None:
    drop = shared / "drop"
    drop.mkdir()
    drop.chmod(0o1777)  # /tmp-like: sticky, everyone may create
    store = drop / "names.sqlite3"
    _other_user('umask 0; : > "$1"; chmod 0666 "$1"', str(store))
    assert store.stat().st_uid == NOBODY and stat.S_IMODE(store.stat().st_mode) == 0o666
    _refused(store, "can be written by other users")
    assert store.read_bytes() == b"" and _listing(drop) == ["names.sqlite3"]


@as_root
def test_a_store_another_user_owns_in_our_own_directory(shared: Path, their_store: Path) -> None:
    mine = shared / "mine"
    mine.mkdir()
    mine.chmod(0o777)
    store = mine / "names.sqlite3"
    _other_user('cp "$1" "$2" && chmod 0600 "$2"', str(their_store), str(store))
    mine.chmod(0o700)  # ours and private now; the file in it is still theirs
    before = _digest(store)
    _refused(store, r"belongs to nobody \(uid 65534\), not to you")
    assert _digest(store) == before and _listing(mine) == ["names.sqlite3"]


@as_root
def test_a_symbolic_link_another_user_made_to_a_file_they_own(
    shared: Path, their_store: Path
) -> None:
    mine = shared / "mine"
    mine.mkdir()
    mine.chmod(0o777)
    theirs = _their_directory(shared / "theirs")
    script = (
        'cp "$2" "$1/names.sqlite3" && chmod 0666 "$1/names.sqlite3"'
        ' && ln -s "$1/names.sqlite3" "$3"'
    )
    store = mine / "names.sqlite3"
    _other_user(script, str(theirs), str(their_store), str(store))
    mine.chmod(0o700)
    assert store.is_symlink() and store.lstat().st_uid == NOBODY
    target = theirs / "names.sqlite3"
    before = _digest(target)
    _refused(store, "is a symbolic link")
    assert _digest(target) == before
    assert _listing(theirs) == ["names.sqlite3"]  # no -wal, -shm or -journal beside it
    assert _listing(mine) == ["names.sqlite3"]


@as_root
def test_a_directory_another_user_owns_on_the_way(shared: Path) -> None:
    # They cannot write into ours, but they may rename it away and put theirs there.
    theirs = _their_directory(shared / "theirs")
    mine = theirs / "mine"
    mine.mkdir(mode=0o700)
    _refused(mine / "names.sqlite3", r"the directory .*/theirs belongs to nobody")
    assert _listing(mine) == []


@as_root
def test_another_users_symbolic_link_in_a_sticky_directory(shared: Path) -> None:
    drop = shared / "drop"
    drop.mkdir()
    drop.chmod(0o1777)
    ours = shared / "ours"
    ours.mkdir(mode=0o700)
    link = drop / "link"
    _other_user('ln -s "$1" "$2"', str(ours), str(link))
    _refused(link / "names.sqlite3", "is a symbolic link of nobody")
    assert _listing(ours) == []


@pytest.mark.parametrize("mode", [0o770, 0o775, 0o707, 0o1770], ids=oct)
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(mode)
    _refused(group / "names.sqlite3", f"can be written by other users \\(mode {mode:04o}\\)")
    assert _listing(group) == []  # nothing created


def test_a_sticky_directory_others_can_write_may_not_hold_the_store(tmp_path: Path) -> None:
    # Sticky keeps our files ours, but not the -wal and -shm SQLite has yet to create.
    drop = tmp_path / "drop"
    drop.mkdir()
    drop.chmod(0o1777)
    _refused(drop / "names.sqlite3", "keep the store in a directory only you can write")
    assert _listing(drop) == []


# -- our own files ---------------------------------------------------------------------------


def test_our_file_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        assign("api", store=store)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"s.sqlite3": 0o600, "s.sqlite3-wal": 0o600, "s.sqlite3-shm": 0o600}


def test_our_readable_file_is_tightened_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        assign("api", store=store)
    path.chmod(0o644)
    (tmp_path / "s.sqlite3-journal").write_bytes(b"")
    (tmp_path / "s.sqlite3-journal").chmod(0o640)
    with Store(path) as store:
        assert get("api", store=store).name == "api"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "s.sqlite3-journal").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602], ids=oct)
def test_our_file_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        assign("api", store=store)
    path.chmod(mode)
    before = _digest(path)
    _refused(path, f"can be written by other users \\(mode {mode:04o}\\)")
    assert _digest(path) == before


@pytest.mark.parametrize("side", ["-wal", "-shm", "-journal"])
def test_a_side_file_that_is_a_link_is_refused(tmp_path: Path, side: str) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        assign("api", store=store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    (tmp_path / f"s.sqlite3{side}").symlink_to(elsewhere)
    _refused(path, "is a symbolic link")
    assert elsewhere.read_bytes() == b""


def test_our_own_link_to_our_own_file_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.sqlite3"
    with Store(real) as store:
        assign("api", store=store)
    link = tmp_path / "link.sqlite3"
    link.symlink_to(real)
    _refused(link, "is a symbolic link")


def test_links_to_directories_of_our_own_are_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "up").symlink_to(".")
    with Store(tmp_path / "up" / "link" / "sub" / ".." / "s.sqlite3") as store:
        assert assign("api", store=store).name == "api"
    assert _listing(real) == ["s.sqlite3", "sub"]
    assert stat.S_IMODE((real / "sub").stat().st_mode) == 0o700


def test_missing_directories_are_made_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Store(tmp_path / "a" / "b" / "s.sqlite3") as store:
            assign("api", store=store)
    finally:
        os.umask(old)
    for directory in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


# -- what is not a regular file, or no path at all ---------------------------------------


@pytest.mark.parametrize("kind", ["dev-null", "directory", "fifo", "socket"])
def test_what_is_not_a_regular_file_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    import socket

    if kind == "dev-null":
        path = Path("/dev/null")
    else:
        path = tmp_path / kind
        if kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(path))
            sock.close()
    journal_before = os.path.lexists("/dev/null-journal")
    with pytest.raises(StoreError, match="not a regular file"), Store(path) as store:
        assign("api", store=store)
    result = run_portbook("assign", "api", env={"PORTBOOK_STORE": str(path)}, timeout=30)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result
    assert "not a regular file" in result.stderr
    assert os.path.lexists("/dev/null-journal") == journal_before
    if kind != "dev-null":
        assert _listing(tmp_path) == [kind]


def test_a_path_through_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(StoreError, match="Not a directory"), Store(tmp_path / "file" / "s") as s:
        assign("api", store=s)


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ("x" * 300 + "/s.sqlite3", "too long for this system"),
        ("dir/" + "x" * 300, "too long for this system"),
        ("~nosuchuser-portbook/s.sqlite3", "cannot expand '~nosuchuser-portbook'"),
        ("dir/..", "names a directory"),
    ],
)
def test_a_store_path_that_can_name_no_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, match: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=match), Store(given) as store:
        assign("api", store=store)
    for env, argv in (({"PORTBOOK_STORE": given}, ()), ({}, ("--store", given))):
        result = run_portbook("assign", "api", *argv, env=env)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result
        assert "Traceback" not in result.stderr
    assert _listing(tmp_path) == []


def test_an_empty_store_option_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="empty"):
        Store("")
    result = run_cli("assign", "api", "--store", "")
    assert result.status == 2 and "store path is empty" in result.stderr


# -- a damaged store ---------------------------------------------------------------------------


def _damaged_store(tmp_path: Path) -> Path:
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        for i in range(300):
            assign(f"name-{i}", store=store)
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert pages > 4 and not (tmp_path / "s.sqlite3-wal").exists()
    with open(path, "r+b") as fh:  # an interior page of the names table overwritten
        fh.seek(page_size * (pages // 2))
        fh.write(b"\xa5" * page_size)
    return path


def test_a_damaged_store_refuses_every_write_with_one_line(tmp_path: Path) -> None:
    path = _damaged_store(tmp_path)
    before = _digest(path)
    for call in (
        lambda s: assign("new-name", store=s),
        lambda s: assign("another", port=45678, store=s),
        lambda s: release("name-1", store=s),
        lambda s: pick_port(store=s),
    ):
        with pytest.raises(StoreCorruptError, match="damaged"), Store(path) as store:
            call(store)
    for argv in (("assign", "new-name"), ("pick",), ("release", "name-2"), ("get", "name-3")):
        result = run_cli(*argv, "--store", str(path))
        assert result.status == 1 and result.stderr.count("\n") == 1, result
        assert "is damaged" in result.stderr
    assert _digest(path) == before  # nothing was written
    findings: list[str] | str
    with Store(path) as store:  # answers with SQLite's findings, or fails as plainly
        try:
            findings = store.integrity_check()
        except StoreCorruptError as exc:
            findings = str(exc)
    assert findings != ["ok"] and findings


def test_a_sound_store_passes_the_check_on_every_open(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    for i in range(3):
        with Store(path) as store:
            assign(f"n{i}", store=store)
            assert store.integrity_check() == ["ok"]
    with Store(path) as store:
        assert [a.name for a in list_names(store=store)] == ["n0", "n1", "n2"]
