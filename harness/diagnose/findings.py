"""What to clean in a runner's stores: each finding says what it costs and gives the clean-up as a command to
copy (the suite never runs it), with "stop the runner first" where the runner may be using what it removes.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.diagnose.action_clones import MANY_REFS, Clone
from harness.diagnose.cache_entries import SameKey
from harness.diagnose.layout import Layout
from harness.observe.cache import measure
from harness.runners import clones

GIT = "git -c safe.directory='*'"  # the runner's clones are not the reader's: git refuses them otherwise


@dataclass(frozen=True)
class Finding:
    """One thing found, its cost and its clean-up."""

    kind: str
    what: str
    bytes: int
    command: str
    stop_runner_first: bool = False
    cleanable: bool = True  # False: a cost worth knowing that removing files does not cure (many refs)
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` prints it."""
        return {"kind": self.kind, "what": self.what, "bytes": self.bytes, "seconds": self.seconds,
                "command": self.command, "stop_runner_first": self.stop_runner_first, "cleanable": self.cleanable}


def q(path: Path | str) -> str:
    """A path quoted for a shell."""
    return shlex.quote(str(path))


def rm(path: Path) -> str:
    """The command removing a directory."""
    return f"rm -rf -- {q(path)}"


def clone_findings(found: Sequence[Clone], owner: str | None) -> list[Finding]:
    """Clones the owner no longer reads, worktrees git no longer knows or left after a job, clones with many refs."""
    findings = []
    for c in found:
        if c.kind == clones.V11_WORKTREE and not c.used_by_owner:
            findings.append(Finding(
                "unused-clone", f"11.x work tree {c.name} ({c.ref}) in a store {owner} owns: {owner} never reads it",
                c.bytes, rm(c.path)))
        elif c.kind == clones.V12_WORKTREE and c.prunable:
            findings.append(Finding(
                "prunable-worktree", f"12.x worktree {c.name} that no bare clone knows any more (its job is over)",
                c.bytes, rm(c.path)))
        elif c.kind == clones.V12_WORKTREE and c.bare is not None:
            findings.append(Finding(
                "leftover-worktree", f"12.x worktree {c.name} of {c.remote or c.bare}: a running step's, or left by a "
                "step that did not clean up", c.bytes,
                f"{GIT} -C {q(c.bare)} worktree remove --force -- {q(c.path)}", stop_runner_first=True))
        elif c.kind == clones.OTHER:
            findings.append(Finding("not-a-clone", f"{c.name} holds no git repository (an interrupted clone?)",
                                    c.bytes, rm(c.path), stop_runner_first=True))
        if c.refs >= MANY_REFS:
            findings.append(Finding(
                "many-refs", f"{c.name} ({c.remote}) has {c.refs} refs: "
                + ("11.x fetches every ref (refs/*:refs/*) on every use" if c.kind == clones.V11_WORKTREE else
                   "12.x fetches them on every use of a tag or branch; a full commit SHA in uses: skips the fetch"),
                c.bytes, rm(c.path), cleanable=False))
    return findings


def dangling_findings(dangling: Sequence[tuple[Path, Path]]) -> list[Finding]:
    """Worktree records of bare clones whose directory is gone: one ``git worktree prune`` per bare clone."""
    per_bare: dict[Path, list[Path]] = {}
    for bare, admin in dangling:
        per_bare.setdefault(bare, []).append(admin)
    return [Finding("worktree-records", f"{len(admins)} worktree record(s) in {bare.parent.name}/{bare.name} whose "
                    "directory is gone", sum(measure(a).bytes for a in admins), f"{GIT} -C {q(bare)} worktree prune",
                    stop_runner_first=True) for bare, admins in per_bare.items()]


def workspace_findings(workdir: Path, leftovers: Sequence[Path]) -> list[Finding]:
    """Host job workspaces (``<workdir>/<16 hex>``) still there: a running job's, or left by one that was killed."""
    return [Finding("leftover-workspace", f"host job workspace {p.name} (a running job's, or left by a killed one)",
                    measure(p).bytes, rm(p), stop_runner_first=True) for p in leftovers]


def cache_findings(layout: Layout, same: Sequence[SameKey]) -> list[Finding]:
    """One key saved once per repository: the copies beyond the first. The store can only be emptied whole
    (``bolt.db`` indexes the files and the cache server holds it open)."""
    if not layout.cache_used:
        return []
    return [Finding(
        "same-key-per-repository", f"cache key {s.key!r} saved once per repository by {len(s.repos)} repositories "
        f"({', '.join(s.repos)}): {len(s.repos) - 1} extra copies", s.extra_bytes,
        f"{rm(layout.cache_dir)}  # empties the whole cache store; jobs save again on their next run",
        stop_runner_first=True) for s in same]
