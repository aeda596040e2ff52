"""harness.runners.clones: a clone's kind, refs (loose and packed), remote and the uses: an 11.x work tree serves."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.runners import clones


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def remote_repo(tmp_path: Path, file: str = "action.yml", *, annotated: bool = True) -> Path:
    """A repository with one commit ``A`` (``file``), tag ``v1`` and, when ``annotated``, an annotated ``v2``."""
    src = tmp_path / "src"
    git("init", "-q", str(src))
    (src / file).write_text("name: a\n")
    git("add", ".", cwd=src)
    git("commit", "-qm", "A", cwd=src)
    git("tag", "v1", cwd=src)
    if annotated:
        git("tag", "-a", "-m", "annotated", "v2", cwd=src)
    return src


def at(workdir: Path, text: str) -> Path:
    digest = clones.sha256_hex(text)
    return workdir / digest[:2] / digest[2:]


def test_kinds_refs_and_the_uses_string_of_an_11x_work_tree(tmp_path):
    src = remote_repo(tmp_path)
    url = "http://forge.example/regress/movetag"
    work = tmp_path / "work"
    v11 = at(work, "regress/movetag@v1")
    git("clone", "-q", str(src), str(v11))
    git("remote", "set-url", "origin", url, cwd=v11)
    git("pack-refs", "--all", cwd=v11)  # the tags now live in packed-refs only
    assert not (v11 / ".git" / "refs" / "tags" / "v1").exists()
    v12 = at(work, url)
    git("clone", "-q", "--bare", str(src), str(v12))
    git("remote", "set-url", "origin", url, cwd=v12)
    assert {p: clones.kind(p) for p in clones.clone_dirs(work)} == {v11: clones.V11_WORKTREE, v12: clones.V12_BARE}
    repo = clones.git_dir(v11)
    assert set(clones.tags(repo)) == {"v1", "v2"} and clones.origin_url(repo) == url
    head = clones.head(repo)
    assert head == git("rev-parse", "HEAD", cwd=src)
    assert clones.served_ref(v11, url, clones.refs(repo), head) == "regress/movetag@v1"
    other = at(work, "regress/movetag/sub@v1")  # a uses: with a path cannot be recovered
    assert clones.served_ref(other, url, clones.refs(repo), head) is None
    assert clones.sha256_hex(clones.origin_url(v12)) == clones.path_hash(v12)


def test_a_loose_ref_wins_over_packed_refs_and_the_config_is_read_with_sections(tmp_path):
    repo = tmp_path / "r"
    (repo / "refs" / "tags").mkdir(parents=True)
    (repo / "packed-refs").write_text("# pack-refs with: peeled fully-peeled sorted\n" + "a" * 40 + " refs/tags/v1\n^"
                                      + "b" * 40 + "\n" + "c" * 40 + " refs/tags/v2\n")
    (repo / "refs" / "tags" / "v2").write_text("d" * 40 + "\n")
    (repo / "config").write_text('[core]\n\tbare = true\n[remote "upstream"]\n\turl = http://x/a/b\n'
                                 '[remote "origin"]\n\turl = http://y/o/r.git\n')
    assert clones.tags(repo) == {"v1": "a" * 40, "v2": "d" * 40}
    assert clones.origin_url(repo) == "http://y/o/r.git" and clones.repo_slug("http://y/o/r.git") == "o/r"
    assert clones.kind(repo) == clones.OTHER and clones.git_dir(repo) is None
