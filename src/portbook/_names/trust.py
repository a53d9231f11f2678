"""Trust: whose store is it? The rules that keep another user's file from being your names.

A store in a shared directory must not be one another user made or can
change: they would read and rewrite the names (and so choose the ports your
programs connect to). As ssh does with its files, the store is refused
(:class:`StoreError`, nothing opened by SQLite, nothing created) unless all
of this holds, where a *trusted owner* is the caller (effective uid) or root:

1. **Every directory on the way**, from ``/``, with each symbolic link
   resolved in turn: owned by a trusted owner, and writable by no one else
   unless its sticky bit is set (then no one else can rename or remove what
   is ours in it, as in ``/tmp``). A symbolic link in such a shared sticky
   directory must itself be owned by a trusted owner.
2. **The directory holding the store**: owned by a trusted owner and
   writable by no one else, sticky or not. SQLite creates ``-wal``, ``-shm``
   and ``-journal`` beside the store by name; in a directory others can
   write they could create those first.
3. **The store file**, and its ``-wal``, ``-shm`` and ``-journal`` when they
   exist: not a symbolic link (never followed, whoever owns it), a regular
   file (``/dev/null``, a FIFO or a directory is refused before any open
   that could block or leave ``/dev/null-journal`` behind), owned by the
   caller, and writable by no one else. Read bits for group and others on
   our own files are removed (0600).

Root trusts only root: a store under another user's home is refused for
``sudo portbook``, which could otherwise be led to write wherever that
user points it. Where the system has no uids (Windows) nothing is checked.

Why the check holds until SQLite opens the file: the path handed to SQLite
is the one just resolved, with no symbolic link left in it, and by rules 1
and 2 nobody but a trusted owner can rename, replace or re-point any part
of it. The file itself is opened by portbook first (``O_NOFOLLOW``, and
``O_NONBLOCK`` so that a FIFO cannot block; ``O_CREAT | O_EXCL`` and mode
0600 for a new store) and checked with ``fstat``, so what is checked is
what was opened, not what a name showed a moment before.
"""

from __future__ import annotations

import errno
import os
import stat

from portbook._exceptions import PortbookError, StoreError, StoreReadOnlyError, UsageError
from portbook._paths import file_kind

__all__ = ["quoted_path", "trusted_target"]

_SIDE_FILES = ("-wal", "-shm", "-journal")
_GROUP_OTHER_WRITE = stat.S_IWGRP | stat.S_IWOTH
_MAX_LINKS = 40  # as Linux's own limit on symbolic links in one path


