"""The action clones of a runner's workdir, classified by content (:mod:`harness.runners.clones`), with the
version that owns the store: 12.x when any 12.x clone or worktree is there (a 12.x runner upgraded in place
keeps 11.x's work trees beside its bare clones, and never reads them), else 11.x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.observe.cache import measure
from harness.runners import clones

MANY_REFS = 500  # refs in one clone from which every use fetches them all at a cost (bench/heavy_actions.py)


@dataclass(frozen=True)
class Clone:
    """One ``<2 hex>/<62 hex>`` directory of the workdir."""

    path: Path
    kind: str  # clones.V11_WORKTREE, V12_BARE, V12_WORKTREE or OTHER
    remote: str | None
    ref: str  # what it serves: the uses: string (11.x), the URL (12.x bare), the commit (worktree); "unknown"
    bytes: int
    newest: float  # newest file's mtime (epoch seconds)
    refs: int  # refs in the repository
    tags: tuple[tuple[str, str], ...]  # tag → object id
    head: str | None  # the commit checked out (work trees)
    confirmed: bool  # the path is what the runner would name it (sha256 of the uses: string / of the URL)
    used_by_owner: bool = True
    bare: Path | None = None  # a worktree's bare clone
    prunable: bool = False  # a worktree git no longer knows (its admin dir in the bare clone is gone)

    @property
    def name(self) -> str:
        """``<2 hex>/<62 hex>``."""
        return f"{self.path.parent.name}/{self.path.name}"

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` prints it."""
        return {"path": str(self.path), "kind": self.kind, "remote": self.remote, "ref": self.ref, "bytes": self.bytes,
                "used_by_owner": self.used_by_owner, "confirmed": self.confirmed, "refs": self.refs,
                "tags": dict(self.tags), "head": self.head, "newest_mtime": int(self.newest),
                "bare": str(self.bare) if self.bare else None, "prunable": self.prunable}


def read_clone(path: Path) -> Clone:
    """One clone, read from its files."""
    kind = clones.kind(path)
    size = measure(path)
    repo = clones.git_dir(path)
    if kind == clones.V12_WORKTREE:
        admin = clones.worktree_admin(path)
        bare = clones.common_dir(admin) if admin is not None and admin.is_dir() else None
        head = clones.head(admin) if admin is not None and admin.is_dir() else None
        remote = clones.origin_url(bare) if bare is not None else None
        return Clone(path, kind, remote, head or "unknown", size.bytes, size.newest, 0, (), head,
                     confirmed=admin is not None, bare=bare, prunable=repo is None or bare is None)
    if repo is None:
        return Clone(path, kind, None, "unknown", size.bytes, size.newest, 0, (), None, confirmed=False)
    all_refs = clones.refs(repo)
    remote = clones.origin_url(repo)
    head = clones.head(repo, all_refs)
    tags = tuple(sorted(clones.tags(repo).items()))
    if kind == clones.V12_BARE:
        confirmed = remote is not None and clones.sha256_hex(remote) == clones.path_hash(path)
        return Clone(path, kind, remote, remote or "unknown", size.bytes, size.newest, len(all_refs), tags, None,
                     confirmed)
    served = clones.served_ref(path, remote, all_refs, head)
    return Clone(path, kind, remote, served or "unknown", size.bytes, size.newest, len(all_refs), tags, head,
                 confirmed=served is not None)


def owner(found: Sequence[Clone]) -> str | None:
    """The runner version that owns the store, from what it holds: "12.x", "11.x" or None (no clone)."""
    kinds = {c.kind for c in found}
    if kinds & {clones.V12_BARE, clones.V12_WORKTREE}:
        return "12.x"
    if clones.V11_WORKTREE in kinds:
        return "11.x"
    return None


def read_clones(workdir: Path) -> tuple[list[Clone], str | None]:
    """Every clone of ``workdir`` and the store's owner; 11.x work trees in a 12.x store are not used."""
    found = [read_clone(p) for p in clones.clone_dirs(workdir)]
    who = owner(found)
    if who == "12.x":
        found = [replace(c, used_by_owner=False) if c.kind == clones.V11_WORKTREE else c for c in found]
    return found, who


def dangling_worktree_records(found: Sequence[Clone]) -> list[tuple[Path, Path]]:
    """(bare clone, ``worktrees/<name>``) whose worktree directory is gone: ``git worktree prune`` drops them."""
    dangling = []
    for clone in found:
        if clone.kind != clones.V12_BARE:
            continue
        admin_root = clone.path / "worktrees"
        for admin in sorted(admin_root.iterdir()) if admin_root.is_dir() else []:
            try:
                target = Path((admin / "gitdir").read_text().strip())
            except OSError:
                target = None
            if target is None or not target.exists():
                dangling.append((clone.path, admin))
    return dangling
