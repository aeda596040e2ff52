"""harness.faults.action_repo: a cell's copy of a stand-in action, moved by real git pushes (to a local bare
repository standing in for Forgejo)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from harness.faults import action_repo
from harness.faults.action_repo import ActionCopy, ActionRepoError
from harness.scenarios import ACTIONS_DIR, ActionChange


class FakeForge:
    """``create_repo`` makes an empty bare repository under ``root/<owner>/<name>.git`` (what Forgejo serves)."""

    def __init__(self, root: Path, owner: str) -> None:
        self.root, self.owner, self.created = root, owner, []

    def create_repo(self, name, owner=None):
        self.created.append((owner, name))
        subprocess.run(["git", "init", "-q", "--bare", str(self.root / self.owner / f"{name}.git")], check=True)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def copy(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path / "cache"))
    forge = FakeForge(tmp_path / "forge", "admin")
    made = ActionCopy.create(forge, base_url=str(tmp_path / "forge"), user="admin", token="", owner="admin", org=None,
                             action="regress/movetag", source=ACTIONS_DIR / "regress" / "movetag",
                             name="movetag-x", tags=("v1",))
    made.remote = tmp_path / "forge" / "admin" / "movetag-x.git"
    yield made
    made.close()
    assert not made.work.exists()


def test_create_pushes_the_stand_in_with_its_tag(copy):
    assert copy.copy == "admin/movetag-x"
    assert git(copy.remote, "rev-parse", "v1") == git(copy.remote, "rev-parse", "main") == copy.head()
    version = copy.version("v1")
    assert (version.action, version.ref, version.commit, version.marker) == ("regress/movetag", "v1", copy.head(), "A")
    assert version.prefix == "movetag-version:"


def test_descendant_then_orphan_move_the_tag_as_a_maintainer_would(copy):
    a = copy.head()
    said = copy.apply(ActionChange("descendant", "regress/movetag", ("v1",)), "B")
    b = git(copy.remote, "rev-parse", "v1")
    assert b != a and git(copy.remote, "rev-parse", "main") == b
    assert git(copy.remote, "rev-list", "--parents", "-n1", b).split()[1:] == [a]  # B's parent is A
    assert git(copy.remote, "show", "v1:version") == "B" and copy.versions()[0].marker == "B"
    assert said == f"admin/movetag-x: main advanced to the descendant {b[:12]} (was {a[:12]}); v1 re-pointed to it"
    copy.apply(ActionChange("orphan", "regress/movetag", ("v1",)), "C")
    c = git(copy.remote, "rev-parse", "v1")
    assert git(copy.remote, "rev-list", "--parents", "-n1", c).split() == [c]  # a root commit: no parent
    assert git(copy.remote, "rev-parse", "main") == c and copy.version("v1").marker == "C"
    assert subprocess.run(["git", "--git-dir", str(copy.remote), "merge-base", b, c], capture_output=True).returncode == 1
    assert len(copy.pushes) == 3


def test_a_clone_that_fetches_without_force_cannot_follow_the_orphan(copy, tmp_path):
    """What runner 11.x meets (go-git fetches refs/*:refs/* without force): git itself refuses both refs."""
    copy.apply(ActionChange("descendant", "regress/movetag", ("v1",)), "B")
    cached = tmp_path / "cached.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(copy.remote), str(cached)], check=True)
    copy.apply(ActionChange("orphan", "regress/movetag", ("v1",)), "C")
    fetch = subprocess.run(["git", "--git-dir", str(cached), "fetch", str(copy.remote), "refs/*:refs/*"],
                           capture_output=True, text=True)
    assert fetch.returncode != 0 and "rejected" in fetch.stderr
    assert git(cached, "show", "v1:version") == "B"  # the stale copy
    forced = subprocess.run(["git", "--git-dir", str(cached), "fetch", str(copy.remote), "+refs/*:refs/*"],
                            capture_output=True, text=True)
    assert forced.returncode == 0 and git(cached, "show", "v1:version") == "C"


def test_add_refs_adds_tags_on_the_current_commit(copy):
    said = copy.apply(ActionChange("add_refs", "regress/movetag", ("v1",), 5), "R")
    tags = git(copy.remote, "tag", "--list", "R-*").split()
    assert sorted(tags) == [f"R-{i}" for i in range(5)]
    assert {git(copy.remote, "rev-parse", t) for t in tags} == {copy.head()}
    assert said.startswith("admin/movetag-x: 5 tags R-0…R-4 added on ")


def test_a_failing_git_names_the_copy_and_git_s_words(copy):
    with pytest.raises(ActionRepoError, match=r"git rev-parse refs/tags/nope.* for the action copy admin/movetag-x failed"):
        copy.version("nope")


def test_the_token_travels_in_git_s_environment_only():
    auth = action_repo.basic_auth("admin", "s3cret")
    assert auth == "Basic " + base64.b64encode(b"admin:s3cret").decode()
    env = action_repo._env(auth)
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("http.extraHeader", f"Authorization: {auth}")
    assert "http_proxy" not in {k.lower() for k in action_repo._env("")} and "GIT_CONFIG_COUNT" not in action_repo._env("")
