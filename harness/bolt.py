"""A read-only reader of bbolt files (``go.etcd.io/bbolt``), enough for the runner's cache server ``bolt.db``.

No well-kept bbolt reader exists on PyPI (``boltdb`` 0.0.2, 2020, is an unmaintained port), so this reads the
documented on-disk format: pages of ``page_size`` bytes, each with a 16-byte header (id u64, flags u16,
count u16, overflow u32); pages 0 and 1 are meta pages (magic ``0xED0CDAED``, version 2, page size, root
bucket, txid, FNV-1a checksum), the valid one with the higher txid is current. Branch pages hold
``(pos u32, ksize u32, pgid u64)`` elements, leaf pages ``(flags u32, pos u32, ksize u32, vsize u32)``;
``pos`` counts from the element itself. A leaf value with flag 1 is a nested bucket: ``(root pgid u64,
sequence u64)``, its page inline after that header when root is 0. All integers little-endian.

The file is only read (never locked, never written): the runner may hold it open, and the meta page
checksum tells a torn read from a consistent one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

MAGIC = 0xED0CDAED
VERSION = 2
_PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_META = struct.Struct("<IIII QQ QQQ Q")  # magic, version, page_size, flags, root(root, seq), freelist, pgid, txid, checksum
_BRANCH_ELEM = struct.Struct("<IIQ")
_LEAF_ELEM = struct.Struct("<IIII")
_BUCKET = struct.Struct("<QQ")
_BRANCH, _LEAF, _META_FLAG = 0x01, 0x02, 0x04
_BUCKET_LEAF = 0x01


class BoltError(ValueError):
    """The file is not a bbolt database this reader understands (the message names the file)."""


def _fnv1a64(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


class BoltFile:
    """One bbolt file read into memory; :meth:`items` walks a bucket."""

    def __init__(self, path: Path) -> None:
        """Read and check ``path``.

        Raises:
            BoltError: not a bbolt file (too short, bad magic or version, no valid meta page).
            OSError: unreadable.
        """
        self.path = path
        self.data = path.read_bytes()
        self.page_size, self.root = self._meta()

    def _meta(self) -> tuple[int, int]:
        found: list[tuple[int, int, int]] = []  # txid, page_size, root
        first = self._read_meta(0)
        page_size = first[1] if first else 4096
        for meta in (first, self._read_meta(page_size)):
            if meta is not None:
                found.append(meta)
        if not found:
            raise BoltError(f"{self.path}: not a bbolt database (no valid meta page)")
        _txid, size, root = max(found)
        return size, root

    def _read_meta(self, offset: int) -> tuple[int, int, int] | None:
        end = offset + _PAGE_HEADER.size + _META.size
        if len(self.data) < end:
            return None
        _id, flags, _count, _overflow = _PAGE_HEADER.unpack_from(self.data, offset)
        raw = self.data[offset + _PAGE_HEADER.size:end]
        magic, version, page_size, _f, root, _seq, _free, _pgid, txid, checksum = _META.unpack(raw)
        if not flags & _META_FLAG or magic != MAGIC or version != VERSION or page_size < 512:
            return None
        if _fnv1a64(raw[:-8]) != checksum:
            return None
        return txid, page_size, root

    def _page(self, pgid: int) -> tuple[int, int, int]:
        """(offset, flags, count) of a page."""
        offset = pgid * self.page_size
        if offset + _PAGE_HEADER.size > len(self.data):
            raise BoltError(f"{self.path}: page {pgid} is past the end of the file (truncated copy?)")
        _id, flags, count, _overflow = _PAGE_HEADER.unpack_from(self.data, offset)
        return offset, flags, count

    def _walk(self, buf: bytes, offset: int, flags: int, count: int, depth: int = 0) -> Iterator[tuple[int, bytes, bytes]]:
        """(leaf flags, key, value) of every element under the page at ``buf[offset:]``, in key order."""
        if depth > 64:
            raise BoltError(f"{self.path}: page tree deeper than 64 levels (corrupt file)")
        base = offset + _PAGE_HEADER.size
        if flags & _LEAF:
            for i in range(count):
                at = base + i * _LEAF_ELEM.size
                elem_flags, pos, ksize, vsize = _LEAF_ELEM.unpack_from(buf, at)
                key = bytes(buf[at + pos:at + pos + ksize])
                yield elem_flags, key, bytes(buf[at + pos + ksize:at + pos + ksize + vsize])
        elif flags & _BRANCH:
            for i in range(count):
                at = base + i * _BRANCH_ELEM.size
                _pos, _ksize, pgid = _BRANCH_ELEM.unpack_from(buf, at)
                child, child_flags, child_count = self._page(pgid)
                yield from self._walk(self.data, child, child_flags, child_count, depth + 1)
        else:
            raise BoltError(f"{self.path}: page at offset {offset} is neither a branch nor a leaf (flags {flags:#x})")

    def _bucket(self, value: bytes) -> Iterator[tuple[int, bytes, bytes]]:
        root, _sequence = _BUCKET.unpack_from(value, 0)
        if root == 0:  # inline bucket: its page follows the header
            inline = value[_BUCKET.size:]
            _id, flags, count, _overflow = _PAGE_HEADER.unpack_from(inline, 0)
            yield from self._walk(inline, 0, flags, count)
        else:
            offset, flags, count = self._page(root)
            yield from self._walk(self.data, offset, flags, count)

    def _elements(self, path: tuple[bytes, ...]) -> Iterator[tuple[int, bytes, bytes]]:
        offset, flags, count = self._page(self.root)
        elements = self._walk(self.data, offset, flags, count)
        for name in path:
            for elem_flags, key, value in elements:
                if key == name and elem_flags & _BUCKET_LEAF:
                    elements = self._bucket(value)
                    break
            else:
                return
        yield from elements

    def buckets(self, *path: bytes) -> list[bytes]:
        """Names of the buckets at ``path`` (the top level when empty)."""
        return [key for flags, key, _v in self._elements(path) if flags & _BUCKET_LEAF]

    def items(self, *path: bytes) -> list[tuple[bytes, bytes]]:
        """Key/value pairs of the bucket at ``path`` (nested buckets left out); empty when it does not exist."""
        return [(key, value) for flags, key, value in self._elements(path) if not flags & _BUCKET_LEAF]
