"""Read-only access to a BoltDB (bbolt) file, the key-value store Podman 4 keeps its state in.

Why by hand: no maintained Python reader of the format exists, and portbook
needs only a read of a few keys from files of some hundred kilobytes. The
format (bbolt's ``page.go``, version 2, unchanged since 2014) is a
copy-on-write B+tree:

- every page starts with a 16-byte header: page id (u64), flags (u16:
  branch 0x01, leaf 0x02, meta 0x04, freelist 0x10), element count (u16),
  overflow page count (u32);
- pages 0 and 1 are *meta* pages (magic ``0xED0CDAED``, version, page size,
  flags, the root bucket (root page id u64, sequence u64), freelist page,
  high-water page id, transaction id, FNV-1a 64 checksum of the fields
  before it); the valid one with the higher transaction id is current;
- a branch page holds elements (pos u32, key size u32, child page id u64),
  a leaf page elements (flags u32, pos u32, key size u32, value size u32);
  ``pos`` counts from the element itself;
- a leaf element with flag 0x01 is a nested bucket: its value is the
  bucket's root page id and sequence (u64 each), followed, when the root is
  0, by the bucket's own small page stored inline.

Because writers never overwrite live pages in place, the file holds stale
copies of old values too: only a walk from the current meta page gives the
present state (a text search of the file finds both ``"state":2`` and
``"state":3`` of one container). The file is read without taking bolt's
lock: a writer committing at the same moment can make a read fail, which
then counts as unreadable (:class:`BoltError`), never as wrong data, since
every page reached is checked.
"""

from __future__ import annotations

import struct

from portbook._exceptions import PortbookError

# Not `from typing import TYPE_CHECKING`: see portbook._record.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["BoltBucket", "BoltError", "BoltFile"]

_MAGIC = 0xED0CDAED
_VERSION = 2
_PAGE_HEADER = struct.Struct("<QHHI")
_META = struct.Struct("<IIIIQQQQQQ")
_BRANCH = struct.Struct("<IIQ")
_LEAF = struct.Struct("<IIII")
_BUCKET = struct.Struct("<QQ")
_BRANCH_PAGE = 0x01
_LEAF_PAGE = 0x02
_BUCKET_LEAF = 0x01
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MAX_DEPTH = 64


class BoltError(PortbookError):
    """The file is not a bolt database this reader understands, or changed while read."""


def _fnv1a64(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


class BoltBucket:
    """One bucket: its keys, values and nested buckets, read on demand."""

    def __init__(self, db: BoltFile, buf: bytes, offset: int) -> None:
        self._db = db
        self._buf = buf
        self._offset = offset

    def items(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Every ``(key, value)`` in key order; ``value`` is ``None`` for a nested bucket."""
        for key, value, is_bucket in self._db.walk(self._buf, self._offset, 0):
            yield key, None if is_bucket else value

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or ``None`` when absent or a bucket."""
        for k, value, is_bucket in self._db.walk(self._buf, self._offset, 0):
            if k == key:
                return None if is_bucket else value
        return None

    def bucket(self, key: bytes) -> BoltBucket | None:
        """The nested bucket ``key``, or ``None``."""
        for k, value, is_bucket in self._db.walk(self._buf, self._offset, 0):
            if k == key and is_bucket:
                return self._db.open_bucket(value)
        return None

    def buckets(self) -> Iterator[tuple[bytes, BoltBucket]]:
        """Every nested bucket, with its key."""
        for key, value, is_bucket in self._db.walk(self._buf, self._offset, 0):
            if is_bucket:
                yield key, self._db.open_bucket(value)


class BoltFile:
    """A bolt database file read whole into memory; :meth:`root` is its top bucket."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.page_size, root = self._current_meta()
        self._root = root

    @classmethod
    def open(cls, path: str) -> BoltFile:
        """Read ``path``; raises ``OSError`` when unreadable, :class:`BoltError` when not bolt."""
        with open(path, "rb") as fh:
            return cls(fh.read())

    def root(self) -> BoltBucket:
        return BoltBucket(self, self._data, self._page_offset(self._root))

    def bucket(self, *names: bytes) -> BoltBucket | None:
        """The bucket at ``names`` below the root, or ``None``."""
        current: BoltBucket | None = self.root()
        for name in names:
            if current is None:
                return None
            current = current.bucket(name)
        return current

    def _current_meta(self) -> tuple[int, int]:
        # Page 0 names the page size; page 1 sits one page on. Should page 0
        # itself be damaged, bolt's default (the OS page size) is tried.
        sizes = [4096]
        if len(self._data) >= _PAGE_HEADER.size + _META.size:
            sizes.insert(0, _META.unpack_from(self._data, _PAGE_HEADER.size)[2])
        for size in sizes:
            metas = [m for m in (self._meta_at(0), self._meta_at(size)) if m is not None]
            if metas:
                _, page_size, root = max(metas)
                return page_size, root
        raise BoltError("not a bolt database (no valid meta page)")

    def _meta_at(self, page_offset: int) -> tuple[int, int, int] | None:
        offset = page_offset + _PAGE_HEADER.size
        if page_offset < 0 or offset + _META.size > len(self._data):
            return None
        magic, version, size, _flags, root, _seq, _free, _pgid, txid, checksum = _META.unpack_from(
            self._data, offset
        )
        if magic != _MAGIC or version != _VERSION or size < 512:
            return None
        if _fnv1a64(self._data[offset : offset + _META.size - 8]) != checksum:
            return None
        return txid, size, root

    def _page_offset(self, page: int) -> int:
        offset = page * self.page_size
        if page < 2 or offset + _PAGE_HEADER.size > len(self._data):
            raise BoltError(f"page {page} lies outside the file")
        return offset

    def open_bucket(self, value: bytes) -> BoltBucket:
        if len(value) < _BUCKET.size:
            raise BoltError("short bucket header")
        root, _sequence = _BUCKET.unpack_from(value, 0)
        if root == 0:
            return BoltBucket(self, value, _BUCKET.size)  # the inline page follows the header
        return BoltBucket(self, self._data, self._page_offset(root))

    def walk(self, buf: bytes, offset: int, depth: int) -> Iterator[tuple[bytes, bytes, bool]]:
        """The leaf elements below the page at ``buf[offset:]``: ``(key, value, is_bucket)``."""
        if depth > _MAX_DEPTH:
            raise BoltError("tree deeper than any real database (a loop?)")
        _pid, flags, count, _overflow = _PAGE_HEADER.unpack_from(buf, offset)
        first = offset + _PAGE_HEADER.size
        if flags & _BRANCH_PAGE:
            for i in range(count):
                _pos, _ksize, child = _BRANCH.unpack_from(buf, first + i * _BRANCH.size)
                yield from self.walk(self._data, self._page_offset(child), depth + 1)
        elif flags & _LEAF_PAGE:
            for i in range(count):
                element = first + i * _LEAF.size
                eflags, pos, ksize, vsize = _LEAF.unpack_from(buf, element)
                start = element + pos
                end = start + ksize + vsize
                if end > len(buf):
                    raise BoltError("element runs past its page")
                yield (
                    buf[start : start + ksize],
                    buf[start + ksize : end],
                    bool(eflags & _BUCKET_LEAF),
                )
        elif count:
            raise BoltError(f"unexpected page type {flags:#x}")
