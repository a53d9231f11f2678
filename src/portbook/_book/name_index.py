"""IANA's names of ports, packaged beside the registry as a file read without SQLite.

A listing needs one thing of the registry: the name of each (port, protocol)
it shows. Through SQLite that costs about 1.2 ms of a cold ``portbook`` (the
``_sqlite3`` module, opening the file with its checks, one query); this file
answers the same in about 0.1 ms: one read and a binary search per pair. It
holds exactly the registry's ``port_name`` rows that have a name, is written
by ``scripts/build_registry.py`` with the packaged database, and is used only
while the packaged database is the one in use (no ``registry_path``, no
updated copy in the data directory): an updated registry is read through
SQLite, as every other question is. A test pins that the file matches the
packaged database row for row.

Format (all integers unsigned 32-bit, little-endian): the line
``portbook-port-names 1\\n``; the count N; N keys ``port << 2 | protocol``
(protocols numbered as in :data:`PROTOCOLS`), ascending; N + 1 offsets into
the names; the names, UTF-8, one after another.
"""

from __future__ import annotations

import os
import sys
from bisect import bisect_left

from portbook._exceptions import RegistryError

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["PACKAGED_NAMES", "PROTOCOLS", "NameIndex", "encode", "user_registry_copy"]

PACKAGED_NAMES = os.path.join(os.path.dirname(os.path.realpath(__file__)), "data", "port-names")
PROTOCOLS = ("dccp", "sctp", "tcp", "udp")
_CODE = {p: i for i, p in enumerate(PROTOCOLS)}
_MAGIC = b"portbook-port-names 1\n"
_MAX_PORT = 65535


def user_registry_copy(data_dir: str | os.PathLike[str] | None) -> str:
    """Where ``update_registry`` installs the user's copy of the registry under ``data_dir``."""
    if data_dir is None:
        from portbook._paths import user_data_dir_name

        data_dir = user_data_dir_name()
    return os.path.join(data_dir, "registry.sqlite3")


def encode(names: Mapping[tuple[int, str], str]) -> bytes:
    """The file's bytes for ``names``: (port, protocol) -> IANA's name."""
    keyed = sorted(((port << 2) | _CODE[proto], name) for (port, proto), name in names.items())
    blob = bytearray()
    offsets = [0]
    for _, name in keyed:
        blob += name.encode()
        offsets.append(len(blob))
    keys = [key for key, _ in keyed]
    return b"".join((_MAGIC, _words([len(keys)]), _words(keys), _words(offsets), bytes(blob)))


def _words(values: list[int]) -> bytes:
    from array import array

    words = array("I", values)
    if sys.byteorder == "big":
        words.byteswap()
    return words.tobytes()


class NameIndex:
    """The file's names, found by binary search; :class:`RegistryError` if it is damaged."""

    def __init__(self, data: bytes) -> None:
        body = memoryview(data)[len(_MAGIC) :]
        if not data.startswith(_MAGIC) or len(body) < 4:
            raise RegistryError("the packaged port names are damaged (no header)")
        words = body[: len(body) // 4 * 4].cast("I")
        if sys.byteorder == "big":
            from array import array

            swapped = array("I", words)
            swapped.byteswap()
            words = memoryview(swapped)
        count = words[0]
        self._keys = words[1 : 1 + count]
        self._offsets = words[1 + count : 2 + 2 * count]
        self._names = bytes(body[4 * (2 + 2 * count) :])
        if len(self._offsets) != count + 1 or self._offsets[-1] != len(self._names):
            raise RegistryError("the packaged port names are damaged (sizes disagree)")

    @classmethod
    def read(cls, path: str | None = None) -> NameIndex:
        """The file at ``path`` (default: the packaged one)."""
        path = PACKAGED_NAMES if path is None else path
        try:
            with open(path, "rb") as fh:
                return cls(fh.read())
        except OSError as exc:
            raise RegistryError(f"cannot read the packaged port names {path}: {exc}") from None

    def names(self, pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], str]:
        """IANA's name of each (port, protocol) of ``pairs`` that has one."""
        keys, offsets, names, count = self._keys, self._offsets, self._names, len(self._keys)
        found: dict[tuple[int, str], str] = {}
        for pair in pairs:
            port, proto = pair
            code = _CODE.get(proto)
            if code is None or not 0 <= port <= _MAX_PORT:
                continue
            key = (port << 2) | code
            i = bisect_left(keys, key)
            if i < count and keys[i] == key:
                try:
                    found[pair] = names[offsets[i] : offsets[i + 1]].decode()
                except UnicodeDecodeError:
                    raise RegistryError("the packaged port names are damaged (not UTF-8)") from None
        return found
