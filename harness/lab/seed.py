"""Seed action repositories into the lab Forgejo so ``uses: actions/checkout@v4`` resolves there.

Sources: ``fixtures/actions/<owner>/<name>/`` (the stand-ins) and ``--seed-action owner/name=PATH``
(a user's copy: a git work tree is cloned with its full history, branches and tags).

A stand-in is committed once per content into a bare repository kept in the cache
(:func:`prepared_repo`; fixed author, committer and dates, so the same files always give the same
commit). Seeding copies that repository under the lab Forgejo's repository root, adds the tags the
workflows reference as ref files, and lets Forgejo adopt it (admin API): it records the repository,
installs its hooks and syncs branches and tags, so the repository shows its files in the UI. No
git runs against Forgejo and no token is handed to git.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, LabError
from harness.faults.heavy_action import HeavySpec, copy_repo, heavy_repo
from harness.forgejo.client import ForgejoClient
from harness.paths import actions_cache_dir
from harness.scenarios import ACTIONS_DIR

DEFAULT_REFS = ("v1",)  # a stand-in no scenario references is still tagged, so `uses: x@v1` works


@dataclass(frozen=True)
class Seeded:
    """One seeded action repository."""

    repo: str  # owner/name
    source: str
    commit: str  # the default branch's head (what each ref resolves to: harness.provenance.resolve_ref)
    refs: tuple[str, ...]
    kind: str = "stand-in"  # or "seeded copy" (--seed-action)
    path: str = ""  # the stand-in folder or the --seed-action copy
    served: str = ""  # the bare repository under the lab Forgejo's repository root


def stand_in_sources(root: Path = ACTIONS_DIR) -> dict[str, Path]:
    """``owner/name`` → folder, for every stand-in action."""
    found = {}
    if root.is_dir():
        for owner in sorted(p for p in root.iterdir() if p.is_dir()):
            for action in sorted(p for p in owner.iterdir() if (p / "action.yml").is_file()):
                found[f"{owner.name}/{action.name}"] = action
    return found


def parse_seed_option(values: Iterable[str]) -> dict[str, Path]:
    """Parse ``owner/name=PATH`` values.

    Raises:
        ConfigError: malformed value or missing path.
    """
    result = {}
    for value in values:
        repo, sep, path = value.partition("=")
        if not sep or repo.count("/") != 1 or not path:
            raise ConfigError(f"--seed-action {value!r}: expected owner/name=PATH")
        if not Path(path).is_dir():
            raise ConfigError(f"--seed-action {value!r}: {path} is not a directory")
        check_git_copy(repo, Path(path).resolve())
        result[repo] = Path(path).resolve()
    return result


def check_git_copy(repo: str, source: Path) -> None:
    """A copy with history must be complete: a mirror missing historic objects seeds fine, and then the
    runner's clone of it fails ("possible repository corruption"). Checked with ``git fsck
    --connectivity-only`` (objects reachable from every ref are present).

    Raises:
        ConfigError: the copy is incomplete; the missing objects and the fix are named.
    """
    if not (source / ".git").exists():
        return  # a plain folder: the suite commits its files as one commit
    proc = subprocess.run(["git", "fsck", "--connectivity-only", "--no-progress"], cwd=source, env=_git_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode == 0:
        return
    output = f"{proc.stdout}\n{proc.stderr}"
    missing = sorted(set(re.findall(r"missing (?:blob|tree|commit|tag) [0-9a-f]{7,64}", output)))
    named = "; ".join(missing[:5]) + (f"; … {len(missing) - 5} more" if len(missing) > 5 else "")
    raise ConfigError(
        f"--seed-action {repo}={source}: the git copy is incomplete ({named or output.strip()[-300:]}): the "
        "runner's clone of it would fail with 'possible repository corruption'. Fix: fetch the missing objects "
        f"again (git -C {source} fetch --refetch origin, or a fresh git clone), or seed the files without "
        "history (a copy without .git: the suite commits them as one commit)")


def _git(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=_git_env(), capture_output=True, text=True, timeout=300,
                          check=False)
    if proc.returncode != 0:
        raise LabError(f"git {args[0]} in {cwd} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout.strip()


FIXED_DATE = "2024-01-01T00:00:00+0000"


def _git_env() -> dict[str, str]:
    """Identity and dates fixed (the same stand-in files always give the same commit); no prompts."""
    return {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "regress", "GIT_AUTHOR_EMAIL": "regress@example.test", "GIT_AUTHOR_DATE": FIXED_DATE,
        "GIT_COMMITTER_NAME": "regress", "GIT_COMMITTER_EMAIL": "regress@example.test",
        "GIT_COMMITTER_DATE": FIXED_DATE,
    }


def content_key(source: Path) -> str:
    """A hash of a stand-in's files: relative paths, executable bits and contents (symlinks followed)."""
    digest = hashlib.sha256(b"regress-stand-in-v2\0")
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source).as_posix()
        if rel == ".git" or rel.startswith(".git/"):
            continue
        digest.update(rel.encode() + b"\0" + (b"x" if os.access(path, os.X_OK) else b"-") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def _read_ref(git_dir: Path, ref: str) -> str | None:
    loose = git_dir / ref
    if loose.is_file():
        return loose.read_text().strip()
    packed = git_dir / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    return None


def prepared_repo(source: Path, cache: Path | None = None) -> tuple[Path, str]:
    """The bare repository holding ``source`` as one commit on ``main`` (built on first use); and that commit."""
    cache = cache or actions_cache_dir()
    repo = cache / f"{content_key(source)}.git"
    commit = _read_ref(repo, "refs/heads/main")
    if commit:
        return repo, commit
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=cache) as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(source, work)  # a symlinked file is committed as the file it points to
        _git(["init", "-q", "-b", "main"], work)
        _git(["add", "-A"], work)
        _git(["commit", "-q", "-m", "regress stand-in action"], work)
        bare = Path(tmp) / "repo.git"
        _git(["init", "-q", "--bare", "--template=", "-b", "main", str(bare)], work)  # no sample hooks to copy
        _git(["--git-dir", str(bare), "fetch", "-q", str(work), "refs/heads/main:refs/heads/main"], work)
        try:
            bare.rename(repo)
        except OSError:  # another lab built the same content meanwhile
            if not _read_ref(repo, "refs/heads/main"):
                raise
    commit = _read_ref(repo, "refs/heads/main")
    if not commit:
        raise LabError(f"the prepared repository {repo} has no main branch; remove it and boot again")
    return repo, commit