def quoted_path(text: str) -> str:
    """A path as an error message shows it: quoted (repr escapes what it must), cut at 60."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def trusted_target(path: str | os.PathLike[str], *, create: bool = True) -> str:
    """The store's path for SQLite, resolved and checked; the file created 0600 if missing.

    With ``create=False`` nothing is made: a missing directory or store is
    ``FileNotFoundError`` (a reader that only looks, as the live table does).
    Raises :class:`StoreError` for a store (or directory) another user owns
    or can write, a symbolic link or a file that is not regular, and
    :class:`UsageError` for a path that can name no file on this system.
    """
    text = os.fspath(path)
    if text.endswith(os.sep) or os.path.basename(text) in ("", ".", ".."):
        raise UsageError(f"the store path {quoted_path(text)} names a directory, not a file")
    # Not os.path.abspath: it folds "link/.." away, where the kernel goes up from the target.
    full = text if os.path.isabs(text) else os.path.join(os.getcwd(), text)
    _check_lengths(full, text)
    folder, name = os.path.split(full)
    if not hasattr(os, "geteuid"):  # pragma: no cover - Windows: no uids to compare
        if create:
            _create_store_file(full, None)
        return full
    trusted = {os.geteuid(), 0}
    try:
        folder = _resolve_directory(folder, trusted, text, create=create)
        _check_holding_directory(folder, trusted, text)
        target = os.path.join(folder, name)
        if create:
            _create_store_file(target, text)
        _check_store_file(target, text)
        for suffix in _SIDE_FILES:
            _check_store_file(target + suffix, text, missing_ok=True)
    except FileNotFoundError:
        if create:
            raise
        raise FileNotFoundError(errno.ENOENT, "no store", text) from None
    except OSError as exc:
        raise _path_error(exc, text) from exc
    return target


# NAME_MAX and PATH_MAX of Linux (and of the file systems of the BSDs and macOS):
# checked before any directory is made, so that a name no file system takes
# leaves nothing behind; a smaller limit of one file system is met as ENAMETOOLONG.
_NAME_MAX = 255
_PATH_MAX = 4095


def _check_lengths(full: str, shown: str) -> None:
    try:
        encoded = os.fsencode(full)
    except UnicodeError:
        raise UsageError(f"the store path {quoted_path(shown)} is not a file name here") from None
    longest = max((len(part) for part in encoded.split(os.fsencode(os.sep))), default=0)
    if longest > _NAME_MAX or len(encoded) > _PATH_MAX:
        raise UsageError(
            f"the store path {quoted_path(shown)} is too long for this system (a name of "
            f"{longest} bytes, {len(encoded)} in all; at most {_NAME_MAX} and {_PATH_MAX})"
        )


def _resolve_directory(folder: str, trusted: set[int], shown: str, *, create: bool) -> str:
    """``folder`` with every symbolic link resolved, each directory met checked (rule 1).

    Missing directories are created, 0700, as the walk reaches them (``create``).
    """
    pending = [part for part in reversed(folder.split(os.sep)) if part]
    current = os.sep
    shared = _check_directory(current, os.lstat(current), trusted, shown)
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            current = os.path.dirname(current)  # already walked through, and checked
            shared = _check_directory(current, os.lstat(current), trusted, shown)
            continue
        candidate = os.path.join(current, part)
        info = _lstat_or_create_directory(candidate) if create else os.lstat(candidate)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), candidate)
            if shared and info.st_uid not in trusted:
                raise _untrusted(shown, f"{candidate} is a symbolic link of {_owner(info.st_uid)}")
            target = os.readlink(candidate)
            if os.path.isabs(target):
                current = os.sep
            pending.extend(part for part in reversed(target.split(os.sep)) if part)
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), candidate)
        shared = _check_directory(candidate, info, trusted, shown)
        current = candidate
    return current


def _lstat_or_create_directory(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        pass
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # exactly 0700, whatever the umask took away
    except FileExistsError:
        pass  # made meanwhile by another process: checked like any other
    return os.lstat(path)


def _check_directory(path: str, info: os.stat_result, trusted: set[int], shown: str) -> bool:
    """Rule 1 for one directory; True when others may write it (it is then sticky)."""
    if info.st_uid not in trusted:
        raise _untrusted(shown, f"the directory {path} belongs to {_owner(info.st_uid)}")
    writable_by_others = bool(info.st_mode & _GROUP_OTHER_WRITE)
    if writable_by_others and not info.st_mode & stat.S_ISVTX:
        raise _untrusted(
            shown, f"the directory {path} can be written by other users ({_mode(info)})"
        )
    return writable_by_others


def _check_holding_directory(folder: str, trusted: set[int], shown: str) -> None:
    info = os.lstat(folder)
    if info.st_mode & _GROUP_OTHER_WRITE:
        raise _untrusted(
            shown,
            f"its directory {folder} can be written by other users ({_mode(info)}); "
            "keep the store in a directory only you can write",
        )


def _create_store_file(target: str, shown: str | None) -> None:
    # Created here, 0600 from its first instant: SQLite would give it the
    # umask's mode (often 0644) until a chmod, a window in which others
    # could open it. O_EXCL|O_NOFOLLOW: never through a link, never reused.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        return  # there already (or another process was first): checked next
    except PermissionError as exc:
        raise StoreReadOnlyError(
            f"cannot create the store {shown or target}: {exc.strerror}", path=shown or target
        ) from exc
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
            os.fchmod(fd, 0o600)  # a umask of 0o200 would have left 0400
    finally:
        os.close(fd)


def _check_store_file(path: str, shown: str, *, missing_ok: bool = False) -> None:
    """Rule 3 for the store file (or one of its side files, ``missing_ok``)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    if stat.S_ISLNK(info.st_mode):
        raise _untrusted(shown, f"{path} is a symbolic link (portbook never follows one)")
    if not stat.S_ISREG(info.st_mode):
        raise _untrusted(shown, f"{path} is {file_kind(info.st_mode)}, not a regular file")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_NOCTTY
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)  # what was opened, not what the name showed before
        if not stat.S_ISREG(info.st_mode):
            raise _untrusted(shown, f"{path} is {file_kind(info.st_mode)}, not a regular file")
        if info.st_uid != os.geteuid():
            raise _untrusted(shown, f"{path} belongs to {_owner(info.st_uid)}, not to you")
        if info.st_mode & _GROUP_OTHER_WRITE:
            raise _untrusted(shown, f"{path} can be written by other users ({_mode(info)})")
        if info.st_mode & 0o077:
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o700)
    finally:
        os.close(fd)


def _untrusted(shown: str, reason: str) -> StoreError:
    return StoreError(f"refusing the store {shown}: {reason}", path=shown)


def _owner(uid: int) -> str:
    from portbook._proc import user_name

    name = user_name(uid)
    return f"{name} (uid {uid})" if name != str(uid) else f"uid {uid}"


def _mode(info: os.stat_result) -> str:
    return f"mode {stat.S_IMODE(info.st_mode):04o}"


def _path_error(exc: OSError, shown: str) -> PortbookError:
    """The error for an ``OSError`` met while resolving or checking the store's path."""
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename and exc.filename != shown else ""
    if exc.errno == errno.ENAMETOOLONG:
        return UsageError(
            f"the store path {quoted_path(shown)} is too long for this system: {reason}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreReadOnlyError(f"cannot reach the store {shown}: {reason}{where}", path=shown)
    return StoreError(f"cannot use the store {shown}: {reason}{where}", path=shown)
