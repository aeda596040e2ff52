"""``python -m harness diagnose``: what a runner's stores hold and what to clean, read-only and offline by default.

:func:`diagnose` reads a :class:`~harness.diagnose.layout.Layout` into a :class:`Diagnosis`;
:mod:`harness.diagnose.render` prints it. Nothing here writes to the runner's files or runs a clean-up.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.diagnose import action_clones, cache_entries, findings, layout, stores, upstream

_WORKSPACE = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Diagnosis:
    """Everything diagnose read, and its findings."""

    layout: layout.Layout
    owner: str | None
    stores: dict[str, stores.Store]
    clones: tuple[action_clones.Clone, ...]
    cache_entries: tuple[cache_entries.CacheEntry, ...]
    same_key: tuple[cache_entries.SameKey, ...]
    findings: tuple[findings.Finding, ...]
    upstream: tuple[upstream.RemoteCheck, ...] | None = None  # None: --check-upstream not asked
    checks: tuple[str, ...] = ()
    now: float = field(default_factory=time.time)

    @property
    def exit_code(self) -> int:
        """0: nothing to clean; 1: something to clean."""
        return 1 if any(f.cleanable for f in self.findings) else 0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        lay = self.layout
        return {
            "checks": list(self.checks),
            "source": lay.source,
            "owner": self.owner,
            "stores": {name: s.to_json(self.now) for name, s in self.stores.items()},
            "clones": [c.to_json() for c in self.clones],
            "cache_entries": {
                "used": lay.cache_used,
                "per_repository": {t.repo: {"entries": t.entries, "bytes": t.bytes}
                                   for t in cache_entries.per_repository(self.cache_entries)},
                "same_key": [s.to_json() for s in self.same_key],
                "entries": [e.to_json() for e in self.cache_entries],
            },
            "upstream": [r.to_json() for r in self.upstream] if self.upstream is not None else None,
            "findings": [f.to_json() for f in self.findings],
            "exit_code": self.exit_code,
        }


def _workspaces(workdir: Path) -> list[Path]:
    try:
        return sorted(p for p in workdir.iterdir() if _WORKSPACE.fullmatch(p.name) and p.is_dir())
    except OSError:
        return []


def stale_findings(checks: tuple[upstream.RemoteCheck, ...], found: tuple[action_clones.Clone, ...]) -> list[
        findings.Finding]:
    """A tag whose cached commit is not the remote's: the clone to remove so the next use clones afresh."""
    by_path = {c.path: c for c in found}
    result = []
    for remote in checks:
        clone = by_path[remote.clone]
        for tag in remote.tags:
            if not tag.stale:
                continue
            how = {True: "descends from the cached one (a fetch can follow it)",
                   False: "does not descend from the cached one: 11.x logs 'some refs were not updated' and runs "
                          "the old action",
                   None: f"whether it descends is unknown ({tag.note or 'no answer'})"}[tag.descends]
            result.append(findings.Finding(
                "stale-tag", f"{clone.name} ({remote.remote}) tag {tag.tag}: cached {tag.cached}, remote "
                f"{tag.upstream}; the remote's {how}", clone.bytes, findings.rm(clone.path),
                stop_runner_first=True, seconds=remote.seconds))
    return result


def diagnose(where: layout.Layout, *, check_upstream: bool = False) -> Diagnosis:
    """Read the stores of ``where`` (offline unless ``check_upstream``).

    Raises:
        ConfigError: not a runner's store, or a store unreadable (one line naming the path).
    """
    layout.check(where)
    found, owner = action_clones.read_clones(where.workdir)
    entries = cache_entries.read_entries(where.cache_dir) if where.cache_dir.is_dir() else []
    same = cache_entries.same_key(entries)
    found_all = (*findings.clone_findings(found, owner),
                 *findings.dangling_findings(action_clones.dangling_worktree_records(found)),
                 *findings.workspace_findings(where.workdir, _workspaces(where.workdir)),
                 *findings.cache_findings(where, same))
    checks = ["stores", "clones", "cache_entries", "findings"]
    remote = None
    if check_upstream:
        remote = tuple(upstream.check(found))
        found_all = (*found_all, *stale_findings(remote, tuple(found)))
        checks.append("upstream")
    return Diagnosis(where, owner, stores.read_stores(where, found, entries), tuple(found), tuple(entries),
                     tuple(same), tuple(found_all), remote, tuple(checks))