_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def _check_ref(repo: str, ref: str) -> None:
    """A tag name git accepts (git check-ref-format's rules for what ``uses:`` refs can hold)."""
    parts = ref.split("/")
    if (not _REF.fullmatch(ref) or ".." in ref or ref.endswith(("/", "."))
            or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts)):
        raise LabError(f"a workflow uses {repo}@{ref}: {ref!r} cannot be a tag of the seeded stand-in")


def _check_refs(repo: str, refs: list[str]) -> None:
    for ref in refs:
        _check_ref(repo, ref)
    for ref in refs:  # refs/tags/v1 is a file: refs/tags/v1/x cannot exist beside it
        clash = next((other for other in refs if other.startswith(ref + "/")), None)
        if clash:
            raise LabError(f"workflows use both {repo}@{ref} and {repo}@{clash}: git cannot hold both tags")


def place(sources: Mapping[str, Path], refs: Mapping[str, Iterable[str]], repo_root: Path) -> list[Seeded]:
    """Put each ``owner/name`` as a bare repository under ``repo_root`` (the lab's ``[repository] ROOT``).

    A stand-in gets the tags ``refs[repo]`` on its one commit (``v1`` when no workflow names one).
    Needs no Forgejo: it runs while Forgejo starts; :func:`adopt` then registers the repositories.
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda item: _place_one(item[0], item[1], refs, repo_root), sources.items()))


def adopt(client: ForgejoClient, placed: Iterable[Seeded]) -> None:
    """Have Forgejo adopt the placed repositories (their owners created as orgs) and make them public."""
    placed = list(placed)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(client.create_org, sorted({s.repo.split("/")[0] for s in placed})))

        def one(seeded: Seeded) -> None:
            owner, name = seeded.repo.split("/")
            client.adopt_repo(owner, name)
            client.set_private(owner, name, False)

        list(pool.map(one, placed))


def served_repo(repo_root: Path, repo: str) -> Path:
    """Where Forgejo keeps ``owner/name`` under its repository root."""
    owner, name = repo.split("/")
    return repo_root / owner.lower() / f"{name.lower()}.git"


def _place_one(repo: str, source: Path, refs: Mapping[str, Iterable[str]], repo_root: Path) -> Seeded:
    dest = served_repo(repo_root, repo)
    if dest.exists():
        raise LabError(f"cannot seed {repo}: {dest} already exists (seeding expects a fresh lab)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if (source / ".git").exists():
        _git(["clone", "-q", "--bare", str(source), str(dest)], source)
        commit = _git(["--git-dir", str(dest), "rev-parse", "HEAD"], source)
        return Seeded(repo, f"user copy (full history): {source}", commit, ("main",), "seeded copy", str(source),
                      str(dest))
    wanted = sorted(set(refs.get(repo, ()) or DEFAULT_REFS) - {"main"})
    _check_refs(repo, wanted)
    prepared, commit = prepared_repo(source)
    shutil.copytree(prepared, dest)
    for ref in wanted:
        tag = dest / "refs" / "tags" / ref
        tag.parent.mkdir(parents=True, exist_ok=True)
        tag.write_text(commit + "\n")
    return Seeded(repo, f"stand-in: {source}", commit, ("main", *wanted), "stand-in", str(source), str(dest))


def refs_from_uses(uses: Iterable[str]) -> dict[str, set[str]]:
    """``owner/name`` → refs, from ``uses:`` strings such as ``actions/checkout@v4``."""
    refs: dict[str, set[str]] = {}
    for use in uses:
        if "@" not in use or use.startswith(("./", "docker://", "http://", "https://")):
            continue
        path, ref = use.rsplit("@", 1)
        parts = path.split("/")
        if len(parts) >= 2:
            refs.setdefault(f"{parts[0]}/{parts[1]}", set()).add(ref)
    return refs


def seed_heavy(client: ForgejoClient, repo_root: Path, repos: Iterable[str], spec: HeavySpec,
               lock: Path) -> list[Seeded]:
    """Seed heavy stand-ins (:mod:`harness.faults.heavy_action`) into a running lab, when a heavy cell runs:
    the repository for ``spec`` is built once into the cache, copied under ``repo_root`` as each of ``repos`` and
    adopted. A repository already there (an earlier cell of this lab) is kept; ``lock`` (a file) serialises
    processes seeding the same lab.
    """
    built = heavy_repo(spec)
    seeded = []
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        for repo in repos:
            owner, name = repo.split("/")
            dest = repo_root / owner.lower() / f"{name.lower()}.git"
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.create_org(owner)
                copy_repo(built.path, dest)
                # adopted with main and v1 only (Forgejo would record every tag as a release: 3,000 take ~15 s
                # each repository), then every ref is back on disk, where git serves them from
                refs = (dest / "packed-refs").read_text()
                (dest / "packed-refs").write_text("".join(
                    line + "\n" for line in refs.splitlines()
                    if line.startswith("#") or line.endswith((" refs/heads/main", " refs/tags/v1"))))
                client.adopt_repo(owner, name)
                (dest / "packed-refs").write_text(refs)
                client.set_private(owner, name, False)
            seeded.append(Seeded(repo, f"heavy stand-in: {spec.describe()}", built.head, ("main", "v1")))
    return seeded
