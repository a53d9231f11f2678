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

__all__ = ["user_data_dir", "user_data_dir_name"]


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
