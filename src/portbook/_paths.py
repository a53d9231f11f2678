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
from pathlib import Path

__all__ = ["user_data_dir"]


def user_data_dir() -> Path:
    """The directory for portbook's user data (not created here)."""
    override = os.environ.get("PORTBOOK_DATA_DIR")
    if override:
        return Path(override)
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "portbook"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "portbook"
    xdg = os.environ.get("XDG_DATA_HOME")
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base_dir / "portbook"
