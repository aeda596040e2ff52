"""Seed action repositories into the lab Forgejo so ``uses: actions/checkout@v4`` resolves there.

Sources: ``fixtures/actions/<owner>/<name>/`` (the stand-ins; committed fresh, then tagged as the
workflows reference them) and ``--seed-action owner/name=PATH`` (a user's copy: a git repository
is pushed with its full history, branches and tags). The token travels in git's environment
(``GIT_CONFIG_*``), never on a command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, LabError, TransientApiError
from harness.forgejo.client import ForgejoClient
from harness.scenarios import ACTIONS_DIR

DEFAULT_REFS = ("v1",)  # a stand-in no scenario references is still tagged, so `uses: x@v1` works


@dataclass(frozen=True)
class Seeded:
    """One seeded action repository."""

    repo: str  # owner/name
    source: str
    commit: str
    refs: tuple[str, ...]


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
        result[repo] = Path(path).resolve()
    return result


def _git(args: list[str], cwd: Path, env: Mapping[str, str]) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise LabError(f"git {args[0]} in {cwd} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout.strip()


def _git_env(token: str) -> dict[str, str]:
    return {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "regress", "GIT_AUTHOR_EMAIL": "regress@example.test",
        "GIT_COMMITTER_NAME": "regress", "GIT_COMMITTER_EMAIL": "regress@example.test",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: token {token}",
    }


def seed(client: ForgejoClient, token: str, sources: Mapping[str, Path], refs: Mapping[str, Iterable[str]],
         repo_root: Path | None = None, fresh: bool = False) -> list[Seeded]:
    """Create each ``owner/name`` repo and fill it from its source; tag ``refs[repo]`` on the commit.

    With ``repo_root`` (the lab's own ``[repository] ROOT``), the refs are fetched straight into the
    bare repository on disk, which skips Forgejo's push hooks (a process spawn per ref: seconds per
    repo); runners clone it over HTTP like any action. Without it, they are pushed over HTTP.
    """
    for owner in sorted({repo.split("/")[0] for repo in sources}):
        client.create_org(owner)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(_seed_one, client, token, repo, source, refs, repo_root, fresh)
                   for repo, source in sources.items()]
        return [f.result() for f in futures]


def _seed_one(client: ForgejoClient, token: str, repo: str, source: Path, refs: Mapping[str, Iterable[str]],
              repo_root: Path | None, fresh: bool) -> Seeded:
    env = _git_env(token)
    owner, name = repo.split("/")
    if not fresh:  # a fresh lab has no repos yet
        client.delete_repo(owner, name)
    try:
        client.create_repo(name, owner=owner)
    except TransientApiError:  # a 5xx on a POST: create again only when it did not happen
        if not client.repo_exists(owner, name):
            client.create_repo(name, owner=owner)
    url = f"{client.base_url}/{owner}/{name}.git"
    bare = repo_root / owner.lower() / f"{name.lower()}.git" if repo_root else None
    wanted = sorted(set(refs.get(repo, ()) or DEFAULT_REFS) - {"main"})

    def publish(work: Path, refspecs: list[str]) -> None:
        if bare is not None and bare.is_dir():
            _git(["--git-dir", str(bare), "fetch", "-q", "--force", str(work), *refspecs], work, env)
        else:
            _git(["push", "-q", "--force", url, *refspecs], work, env)

    if (source / ".git").exists():
        publish(source, ["refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"])
        commit = _git(["rev-parse", "HEAD"], source, env)
        origin = "user copy (full history)"
    else:
        with tempfile.TemporaryDirectory(prefix="regress-seed-") as tmp:
            work = Path(tmp) / name
            shutil.copytree(source, work)
            _git(["init", "-q", "-b", "main"], work, env)
            _git(["add", "-A"], work, env)
            _git(["commit", "-q", "-m", f"stand-in {repo}"], work, env)
            for ref in wanted:
                _git(["tag", "-f", ref], work, env)
            publish(work, ["refs/heads/main:refs/heads/main", *[f"refs/tags/{r}:refs/tags/{r}" for r in wanted]])
            commit = _git(["rev-parse", "HEAD"], work, env)
        origin = "stand-in"
    return Seeded(repo, f"{origin}: {source}", commit, tuple(["main", *wanted]))


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
