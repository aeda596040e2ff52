"""Runner stores that grow: the action cache, the cache server's store, the runner's HOME."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoreSize:
    """Bytes and entries (files) of one store."""

    bytes: int
    entries: int

    @property
    def mb(self) -> float:
        """Size in MB."""
        return self.bytes / 1e6


def measure(path: Path) -> StoreSize:
    """Size of every regular file under ``path`` (0 when missing); symlinks are not followed."""
    total = count = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += st.st_size
            count += 1
    return StoreSize(total, count)


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
