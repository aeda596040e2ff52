"""The runner's action clones, read from their files (no git needed, nothing written).

Both versions keep them in ``host.workdir_parent`` as ``<2 hex>/<62 hex>`` (act/common/git/git.go,
act/model/workflow.go ``UsesHash``):

- 11.3.1: one work-tree clone (``.git`` directory) per ``uses:`` string, at ``sha256(uses)``;
- 12.x: one bare clone per URL, at ``sha256(clone URL)``, and one ``git worktree`` per step that uses it,
  at a random name of the same shape (``.git`` file pointing at ``<bare>/worktrees/<name>``), removed and
  pruned after the step.

Refs are read loose and from ``packed-refs`` (git and go-git pack them; a loose ref wins).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

V11_WORKTREE = "v11-worktree"
V12_BARE = "v12-bare"
V12_WORKTREE = "v12-worktree"
OTHER = "other"
LABELS = {V11_WORKTREE: "clone (work tree)", V12_WORKTREE: "git worktree", V12_BARE: "bare clone", OTHER: "other"}

_FIRST = re.compile(r"[0-9a-f]{2}")
_REST = re.compile(r"[0-9a-f]{62}")
_SHA = re.compile(r"[0-9a-f]{40}")
_SECTION = re.compile(r'\s*\[\s*([^\]\s"]+)(?:\s+"([^"]*)")?\s*\]')


def kind(path: Path) -> str:
    """What a ``<2 hex>/<62 hex>`` directory holds, by content (:data:`V11_WORKTREE`, … :data:`OTHER`)."""
    if (path / ".git").is_dir():
        return V11_WORKTREE
    if (path / ".git").is_file():
        return V12_WORKTREE
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return V12_BARE
    return OTHER


def clone_dirs(workdir: Path) -> Iterator[Path]:
    """Every ``<workdir>/<2 hex>/<62 hex>`` directory, sorted."""
    try:
        firsts = sorted(p for p in workdir.iterdir() if _FIRST.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    except OSError:
        return
    for first in firsts:
        try:
            yield from sorted(p for p in first.iterdir() if _REST.fullmatch(p.name) and p.is_dir())
        except OSError:
            continue


def path_hash(path: Path) -> str:
    """The 64 hex digits a clone's path spells (``<2 hex>/<62 hex>``)."""
    return path.parent.name + path.name


def sha256_hex(text: str) -> str:
    """``sha256(text)`` in hex, as the runner names its clone directories."""
    return hashlib.sha256(text.encode()).hexdigest()


def git_dir(path: Path) -> Path | None:
    """The repository directory of a clone: ``.git`` of a work tree, the bare clone itself, the admin
    directory a worktree's ``.git`` file points at (None when it points nowhere)."""
    found = kind(path)
    if found == V11_WORKTREE:
        return path / ".git"
    if found == V12_BARE:
        return path
    if found == V12_WORKTREE:
        target = worktree_admin(path)
        return target if target is not None and target.is_dir() else None
    return None


def worktree_admin(path: Path) -> Path | None:
    """Where a worktree's ``.git`` file points (``<bare>/worktrees/<name>``), None when unreadable."""
    try:
        text = (path / ".git").read_text(errors="replace").strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    target = Path(text.removeprefix("gitdir:").strip())
    return target if target.is_absolute() else (path / target)


def common_dir(admin: Path) -> Path | None:
    """The repository a worktree's admin directory belongs to (its ``commondir``)."""
    try:
        text = (admin / "commondir").read_text().strip()
    except OSError:
        return None
    target = Path(text)
    return (target if target.is_absolute() else admin / target).resolve()


def refs(repo: Path) -> dict[str, str]:
    """Every ref of a repository (``refs/...`` → object id): ``packed-refs``, then loose refs over them."""
    found: dict[str, str] = {}
    try:
        packed = (repo / "packed-refs").read_text(errors="replace").splitlines()
    except OSError:
        packed = []
    for line in packed:
        if line.startswith(("#", "^")) or " " not in line:
            continue
        sha, name = line.split(" ", 1)
        if _SHA.fullmatch(sha):
            found[name.strip()] = sha
    base = repo / "refs"
    if base.is_dir():
        for file in base.rglob("*"):
            if file.is_file():
                try:
                    value = file.read_text(errors="replace").strip()
                except OSError:
                    continue
                if _SHA.fullmatch(value):
                    found["refs/" + file.relative_to(base).as_posix()] = value
    return found


def tags(repo: Path) -> dict[str, str]:
    """Tag name → object id (loose and packed)."""
    return {name.removeprefix("refs/tags/"): sha for name, sha in refs(repo).items() if name.startswith("refs/tags/")}


def head(repo: Path, all_refs: dict[str, str] | None = None) -> str | None:
    """The commit ``HEAD`` names (detached, or through a ref), None when unknown."""
    try:
        text = (repo / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return None
    if _SHA.fullmatch(text):
        return text
    if text.startswith("ref:"):
        return (all_refs if all_refs is not None else refs(repo)).get(text.removeprefix("ref:").strip())
    return None


def origin_url(repo: Path) -> str | None:
    """``remote.origin.url`` of a repository's ``config``."""
    try:
        lines = (repo / "config").read_text(errors="replace").splitlines()
    except OSError:
        return None
    section: tuple[str, str | None] = ("", None)
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section = (header.group(1).lower(), header.group(2))
            continue
        name, sep, value = line.strip().partition("=")
        if sep and section == ("remote", "origin") and name.strip().lower() == "url":
            return value.strip()
    return None


def repo_slug(url: str) -> str | None:
    """``owner/repo`` of a clone URL (its last two path parts, ``.git`` dropped)."""
    parts = [p for p in re.sub(r"^[a-z+]+://[^/]*", "", url).split("/") if p]
    if len(parts) < 2:
        return None
    return f"{parts[-2]}/{parts[-1].removesuffix('.git')}"


def served_ref(path: Path, url: str | None, all_refs: dict[str, str], head_commit: str | None) -> str | None:
    """The ``uses:`` string an 11.x work tree was made for, found by hashing candidates against its path:
    ``owner/repo@<ref>`` and ``<url>@<ref>`` for every tag and branch of the clone and its HEAD commit.
    None when none matches (a ``uses:`` with a path inside the repository, an unknown form)."""
    if not url:
        return None
    wanted = path_hash(path)
    names = {name.split("/", 2)[2] for name in all_refs if name.startswith(("refs/tags/", "refs/heads/"))}
    names |= {name.split("/", 3)[3] for name in all_refs if name.startswith("refs/remotes/") and name.count("/") >= 3}
    if head_commit:
        names.add(head_commit)
    prefixes = [p for p in (repo_slug(url), url.rstrip("/"), url.rstrip("/").removesuffix(".git")) if p]
    for name in sorted(names):
        for prefix in prefixes:
            candidate = f"{prefix}@{name}"
            if sha256_hex(candidate) == wanted:
                return candidate
    return None
