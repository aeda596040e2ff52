"""In-place upgrade of a lab runner, the upgrade report's own path: stop the daemon and its cache server, start
another version's binary on the same files (config, ``.runner``, action cache, cache store, HOME).

:func:`store_inventory` says what the runner's stores hold, so a test can record what v11 left beside what
v12 made: 11.x keeps one work-tree clone per ``uses:`` string, 12.x one bare clone per URL (both under
``<workdir>/<hash[:2]>/<hash[2:]>``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.observe import cache as cache_obs
from harness.runners import clones
from harness.runners.binaries import Binary
from harness.runners.process import LabRunner


def upgrade_in_place(runner: LabRunner, binary: Binary) -> str:
    """Stop ``runner`` (daemon, cache server) and start ``binary`` on its files; returns once it polls.

    Raises:
        LabError: the new version did not come up (its log named).
    """
    old = runner.version
    stopped = [f"daemon {runner.stop()}", f"cache server {runner.stop_cache_server()}"]
    runner.binary = binary
    runner.save_state()
    runner.start_cache_server()
    runner.start()
    runner.wait_online()
    return f"runner {runner.name}: {old} stopped ({', '.join(stopped)}); {binary.version} started on the same files"


def _kind(path: Path) -> str:
    return clones.LABELS[clones.kind(path)]  # 11.x: a work tree per uses: string; 12.x: a bare clone per URL


def _mb(path: Path) -> float:
    return round(cache_obs.measure(path).mb, 3)


def store_inventory(runner: LabRunner) -> dict[str, Any]:
    """The action cache's entries (``<hash[:2]>/<hash[2:]>``: kind, MB, tags of a clone), the cache server's store
    (MB, files) and which of the runner's own files exist."""
    entries = []
    workdir = runner.workdir
    for first in sorted(workdir.iterdir()) if workdir.is_dir() else []:
        if not (first.is_dir() and len(first.name) == 2):
            continue
        for entry in sorted(p for p in first.iterdir() if p.is_dir()):
            git_dir = clones.git_dir(entry)
            tags = sorted(clones.tags(git_dir)) if git_dir is not None else []  # loose and packed-refs
            entries.append({"path": str(entry.relative_to(workdir)), "kind": _kind(entry), "mb": _mb(entry),
                            "tags": tags})
    store = cache_obs.measure(runner.cache_dir)
    return {
        "action_cache": entries,
        "kinds": {kind: sum(1 for e in entries if e["kind"] == kind) for kind in dict.fromkeys(e["kind"] for e in entries)},
        "cache_store": {"mb": round(store.mb, 3), "files": store.entries,
                        "names": sorted(os.listdir(runner.cache_dir)) if runner.cache_dir.is_dir() else []},
        "runner_files": {name: (runner.dir / name).exists() for name in (".runner", "config.yaml")},
    }
