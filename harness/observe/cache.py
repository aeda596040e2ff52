"""Runner stores that grow, each named after what it is, and the action-cache lookup.

A lab runner keeps four stores (measured apart: one image written to three of them is three copies):

- ``cache_server``: the cache server's store (what ``actions/cache`` and setup-qemu's ``cache-image`` save;
  entries are scoped per repository, so every new repository saves its own copy);
- ``tool_cache``: the hosted tool cache, ``<workdir>/tool_cache`` (``RUNNER_TOOL_CACHE`` of host jobs);
- ``action_clones``: the runner's clones of the actions it ran, ``<workdir>/<hash[:2]>/<hash[2:]>``;
- ``home``: the runner's ``HOME`` (``~/.docker``: buildx builders, the plugin, caches written there).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

STORES = ("cache_server", "tool_cache", "action_clones", "home")
TOOL_CACHE = "tool_cache"
_CLONE_DIR = re.compile(r"[0-9a-f]{2}")


@dataclass(frozen=True)
class StoreSize:
    """Bytes and entries (files) of one store, and the newest file's mtime (epoch seconds; 0 when empty)."""

    bytes: int
    entries: int
    newest: float = field(default=0.0, compare=False)

    @property
    def mb(self) -> float:
        """Size in MB."""
        return self.bytes / 1e6

    def __add__(self, other: StoreSize) -> StoreSize:
        return StoreSize(self.bytes + other.bytes, self.entries + other.entries, max(self.newest, other.newest))


def measure(path: Path, exclude: tuple[Path, ...] = ()) -> StoreSize:
    """Size of every regular file under ``path`` (0 when missing); symlinks are not followed.

    ``exclude``: directories left out (another store nested in this one, e.g. the action cache inside HOME).
    """
    total = count = 0
    newest = 0.0
    skip = {os.path.abspath(p) for p in exclude}
    for root, dirs, files in os.walk(path):
        if skip:
            dirs[:] = [d for d in dirs if os.path.abspath(os.path.join(root, d)) not in skip]
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += st.st_size
            count += 1
            newest = max(newest, st.st_mtime)
    return StoreSize(total, count, newest)


def action_clones(workdir: Path) -> StoreSize:
    """The runner's action clones: the ``<hash[:2]>`` dirs of its workdir (not the tool cache, not workspaces)."""
    total = StoreSize(0, 0)
    try:
        children = sorted(workdir.iterdir())
    except OSError:
        return total
    for child in children:
        if _CLONE_DIR.fullmatch(child.name) and child.is_dir() and not child.is_symlink():
            total += measure(child)
    return total


def runner_stores(workdir: Path, cache_dir: Path, home: Path) -> dict[str, StoreSize]:
    """The four stores of one runner, by name (:data:`STORES`)."""
    return {"cache_server": measure(cache_dir), "tool_cache": measure(workdir / TOOL_CACHE),
            "action_clones": action_clones(workdir), "home": measure(home)}


def action_cached(workdir: Path, uses: str, clone_url: str) -> bool:
    """True when the runner's action cache holds a clone for ``uses``.

    11.x keys the working tree by ``sha256(uses)``, 12.x the bare clone by ``sha256(clone URL)``;
    both store it at ``<workdir>/<hash[:2]>/<hash[2:]>``.
    """
    for key in (uses, clone_url):
        digest = hashlib.sha256(key.encode()).hexdigest()
        if (workdir / digest[:2] / digest[2:]).exists():
            return True
    return False
