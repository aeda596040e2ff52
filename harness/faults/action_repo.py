"""Action repositories that change between runs: a phased cell's own copy of a stand-in action.

The copy is a new public repository in the target Forgejo (``<owner>/<name>-<cell id>``), filled and then
changed by ``git push`` over HTTP — the way a maintainer moves a tag — so parallel cells and the other
version's cell never see each other's changes, and the runner's action cache meets a repository it has
never cloned in the first phase. Changes (:class:`harness.scenarios.ActionChange`):

- ``descendant``: a new commit on ``main`` whose ``version`` file holds the phase's name; the tags are
  re-pointed to it (a fast-forward for ``main``, a forced update for each tag);
- ``orphan``: a new root commit (no parent) with the phase's ``version``; ``main`` is force-pushed to it
  and the tags re-pointed: a clone that fetches without force cannot update either ref;
- ``add_refs``: ``count`` new tags on the current commit.

A changed action prints ``<name>-version: <its version file>`` (the judge's ``stale-action`` rule compares
that with :attr:`ActionVersion.marker`). Git runs with a fixed identity and fixed dates (the same change
always gives the same commit); the token travels in the environment of the git process only, never in a
file or on its command line.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.budgets import BUDGETS
from harness.errors import HarnessError
from harness.forgejo.client import ForgejoClient
from harness.lab.seed import FIXED_DATE, prepared_repo
from harness.scenarios import ActionChange
from harness.verdict import ActionVersion

VERSION_FILE = "version"


class ActionRepoError(HarnessError):
    """A git operation on a cell's action copy failed (our side: the cell is inconclusive)."""


def _env(auth: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and not k.startswith("GIT_CONFIG")}
    env.update({
        "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "regress", "GIT_AUTHOR_EMAIL": "regress@example.test", "GIT_AUTHOR_DATE": FIXED_DATE,
        "GIT_COMMITTER_NAME": "regress", "GIT_COMMITTER_EMAIL": "regress@example.test",
        "GIT_COMMITTER_DATE": FIXED_DATE,
    })
    if auth:
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: {auth}"})
    return env


def basic_auth(user: str, token: str) -> str:
    """The ``Authorization`` value git sends: HTTP basic with the API token as the password."""
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


class ActionCopy:
    """One cell's copy of an action: a local work tree and the repository in Forgejo it is pushed to."""

    def __init__(self, action: str, copy: str, url: str, work: Path, auth: str, tags: tuple[str, ...]) -> None:
        self.action, self.copy, self.url, self.work, self.tags = action, copy, url, work, tags
        self._auth = auth
        self.pushes: list[str] = []  # one line per push: what moved where

    def git(self, *args: str) -> str:
        """Run git in the work tree.

        Raises:
            ActionRepoError: git failed (its last output lines named).
        """
        try:
            proc = subprocess.run(["git", *args], cwd=self.work, env=_env(self._auth), capture_output=True, text=True,
                                  timeout=BUDGETS.action_push, check=False)
        except subprocess.TimeoutExpired:
            raise ActionRepoError(f"git {args[0]} for the action copy {self.copy} took more than "
                                  f"action_push={BUDGETS.action_push:g}s") from None
        if proc.returncode != 0:
            raise ActionRepoError(f"git {' '.join(args[:2])} for the action copy {self.copy} failed: "
                                  f"{(proc.stderr or proc.stdout).strip()[-400:]}")
        return proc.stdout.strip()

    @classmethod
    def create(cls, client: ForgejoClient, *, base_url: str, user: str, token: str, owner: str, org: str | None,
               action: str, source: Path, name: str, tags: tuple[str, ...]) -> ActionCopy:
        """A new public repository ``owner/name`` holding the stand-in ``source`` (its one commit on ``main``)
        with ``tags`` on it, pushed with git.

        Raises:
            ActionRepoError: git failed; ApiError: the repository could not be created.
        """
        client.create_repo(name, owner=org)
        work = Path(tempfile.mkdtemp(prefix=f"regress-action-{name}-"))
        copy = cls(action, f"{owner}/{name}", f"{base_url.rstrip('/')}/{owner}/{name}.git", work,
                   basic_auth(user, token) if token else "", tags)
        try:
            bare, _commit = prepared_repo(source)
            copy.git("clone", "-q", "--branch", "main", str(bare), ".")
            for tag in tags:
                copy.git("tag", "-f", tag, "main")
            copy.push("refs/heads/main:refs/heads/main", *(f"+refs/tags/{t}:refs/tags/{t}" for t in tags))
        except BaseException:
            copy.close()
            raise
        return copy

    def push(self, *refspecs: str) -> None:
        """Push ``refspecs`` to the copy in Forgejo."""
        self.git("push", "-q", self.url, *refspecs)
        self.pushes.append(" ".join(refspecs))

    def apply(self, change: ActionChange, phase: str) -> str:
        """Make ``change`` for ``phase`` and push it; one line saying what moved."""
        tags = change.tags
        if change.kind == "add_refs":
            names = [f"{phase}-{i}" for i in range(change.count)]
            for tag in names:
                self.git("tag", tag, "HEAD")
            self.push(f"refs/tags/{phase}-*:refs/tags/{phase}-*")
            return f"{self.copy}: {change.count} tags {names[0]}…{names[-1]} added on {self.head()[:12]}"
        before = self.head()
        if change.kind == "orphan":
            self.git("checkout", "-q", "--orphan", f"regress-{phase}")
        (self.work / VERSION_FILE).write_text(f"{phase}\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"regress phase {phase} ({change.kind})")
        if change.kind == "orphan":
            self.git("branch", "-M", "main")
        for tag in tags:
            self.git("tag", "-f", tag, "HEAD")
        main = ("+" if change.kind == "orphan" else "") + "refs/heads/main:refs/heads/main"
        self.push(main, *(f"+refs/tags/{t}:refs/tags/{t}" for t in tags))
        how = "force-pushed to the orphan" if change.kind == "orphan" else "advanced to the descendant"
        return (f"{self.copy}: main {how} {self.head()[:12]} (was {before[:12]}); "
                f"{', '.join(tags)} re-pointed to it")

    def head(self) -> str:
        """The commit ``main`` is at."""
        return self.git("rev-parse", "HEAD")

    def version(self, ref: str) -> ActionVersion:
        """Where ``ref`` points now and the version the action prints there."""
        commit = self.git("rev-parse", f"refs/tags/{ref}^{{commit}}")
        marker = self.git("show", f"{commit}:{VERSION_FILE}").strip()
        return ActionVersion(self.action, ref, commit, marker)

    def versions(self) -> tuple[ActionVersion, ...]:
        """:meth:`version` of every tag the workflow uses."""
        return tuple(self.version(t) for t in self.tags)

    def close(self) -> None:
        """Remove the local work tree (the repository in Forgejo goes with the cell's other repositories)."""
        shutil.rmtree(self.work, ignore_errors=True)
