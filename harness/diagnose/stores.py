"""Size, entries and the biggest entries of a runner's four stores (:data:`harness.observe.cache.STORES`).

An entry is what the store is made of: a clone (``action_clones``), a saved cache (``cache_server``), a tool
(``tool_cache``), a top-level file or directory (``home``, without the stores nested in it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.diagnose.action_clones import Clone
from harness.diagnose.cache_entries import CacheEntry
from harness.diagnose.layout import Layout
from harness.observe.cache import STORES, action_clones, measure

BIGGEST = 5


@dataclass(frozen=True)
class Entry:
    """One entry of a store."""

    name: str
    bytes: int
    mtime: float  # last written (a cache entry: last used), epoch seconds


@dataclass(frozen=True)
class Store:
    """One store: where, whether the runner uses it, its bytes, files and entries."""

    name: str
    path: Path
    exists: bool
    used: bool
    note: str
    bytes: int
    files: int
    entries: int
    biggest: tuple[Entry, ...]

    def to_json(self, now: float) -> dict[str, Any]:
        """As ``--json`` prints it (ages in seconds before ``now``)."""
        return {"path": str(self.path), "exists": self.exists, "used": self.used, "note": self.note,
                "bytes": self.bytes, "files": self.files, "entries": self.entries,
                "biggest": [{"name": e.name, "bytes": e.bytes, "age_seconds": max(0, int(now - e.mtime))}
                            for e in self.biggest]}


def _children(path: Path, exclude: Sequence[Path]) -> list[Entry]:
    entries = []
    skip = {p.resolve() for p in exclude}
    try:
        children = sorted(path.iterdir())
    except OSError:
        return []
    for child in children:
        if child.resolve() in skip:
            continue
        inner = tuple(p for p in exclude if p.resolve().is_relative_to(child.resolve()))
        if child.is_dir() and not child.is_symlink():
            size = measure(child, exclude=inner)
            entries.append(Entry(child.name, size.bytes, size.newest or child.lstat().st_mtime))
        else:
            st = child.lstat()
            entries.append(Entry(child.name, st.st_size, st.st_mtime))
    return entries


def _top(entries: Sequence[Entry]) -> tuple[Entry, ...]:
    return tuple(sorted(entries, key=lambda e: (-e.bytes, e.name))[:BIGGEST])


def read_stores(layout: Layout, found: Sequence[Clone], cache: Sequence[CacheEntry]) -> dict[str, Store]:
    """The four stores, by name."""
    stores: dict[str, Store] = {}
    size = action_clones(layout.workdir)
    clone_entries = [Entry(c.name, c.bytes, c.newest) for c in found]
    stores["action_clones"] = Store("action_clones", layout.workdir, layout.workdir.is_dir(), True, "",
                                    size.bytes, size.entries, len(found), _top(clone_entries))
    tools = _children(layout.tool_cache, ())
    size = measure(layout.tool_cache)
    stores["tool_cache"] = Store("tool_cache", layout.tool_cache, layout.tool_cache.is_dir(), True, "",
                                 size.bytes, size.entries, len(tools), _top(tools))
    size = measure(layout.cache_dir)
    saved = [Entry(f"{e.repo} {e.key}", e.bytes, float(e.used_at)) for e in cache]
    stores["cache_server"] = Store("cache_server", layout.cache_dir, layout.cache_dir.is_dir(), layout.cache_used,
                                   layout.cache_note, size.bytes, size.entries, len(cache), _top(saved))
    nested = layout.nested_in_home()
    size = measure(layout.home, exclude=nested)
    items = _children(layout.home, nested)
    note = ("without " + ", ".join(str(p) for p in nested) + " (nested stores, measured apart)") if nested else ""
    stores["home"] = Store("home", layout.home, layout.home.is_dir(), True, note, size.bytes, size.entries,
                           len(items), _top(items))
    return {name: stores[name] for name in STORES}
