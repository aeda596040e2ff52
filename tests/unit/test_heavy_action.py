"""The heavy stand-in generator: ref count, sizes, history, determinism, a working action."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.faults.heavy_action import USED_REF, HeavySpec, bundles, copy_repo, heavy_repo, ref_commits

SMALL = HeavySpec(refs=30, commits=6, bundle_kb=40, churn=0.25, marker="unit")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_refs_and_history(tmp_path: Path) -> None:
    built = heavy_repo(SMALL, tmp_path)
    refs = git(built.path, "for-each-ref", "--format=%(refname)").split()
    assert built.ref_count == len(refs) == SMALL.refs + 2  # the extra tags, main and v1
    assert sum(r.startswith("refs/tags/v0.") for r in refs) == SMALL.refs
    assert git(built.path, "rev-parse", f"refs/tags/{USED_REF}").strip() == built.head
    assert git(built.path, "rev-list", "--count", "main").strip() == str(SMALL.commits)
    # refs are spread over the history: the oldest tag sits on the first commit, not on the head
    first = git(built.path, "rev-list", "--max-parents=0", "main").strip()
    assert git(built.path, "rev-parse", "refs/tags/v0.0.0").strip() == first != built.head


def test_branches_instead_of_tags(tmp_path: Path) -> None:
    built = heavy_repo(HeavySpec(refs=12, commits=3, bundle_kb=8, ref_kind="branches"), tmp_path)
    heads = git(built.path, "for-each-ref", "--format=%(refname)", "refs/heads/release").split()
    assert len(heads) == 12


def test_bundle_size_and_churn() -> None:
    history = list(bundles(SMALL))
    assert len(history) == SMALL.commits
    for bundle in history:
        assert abs(len(bundle) - SMALL.bundle_kb * 1024) < 200  # within one line of the asked size
    old, new = history[0].splitlines(), history[1].splitlines()
    changed = sum(a != b for a, b in zip(old[1:], new[1:], strict=True))
    assert changed == round(SMALL.churn * SMALL.lines)
    assert new[0] == b'console.log("heavy-action: unit commit 2");'


def test_same_spec_same_commits_elsewhere(tmp_path: Path) -> None:
    one = heavy_repo(SMALL, tmp_path / "a")
    two = heavy_repo(SMALL, tmp_path / "b")
    assert one.head == two.head
    assert git(one.path, "show-ref") == git(two.path, "show-ref")
    other = heavy_repo(HeavySpec(refs=30, commits=6, bundle_kb=40, churn=0.25, marker="other"), tmp_path / "a")
    assert other.head != one.head and other.path != one.path


def test_built_once(tmp_path: Path) -> None:
    first = heavy_repo(SMALL, tmp_path)
    stamp = (first.path / "packed-refs").stat().st_mtime_ns
    again = heavy_repo(SMALL, tmp_path)
    assert again.path == first.path and (again.path / "packed-refs").stat().st_mtime_ns == stamp


def test_pack_grows_with_history(tmp_path: Path) -> None:
    short = heavy_repo(HeavySpec(refs=0, commits=2, bundle_kb=64, churn=0.1), tmp_path)
    long = heavy_repo(HeavySpec(refs=0, commits=20, bundle_kb=64, churn=0.1), tmp_path)
    assert long.pack_bytes > short.pack_bytes
    # deltas, not full copies: 20 commits of a 64 KB bundle stay far below 20 full bundles
    assert long.pack_bytes < 20 * 64 * 1024 / 2


def test_a_working_action(tmp_path: Path) -> None:
    built = heavy_repo(SMALL, tmp_path / "cache")
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", "--branch", USED_REF, str(built.path), str(work)], check=True,
                   capture_output=True)
    assert "using: node20" in (work / "action.yml").read_text()
    assert "main: dist/index.js" in (work / "action.yml").read_text()
    first = (work / "dist" / "index.js").read_text().splitlines()[0]
    assert first == f'console.log("heavy-action: unit commit {SMALL.commits}");'


def test_copy_is_a_valid_repo(tmp_path: Path) -> None:
    built = heavy_repo(SMALL, tmp_path / "cache")
    copy_repo(built.path, tmp_path / "copy.git")
    git(tmp_path / "copy.git", "fsck", "--connectivity-only", "--no-progress")
    assert git(tmp_path / "copy.git", "rev-parse", "main").strip() == built.head


def test_ref_commits_spread() -> None:
    spread = ref_commits(HeavySpec(refs=4, commits=8, bundle_kb=1))
    assert [n for _, n in spread] == [1, 3, 5, 7]


@pytest.mark.parametrize("data, message", [
    ({"refs": -1}, "refs >= 0"),
    ({"churn": 2}, "churn"),
    ({"ref_kind": "notes"}, "ref_kind"),
    ({"size": 3}, "unknown keys"),
    ({"marker": "a b"}, "marker"),
    ([1], "expected a mapping"),
])
def test_parse_errors(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HeavySpec.parse(data, "expect.yml heavy_actions.shape")


def test_parse() -> None:
    assert HeavySpec.parse({"refs": "3000", "commits": 400}, "x") == HeavySpec(refs=3000, commits=400)
