"""harness.diagnose.action_clones: 12.x bare clones confirmed by sha256(URL), their worktrees (prunable or not),
11.x work trees beside them not read by the 12.x owner."""

from __future__ import annotations

import shutil

from harness.diagnose import action_clones
from harness.runners import clones

from .test_clones import at, git, remote_repo


def test_a_12x_store_upgraded_from_11x(tmp_path):
    src = remote_repo(tmp_path)
    url = src.as_uri()
    work = tmp_path / "work"
    v11 = at(work, f"{url}@v1")  # uses: with a full URL
    git("clone", "-q", url, str(v11))
    bare = at(work, url)
    git("clone", "-q", "--bare", url, str(bare))
    head = git("rev-parse", "HEAD", cwd=src)
    live, gone = work / "0a" / ("1" * 62), work / "0b" / ("2" * 62)
    for tree in (live, gone):
        git("-C", str(bare), "worktree", "add", "-f", "--end-of-options", str(tree), head)
    shutil.rmtree(bare / "worktrees" / gone.name)  # its record pruned: git no longer knows it
    stray = work / "0c" / ("3" * 62)
    git("-C", str(bare), "worktree", "add", "-f", "--end-of-options", str(stray), head)
    shutil.rmtree(stray)  # the directory gone, the record left: `git worktree prune` drops it

    found, owner = action_clones.read_clones(work)
    by_path = {c.path: c for c in found}
    assert owner == "12.x" and set(by_path) == {v11, bare, live, gone}
    assert by_path[v11].kind == clones.V11_WORKTREE and not by_path[v11].used_by_owner
    assert by_path[v11].ref == f"{url}@v1" and by_path[v11].confirmed
    assert by_path[bare].kind == clones.V12_BARE and by_path[bare].confirmed and by_path[bare].ref == url
    assert by_path[bare].used_by_owner and dict(by_path[bare].tags).keys() == {"v1", "v2"}
    assert by_path[live].kind == clones.V12_WORKTREE and by_path[live].bare == bare and not by_path[live].prunable
    assert by_path[live].head == head and by_path[live].remote == url
    assert by_path[gone].prunable
    assert action_clones.dangling_worktree_records(found) == [(bare, bare / "worktrees" / stray.name)]
    assert by_path[v11].to_json()["kind"] == "v11-worktree" and by_path[v11].bytes > 0


def test_owner_from_content(tmp_path):
    assert action_clones.read_clones(tmp_path) == ([], None)
    src = remote_repo(tmp_path)
    git("clone", "-q", src.as_uri(), str(at(tmp_path / "work", "o/r@v1")))
    found, owner = action_clones.read_clones(tmp_path / "work")
    assert owner == "11.x" and found[0].used_by_owner
