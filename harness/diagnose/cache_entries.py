"""The cache server's entries, from its ``bolt.db`` (act/artifactcache): bolthold keeps each ``Cache`` as JSON in
the bucket ``Cache`` (``id``, ``repo``, ``key``, ``version``, ``cacheSize``, ``complete``, ``usedAt``,
``createdAt``), the data in ``cache/<id % 0xff as 2 hex>/<id>``. Entries are scoped per repository, so one key
saved by K repositories (setup-qemu's image) is K copies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.bolt import BoltError, BoltFile
from harness.errors import ConfigError

BUCKET = b"Cache"


@dataclass(frozen=True)
class CacheEntry:
    """One saved cache."""

    id: int
    repo: str
    key: str
    version: str
    size: int  # what the client declared (-1: unknown)
    complete: bool
    used_at: int  # epoch seconds
    created_at: int
    file_bytes: int | None  # the data file's size, None when it is missing

    @property
    def bytes(self) -> int:
        """Bytes on disk (the declared size when the file is missing)."""
        return self.file_bytes if self.file_bytes is not None else max(self.size, 0)

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` prints it."""
        return {"id": self.id, "repo": self.repo, "key": self.key, "version": self.version, "bytes": self.bytes,
                "complete": self.complete, "used_at": self.used_at, "created_at": self.created_at,
                "file_missing": self.file_bytes is None}


def data_file(cache_dir: Path, entry_id: int) -> Path:
    """Where the cache server keeps an entry's data (act/artifactcache/storage.go ``filename``)."""
    return cache_dir / "cache" / f"{entry_id % 0xFF:02x}" / str(entry_id)


def _entry(cache_dir: Path, raw: Mapping[str, Any]) -> CacheEntry:
    entry_id = int(raw.get("id") or 0)
    try:
        size: int | None = data_file(cache_dir, entry_id).stat().st_size
    except OSError:
        size = None
    return CacheEntry(entry_id, str(raw.get("repo") or ""), str(raw.get("key") or ""), str(raw.get("version") or ""),
                      int(raw.get("cacheSize") or 0), bool(raw.get("complete")), int(raw.get("usedAt") or 0),
                      int(raw.get("createdAt") or 0), size)


def read_entries(cache_dir: Path) -> list[CacheEntry]:
    """Every entry of the store (none when there is no ``bolt.db``).

    Raises:
        ConfigError: ``bolt.db`` unreadable or not a bbolt file (one line naming it).
    """
    db = cache_dir / "bolt.db"
    if not db.exists():
        return []
    try:
        items = BoltFile(db).items(BUCKET)
    except BoltError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"{db}: cannot read it ({exc.strerror})") from None
    entries = []
    for _key, value in items:
        try:
            raw = json.loads(value)
        except ValueError:
            raise ConfigError(f"{db}: an entry of bucket Cache is not JSON (not a runner's cache store?)") from None
        if isinstance(raw, Mapping):
            entries.append(_entry(cache_dir, raw))
    return entries


@dataclass(frozen=True)
class RepoTotal:
    """Entries and bytes one repository holds."""

    repo: str
    entries: int
    bytes: int


def per_repository(entries: Sequence[CacheEntry]) -> list[RepoTotal]:
    """Entries and bytes per repository, biggest first."""
    totals: dict[str, list[int]] = {}
    for entry in entries:
        total = totals.setdefault(entry.repo, [0, 0])
        total[0] += 1
        total[1] += entry.bytes
    return sorted((RepoTotal(repo, n, b) for repo, (n, b) in totals.items()), key=lambda t: (-t.bytes, t.repo))


@dataclass(frozen=True)
class SameKey:
    """One key (and version) saved by several repositories: one copy each."""

    key: str
    version: str
    repos: tuple[str, ...]
    bytes: int  # all copies
    extra_bytes: int  # all but the biggest copy

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` prints it."""
        return {"key": self.key, "version": self.version, "repositories": list(self.repos), "copies": len(self.repos),
                "bytes": self.bytes, "extra_bytes": self.extra_bytes}


def same_key(entries: Sequence[CacheEntry]) -> list[SameKey]:
    """Keys saved once per repository by two or more repositories, biggest first."""
    groups: dict[tuple[str, str], list[CacheEntry]] = {}
    for entry in entries:
        if entry.complete:
            groups.setdefault((entry.key, entry.version), []).append(entry)
    found = []
    for (key, version), group in groups.items():
        repos = tuple(sorted({e.repo for e in group}))
        if len(repos) < 2:
            continue
        total = sum(e.bytes for e in group)
        found.append(SameKey(key, version, repos, total, total - max(e.bytes for e in group)))
    return sorted(found, key=lambda s: (-s.extra_bytes, s.key))
