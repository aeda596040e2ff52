"""harness.provenance: the clone lines of a job log, refs resolved in a repository, the runner's clone of each
action (11.x work tree, 12.x bare clone) and what ran for each ``uses:``."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from harness.provenance import (
    ACTIONS_URL,
    SEEDED_COPY,
    ActionOrigin,
    actions_ran,
    clone_lines,
    export_tree,
    resolve_ref,
    runner_clone,
    split_uses,
)

ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e"}
LOG = """2026-12-01T04:52:25.5396389Z regress-12.1.2(version:v12.1.2) received task 2 of job test
2026-12-01T04:52:25.5458662Z   ☁️  git clone 'http://127.0.0.1:39317/myorg/myaction' # ref=v3
2026-12-01T04:52:25.5653064Z   ☁️  git fetch 'http://127.0.0.1:39317/myorg/myaction' # ref=v3
2026-12-01T04:52:25.5458662Z   ☁️  git clone 'http://mirror.test/git/docker/setup-qemu-action.git' # ref=v3
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def action(tmp_path):
    """A work tree: tag v3 at the first commit, main one commit later; (path, v3 commit, head)."""
    work = tmp_path / "action"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "action.yml").write_text("name: a\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "one")
    git(work, "tag", "-a", "v3", "-m", "annotated release")
    tagged = git(work, "rev-parse", "HEAD")
    (work / "action.yml").write_text("name: b\n")
    git(work, "commit", "-qam", "two")
    return work, tagged, git(work, "rev-parse", "HEAD")


def key(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{digest[:2]}/{digest[2:]}"


def test_split_uses():
    assert split_uses("actions/checkout@v4") == ("actions/checkout", "v4")
    assert split_uses("actions/cache/save@v4") == ("actions/cache", "v4")
    for other in ("./local", "docker://alpine:3", "https://x.test/a/b@v1", "no-ref/here", "single@v1"):
        assert split_uses(other) is None


def test_clone_lines_by_repo_and_ref():
    assert clone_lines(LOG) == {"myorg/myaction@v3": "http://127.0.0.1:39317/myorg/myaction",
                                "docker/setup-qemu-action@v3": "http://mirror.test/git/docker/setup-qemu-action.git"}
    assert clone_lines(None) == {}


def test_resolve_ref_peels_an_annotated_tag_and_prefers_it(action, tmp_path):
    work, tagged, head = action
    git(work, "branch", "v3-branch")
    assert resolve_ref(work / ".git", "v3") == tagged
    assert resolve_ref(work / ".git", "main") == head
    assert resolve_ref(work / ".git", tagged[:12]) == tagged
    assert resolve_ref(work / ".git", "v9") is None
    assert resolve_ref(tmp_path / "nothing", "v3") is None


def test_runner_clone_11_work_tree_and_12_bare_clone(action, tmp_path):
    work, _tagged, _head = action
    workdir = tmp_path / "workdir"
    url = "http://127.0.0.1:1/myorg/myaction"
    assert runner_clone(workdir, "myorg/myaction@v3", url) is None
    bare = workdir / key(url)
    bare.parent.mkdir(parents=True)
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    assert runner_clone(workdir, "myorg/myaction@v3", url) == (bare, False)
    tree = workdir / key("myorg/myaction@v3")
    git(tmp_path, "clone", "-q", "--branch", "v3", str(work), str(tree))
    assert runner_clone(workdir, "myorg/myaction@v3", url) == (tree / ".git", True)


def test_what_ran_from_a_12_runner_clone_is_the_tag_not_the_head(action, tmp_path):
    work, tagged, _head = action
    workdir = tmp_path / "workdir"
    url = "http://127.0.0.1:39317/myorg/myaction"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(workdir / key(url)))
    origins = {"myorg/myaction": ActionOrigin(SEEDED_COPY, str(work), None)}
    [ran] = actions_ran(["myorg/myaction@v3"], origins, LOG, workdir)
    assert (ran.commit, ran.commit_from, ran.kind, ran.source, ran.clone_url) == (
        tagged, "runner clone", SEEDED_COPY, str(work), url)
    assert ran.to_json()["from"] == str(work) and "git_dir" not in ran.to_json()


def test_what_ran_from_an_11_work_tree_is_its_checked_out_commit(action, tmp_path):
    work, tagged, head = action
    tree = tmp_path / "workdir" / key("myorg/myaction@v3")
    git(tmp_path, "clone", "-q", str(work), str(tree))
    git(tree, "checkout", "-q", tagged)
    git(tree, "tag", "-f", "v3", head)  # the work tree's HEAD is what ran, whatever its tags say now
    [ran] = actions_ran(["myorg/myaction@v3"], {}, LOG, tmp_path / "workdir")
    assert (ran.commit, ran.commit_from, ran.kind) == (tagged, "runner clone", "not seeded by the suite")


def test_without_a_runner_clone_the_lab_repository_resolves_the_ref(action, tmp_path):
    work, tagged, _head = action
    served = tmp_path / "served.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(served))
    origins = {"myorg/myaction": ActionOrigin(SEEDED_COPY, str(work), served)}
    [ran] = actions_ran(["myorg/myaction@v3", "./local", "docker://alpine"], origins, None, None)
    assert (ran.commit, ran.commit_from, ran.git_dir) == (tagged, "lab repository", served)


def test_unknown_commit_is_said_not_guessed(tmp_path):
    origins = {"docker/setup-qemu-action": ActionOrigin(ACTIONS_URL, "http://mirror.test/git")}
    [ran] = actions_ran(["docker/setup-qemu-action@v3"], origins, LOG, tmp_path)
    assert ran.commit is None and ran.commit_from.startswith("unknown") and ran.git_dir is None
    assert ran.clone_url == "http://mirror.test/git/docker/setup-qemu-action.git"


def test_export_tree_writes_the_commits_files(action, tmp_path):
    work, tagged, _head = action
    assert export_tree(work / ".git", tagged, tmp_path / "out")
    assert (tmp_path / "out" / "action.yml").read_text() == "name: a\n"
    assert not export_tree(work / ".git", "0" * 40, tmp_path / "bad")
