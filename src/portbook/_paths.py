"""Where portbook keeps the user's files.

The user data directory follows each system's convention (XDG on Linux and
the BSDs, ``~/Library/Application Support`` on macOS, ``%LOCALAPPDATA%`` on
Windows). ``PORTBOOK_DATA_DIR`` overrides it, which tests and sandboxed
services use. This is a dozen lines, so it is written here rather than
pulled in as a dependency.
"""

from __future__ import annotations

import os
import sys

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "STORE_ENV",
    "STORE_FILENAME",
    "default_store_name",
    "file_kind",
    "file_uri",
    "user_data_dir",
    "user_data_dir_name",
]


STORE_ENV = "PORTBOOK_STORE"
STORE_FILENAME = "names.sqlite3"


def default_store_name() -> str:
    """The names store used when none is given: ``$PORTBOOK_STORE``, else in the data directory.

    As a string (see :func:`user_data_dir_name`): the live table asks whether
    it exists on every listing.
    """
    env = os.environ.get(STORE_ENV)
    if env:
        return os.path.expanduser(env)
    return os.path.join(user_data_dir_name(), STORE_FILENAME)


def user_data_dir() -> Path:
    """The directory for portbook's user data (not created here)."""
    from pathlib import Path

    return Path(user_data_dir_name())


def user_data_dir_name() -> str:
    """:func:`user_data_dir` as a string, without importing pathlib.

    A cold ``portbook lookup`` only asks whether a user copy of the registry
    exists there; pathlib (with urllib.parse and ipaddress) would cost about a
    quarter of an interpreter start to import for that.
    """
    override = os.environ.get("PORTBOOK_DATA_DIR")
    if override:
        return override
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "portbook")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return os.path.join(base or os.path.join(home, "AppData", "Local"), "portbook")
    xdg = os.environ.get("XDG_DATA_HOME")
    base_dir = xdg if xdg and os.path.isabs(xdg) else os.path.join(home, ".local", "share")
    return os.path.join(base_dir, "portbook")


# Bytes that stand for themselves in a file: URI path (RFC 3986 unreserved and "/").
_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")


def file_uri(path: str) -> str:
    """``file:`` URI of ``path`` (made absolute, symbolic links resolved) for SQLite.

    What ``Path.resolve().as_uri()`` gives, without importing pathlib and
    urllib: every byte of the file system encoding outside the unreserved set
    is percent-encoded, so that "?", "#" and "%" in a directory name cannot be
    taken for URI syntax.
    """
    full = os.path.realpath(path)
    if os.sep == "\\":  # Windows: file:///C:/dir/file
        full = "/" + full.replace("\\", "/")
    quoted = "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in os.fsencode(full))
    return f"file://{quoted}"


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message: ``a FIFO``, ``a directory``..."""
    import stat

    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")
