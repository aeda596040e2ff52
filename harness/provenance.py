"""What ran for each ``uses:`` of a cell: the commit, and whether a stand-in, a seeded copy or the
actions URL served it.

The commit is read from the runner's own clone of the action, where it keeps it after the job
(11.x: a work tree keyed by ``sha256(uses)``, checked out at the commit that ran; 12.x: a bare clone
keyed by ``sha256(clone URL)``, where the ref is resolved), else from the lab's repository the
runner cloned (the ref resolved there, as the runner would). The clone URL and ref come from the
job log's ``☁️  git clone '<url>' # ref=<ref>`` line.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLONE_LINE = re.compile(r"git clone '(?P<url>[^']+)' # ref=(?P<ref>\S+)")
STAND_IN, SEEDED_COPY, ACTIONS_URL = "stand-in", "seeded copy", "actions URL"


@dataclass(frozen=True)
class ActionOrigin:
    """Where the lab serves an action from: ``kind`` (stand-in, seeded copy, actions URL), ``source``
    (the stand-in folder, the ``--seed-action`` path, or the actions URL) and the lab's bare repository
    (None when the actions URL serves it)."""

    kind: str
    source: str
    served: Path | None = None


@dataclass(frozen=True)
class ActionRan:
    """One ``uses:`` of a cell and the commit that ran (None when neither clone could tell)."""

    uses: str
    repo: str
    ref: str
    kind: str
    source: str
    clone_url: str | None
    commit: str | None
    commit_from: str  # "runner clone", "lab repository", or why it is unknown
    git_dir: Path | None = None  # where the commit's tree can be read

    def to_json(self) -> dict[str, Any]:
        """The manifest's entry (paths as strings, no ``git_dir``)."""
        return {"uses": self.uses, "repo": self.repo, "ref": self.ref, "kind": self.kind, "from": self.source,
                "clone_url": self.clone_url, "commit": self.commit, "commit_from": self.commit_from}


def split_uses(use: str) -> tuple[str, str] | None:
    """``owner/name[/path]@ref`` → (``owner/name``, ``ref``); None for local, docker and URL references."""
    if "@" not in use or use.startswith(("./", "docker://", "http://", "https://")):
        return None
    path, ref = use.rsplit("@", 1)
    parts = path.split("/")
    return (f"{parts[0]}/{parts[1]}", ref) if len(parts) >= 2 and all(parts[:2]) else None


def clone_lines(job_log: str | None) -> dict[str, str]:
    """``owner/name@ref`` → clone URL, from the job log's ``git clone`` lines."""
    found: dict[str, str] = {}
    for match in CLONE_LINE.finditer(job_log or ""):
        url, ref = match["url"].rstrip("/"), match["ref"]
        parts = url.removesuffix(".git").split("/")
        if len(parts) >= 2:
            found.setdefault(f"{parts[-2]}/{parts[-1]}@{ref}", url)
    return found


def _git(args: list[str]) -> str | None:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30, check=False,
                              env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def resolve_ref(git_dir: Path, ref: str) -> str | None:
    """The commit ``ref`` names in a repository (a tag first, as the runner resolves ``uses:``; then a
    branch, a remote branch, a commit)."""
    for name in (f"refs/tags/{ref}", f"refs/heads/{ref}", f"refs/remotes/origin/{ref}", ref):
        commit = _git(["--git-dir", str(git_dir), "rev-parse", "--verify", "-q", f"{name}^{{commit}}"])
        if commit:
            return commit
    return None


def runner_clone(workdir: Path, uses: str, clone_url: str | None) -> tuple[Path, bool] | None:
    """The runner's clone of an action: (its git dir, whether it is a work tree checked out at what ran)."""
    tree = workdir / _key(uses)
    if (tree / ".git").is_dir():
        return tree / ".git", True
    if clone_url:
        bare = workdir / _key(clone_url)
        if (bare / "objects").is_dir():
            return bare, False
    return None


def _key(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{digest[:2]}/{digest[2:]}"


def actions_ran(uses: Iterable[str], origins: Mapping[str, ActionOrigin], job_log: str | None,
                workdir: Path | None) -> list[ActionRan]:
    """Each ``owner/name@ref`` of ``uses``: where it came from and the commit that ran.

    ``origins`` maps ``owner/name`` to where the lab serves it (missing: neither seeded nor from the
    actions URL); ``workdir`` is the lab runner's ``host.workdir_parent`` (None for a runner the suite
    did not start: the commit then comes from the lab repository only).
    """
    urls = clone_lines(job_log)
    found = []
    for use in uses:
        split = split_uses(use)
        if split is None:
            continue
        repo, ref = split
        origin = origins.get(repo, ActionOrigin("not seeded by the suite", ""))
        url = urls.get(f"{repo}@{ref}")
        commit, commit_from, git_dir = None, "unknown: the runner's clone is gone and the lab does not serve it", None
        clone = runner_clone(workdir, use, url) if workdir is not None else None
        if clone is not None:
            git_dir, checked_out = clone
            commit = _git(["--git-dir", str(git_dir), "rev-parse", "HEAD"]) if checked_out else resolve_ref(git_dir, ref)
            commit_from = "runner clone"
        if commit is None and origin.served is not None and origin.served.is_dir():
            git_dir, commit, commit_from = origin.served, resolve_ref(origin.served, ref), "lab repository"
        found.append(ActionRan(use, repo, ref, origin.kind, origin.source, url, commit, commit_from,
                               git_dir if commit else None))
    return found


def export_tree(git_dir: Path, commit: str, dest: Path) -> bool:
    """Write the files of ``commit`` under ``dest`` (``git archive``); False when git could not."""
    try:
        proc = subprocess.run(["git", "--git-dir", str(git_dir), "archive", "--format=tar", commit],
                              capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if proc.returncode != 0:
        return False
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return True
