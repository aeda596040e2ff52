"""harness.diagnose.upstream: a tag whose cached commit is not the remote's, and whether the remote's descends from
it, read in a temporary repository (the runner's clone is never written)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.diagnose import action_clones, upstream
from harness.runners import clones

from .test_clones import at, git, remote_repo


def snapshot(path: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in path.rglob("*")}


def a_runner_clone(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An 11.x-shaped work tree of ``regress/movetag@v1`` (a file:// remote) and the remote itself."""
    src = remote_repo(tmp_path, "a", annotated=False)
    url = src.as_uri()
    work = tmp_path / "work"
    clone = at(work, "regress/movetag@v1")
    git("clone", "-q", url, str(clone))
    return src, work, clone


def test_orphan_move_is_stale_and_does_not_descend_a_descendant_does(tmp_path):
    src, work, clone = a_runner_clone(tmp_path)
    cached = git("rev-parse", "HEAD", cwd=src)
    (src / "a").write_text("B")
    git("commit", "-qam", "B", cwd=src)
    git("tag", "-f", "v2", cwd=src)
    git("checkout", "-q", "--orphan", "other", cwd=src)
    git("commit", "-qm", "C", cwd=src)
    git("tag", "-f", "v1", cwd=src)  # v1 → C, an orphan: not a descendant of what the clone has
    git("tag", "-a", "-m", "x", "v3", "HEAD~0", cwd=src)
    orphan = git("rev-parse", "HEAD", cwd=src)
    found, _owner = action_clones.read_clones(work)
    before = snapshot(clone)
    (result,) = upstream.check(found)
    assert snapshot(clone) == before  # nothing written into the runner's clone
    assert result.error == "" and result.seconds is not None
    (v1,) = result.tags
    assert (v1.tag, v1.cached, v1.upstream, v1.stale, v1.descends) == ("v1", cached, orphan, True, False)
    git("tag", "-f", "v1", "v2", cwd=src)  # v1 → B, a descendant
    (again,) = upstream.check(found)
    assert again.tags[0].descends is True and again.tags[0].stale


def test_an_unreachable_remote_is_unknown_with_the_reason(tmp_path):
    _src, work, clone = a_runner_clone(tmp_path)
    git("remote", "set-url", "origin", (tmp_path / "gone").as_uri(), cwd=clone)
    found, _owner = action_clones.read_clones(work)
    (result,) = upstream.check(found)
    assert result.tags == () and result.error.startswith("git ls-remote: ") and "\n" not in result.error
    assert result.to_json()["ls_remote_seconds"] is None


def test_a_clone_owned_by_someone_else_is_read_with_safe_directory(tmp_path):
    _src, work, clone = a_runner_clone(tmp_path)
    subprocess.run(["chown", "-R", "65534:65534", str(clone)], check=False)
    found, _owner = action_clones.read_clones(work)
    assert upstream.cached_tags(found[0], 30) == {"v1": clones.head(clone / ".git")}
