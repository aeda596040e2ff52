"""harness.diagnose.findings: each finding's cost and its clean-up command, "stop the runner first" where the runner
may be using what it removes."""

from __future__ import annotations

import shutil
from dataclasses import replace

from harness.diagnose import action_clones, findings, layout

from .test_clones import at, git, remote_repo


def test_worktrees_workspaces_and_many_refs(tmp_path):
    src = remote_repo(tmp_path)
    url = src.as_uri()
    work = tmp_path / "work"
    bare = at(work, url)
    git("clone", "-q", "--bare", url, str(bare))
    head = git("rev-parse", "HEAD", cwd=src)
    live, gone, stray = (work / "0a" / ("1" * 62), work / "0b" / ("2" * 62), work / "0c" / ("3" * 62))
    for tree in (live, gone, stray):
        git("-C", str(bare), "worktree", "add", "-f", "--end-of-options", str(tree), head)
    shutil.rmtree(bare / "worktrees" / gone.name)
    shutil.rmtree(stray)
    found, owner = action_clones.read_clones(work)
    by_kind = {f.kind: f for f in findings.clone_findings(found, owner)}
    assert set(by_kind) == {"leftover-worktree", "prunable-worktree"}
    assert by_kind["leftover-worktree"].command == (
        f"git -c safe.directory='*' -C {bare} worktree remove --force -- {live}")
    assert by_kind["leftover-worktree"].stop_runner_first and not by_kind["prunable-worktree"].stop_runner_first
    assert by_kind["prunable-worktree"].command == f"rm -rf -- {gone}" and by_kind["prunable-worktree"].bytes > 0
    (records,) = findings.dangling_findings(action_clones.dangling_worktree_records(found))
    assert records.command == f"git -c safe.directory='*' -C {bare} worktree prune" and records.stop_runner_first
    heavy = replace(next(c for c in found if c.path == bare), refs=3000)
    (many,) = findings.clone_findings([heavy], owner)
    assert many.kind == "many-refs" and not many.cleanable and "3000 refs" in many.what
    workspace = work / ("ab" * 8)
    (workspace / "hostexecutor").mkdir(parents=True)
    (workspace / "hostexecutor" / "f").write_text("12345")
    (left,) = findings.workspace_findings(work, [workspace])
    assert (left.bytes, left.command, left.stop_runner_first) == (5, f"rm -rf -- {workspace}", True)


def test_a_path_with_a_space_is_quoted_and_an_unused_cache_store_gives_no_clean_up(tmp_path):
    assert findings.rm(tmp_path / "a b") == f"rm -rf -- '{tmp_path}/a b'"
    unused = replace(layout.from_dirs(tmp_path, tmp_path, tmp_path), cache_used=False)
    assert findings.cache_findings(unused, [object()]) == []  # type: ignore[list-item]
