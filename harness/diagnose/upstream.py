"""``--check-upstream``, diagnose's one online part: for each clone, ``git ls-remote`` of its remote, and for
each tag whose cached commit is not the remote's, whether the remote's descends from it.

The remote's commit is fetched into a temporary bare repository that borrows the clone's objects (read
through ``objects/info/alternates``), never into the runner's clone. A move that does not descend is what
makes 11.x log "some refs were not updated" and run the old action (go-git's fetch without force).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.budgets import BUDGETS, Budgets
from harness.diagnose.action_clones import Clone
from harness.runners import clones

_GIT = ("git", "-c", "safe.directory=*")
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "LC_ALL": "C", "PATH": "/usr/local/bin:/usr/bin:/bin"}


@dataclass(frozen=True)
class TagCheck:
    """One tag of one clone against its remote."""

    clone: Path
    remote: str
    tag: str
    cached: str | None  # the commit the clone has for it (an 11.x work tree: the one it runs)
    upstream: str | None  # the remote's (None: the remote has no such tag)
    descends: bool | None  # the remote's descends from the cached one (None: cannot tell)
    note: str = ""

    @property
    def stale(self) -> bool:
        """The clone's commit is not the remote's."""
        return self.cached is not None and self.upstream is not None and self.cached != self.upstream

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` prints it."""
        return {"clone": str(self.clone), "remote": self.remote, "tag": self.tag, "cached": self.cached,
                "upstream": self.upstream, "stale": self.stale,
                "descends": "unknown" if self.descends is None else self.descends, "note": self.note}


@dataclass(frozen=True)
class RemoteCheck:
    """One clone's remote: how long ``ls-remote`` took, or why it failed, and its tags checked."""

    clone: Path
    remote: str
    seconds: float | None
    error: str
    tags: tuple[TagCheck, ...]

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` prints it."""
        return {"clone": str(self.clone), "remote": self.remote, "ls_remote_seconds": self.seconds,
                "error": self.error or None, "tags": [t.to_json() for t in self.tags]}


def _git(args: Sequence[str], budget: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_GIT, *args], capture_output=True, text=True, timeout=budget, check=False, cwd=cwd,
                          env=_ENV)


def ls_remote(url: str, budget: float) -> dict[str, str]:
    """Tag name → commit (peeled) of a remote.

    Raises:
        RuntimeError: git failed (its last line of output).
        subprocess.TimeoutExpired: past ``budget`` seconds.
    """
    proc = _git(["ls-remote", "--tags", "--", url], budget)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1])
    found: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, name = line.partition("\t")
        if not name.startswith("refs/tags/"):
            continue
        tag = name.removeprefix("refs/tags/")
        if tag.endswith("^{}"):
            peeled[tag.removesuffix("^{}")] = sha
        else:
            found[tag] = sha
    return {**found, **peeled}


def cached_tags(clone: Clone, budget: float) -> dict[str, str]:
    """Tag → commit (peeled) in the clone; an 11.x work tree's served tag → the commit it has checked out."""
    repo = clones.git_dir(clone.path)
    if repo is None:
        return {}
    proc = _git(["--git-dir", str(repo), "for-each-ref", "--format=%(refname:strip=2) %(objectname) %(*objectname)",
                 "refs/tags"], budget)
    found = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        parts = line.split()
        if len(parts) >= 2:
            found[parts[0]] = parts[2] if len(parts) > 2 else parts[1]
    if clone.kind == clones.V11_WORKTREE and "@" in clone.ref and clone.head:
        served = clone.ref.rsplit("@", 1)[1]
        if served in found:
            found[served] = clone.head  # what it runs (a fetch refused by go-git leaves the work tree where it was)
    return found


def descends(clone: Clone, url: str, tag: str, cached: str, budget: float) -> tuple[bool | None, str]:
    """Whether the remote's ``tag`` descends from ``cached``, in a temporary repository; (None, why) when unknown."""
    repo = clones.git_dir(clone.path)
    if repo is None:
        return None, "the clone has no repository"
    with tempfile.TemporaryDirectory(prefix="diagnose-upstream-") as tmp:
        work = Path(tmp) / "repo.git"
        init = _git(["init", "-q", "--bare", str(work)], budget)
        if init.returncode != 0:
            return None, f"git init: {init.stderr.strip()}"
        (work / "objects" / "info").mkdir(parents=True, exist_ok=True)
        (work / "objects" / "info" / "alternates").write_text(f"{(repo / 'objects').resolve()}\n")
        fetch = _git(["fetch", "-q", "--no-tags", "--", url, f"+refs/tags/{tag}:refs/upstream/{tag}"], budget, cwd=work)
        if fetch.returncode != 0:
            return None, f"fetch of the remote's {tag}: {(fetch.stderr.strip().splitlines() or ['failed'])[-1]}"
        check = _git(["merge-base", "--is-ancestor", cached, f"refs/upstream/{tag}^{{commit}}"], budget, cwd=work)
        if check.returncode in (0, 1):
            return check.returncode == 0, ""
        return None, f"merge-base: {(check.stderr.strip().splitlines() or ['failed'])[-1]}"


def check(found: Sequence[Clone], budgets: Budgets = BUDGETS) -> list[RemoteCheck]:
    """Every clone with a remote (11.x work trees, 12.x bare clones) against it (budget: ``upstream_git`` per git
    call)."""
    budget = budgets.upstream_git
    results = []
    for clone in found:
        if clone.kind not in (clones.V11_WORKTREE, clones.V12_BARE) or not clone.remote:
            continue
        started = time.monotonic()
        try:
            upstream = ls_remote(clone.remote, budget)
        except subprocess.TimeoutExpired:
            results.append(RemoteCheck(clone.path, clone.remote, None, f"git ls-remote took over {budget:g}s "
                                       "(budget upstream_git)", ()))
            continue
        except (RuntimeError, OSError) as exc:
            results.append(RemoteCheck(clone.path, clone.remote, None, f"git ls-remote: {exc}", ()))
            continue
        seconds = round(time.monotonic() - started, 3)
        checks = []
        for tag, cached in sorted(cached_tags(clone, budget).items()):
            remote_commit = upstream.get(tag)
            if remote_commit is None:
                checks.append(TagCheck(clone.path, clone.remote, tag, cached, None, None, "the remote has no such tag"))
            elif remote_commit == cached:
                checks.append(TagCheck(clone.path, clone.remote, tag, cached, remote_commit, True))
            else:
                try:
                    verdict, why = descends(clone, clone.remote, tag, cached, budget)
                except subprocess.TimeoutExpired:
                    verdict, why = None, f"git took over {budget:g}s (budget upstream_git)"
                checks.append(TagCheck(clone.path, clone.remote, tag, cached, remote_commit, verdict, why))
        results.append(RemoteCheck(clone.path, clone.remote, seconds, "", tuple(checks)))
    return results
