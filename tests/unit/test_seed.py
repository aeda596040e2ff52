"""harness.lab.seed: --seed-action, the refs the workflows need, the prepared stand-in repositories (no Forgejo)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import ConfigError, LabError
from harness.lab.seed import (
    _check_ref,
    _check_refs,
    content_key,
    parse_seed_option,
    prepared_repo,
    refs_from_uses,
    stand_in_sources,
)
from harness.scenarios import ACTIONS_DIR, load_all


def test_refs_from_uses():
    uses = ["actions/checkout@v4", "actions/checkout@v3", "docker/setup-qemu-action@v3", "actions/cache/save@v4",
            "./local-action", "docker://alpine:3", "https://code.forgejo.org/actions/checkout@v4", "no-ref/here",
            "single@v1"]
    assert refs_from_uses(uses) == {
        "actions/checkout": {"v4", "v3"},
        "docker/setup-qemu-action": {"v3"},
        "actions/cache": {"v4"},
    }


def test_refs_from_uses_empty():
    assert refs_from_uses([]) == {}


def test_stand_ins_exist():
    found = stand_in_sources()
    assert {"actions/checkout", "docker/setup-qemu-action", "docker/setup-buildx-action", "regress/failing-post",
            "regress/slow-post"} <= set(found)
    assert all((path / "action.yml").is_file() for path in found.values())
    assert all(path.parent.parent == ACTIONS_DIR for path in found.values())


def test_every_action_a_scenario_uses_has_a_stand_in():
    stand_ins = stand_in_sources()
    for scenario in load_all():
        heavy = set(scenario.expect.heavy.repos) if scenario.expect.heavy else set()  # seeded when the cell runs
        missing = set(refs_from_uses(scenario.uses())) - set(stand_ins) - heavy
        assert not missing, f"{scenario.name} uses {missing} with no stand-in in {ACTIONS_DIR} nor heavy_actions"


def test_stand_in_sources_skips_folders_without_action(tmp_path):
    (tmp_path / "o" / "good").mkdir(parents=True)
    (tmp_path / "o" / "good" / "action.yml").write_text("name: good\n")
    (tmp_path / "o" / "empty").mkdir()
    (tmp_path / "file").write_text("")
    assert stand_in_sources(tmp_path) == {"o/good": tmp_path / "o" / "good"}
    assert stand_in_sources(tmp_path / "absent") == {}


def test_parse_seed_option(tmp_path):
    (tmp_path / "checkout").mkdir()
    assert parse_seed_option([f"actions/checkout={tmp_path / 'checkout'}"]) == {
        "actions/checkout": (tmp_path / "checkout").resolve()}
    assert parse_seed_option([]) == {}


@pytest.mark.parametrize("value", ["actions/checkout", "checkout={dir}", "a/b/c={dir}", "actions/checkout="])
def test_parse_seed_option_malformed(tmp_path, value):
    with pytest.raises(ConfigError, match="expected owner/name=PATH"):
        parse_seed_option([value.format(dir=tmp_path)])


def test_parse_seed_option_missing_dir(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        parse_seed_option([f"actions/checkout={tmp_path / 'absent'}"])
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        parse_seed_option([f"actions/checkout={tmp_path / 'file'}"])


def _stand_in(root: Path, text: str = "console.log(1)\n") -> Path:
    (root / "dist").mkdir(parents=True)
    (root / "action.yml").write_text("name: x\nruns:\n  using: node20\n  main: dist/index.js\n")
    (root / "dist" / "index.js").write_text(text)
    return root


def test_content_key_follows_content_and_exec_bit_not_location(tmp_path):
    a = _stand_in(tmp_path / "a")
    b = _stand_in(tmp_path / "b")
    assert content_key(a) == content_key(b)
    (b / "dist" / "index.js").write_text("console.log(2)\n")
    assert content_key(a) != content_key(b)
    c = _stand_in(tmp_path / "c")
    (c / "dist" / "index.js").chmod(0o755)
    assert content_key(a) != content_key(c)


def test_content_key_follows_symlinks(tmp_path):
    a = _stand_in(tmp_path / "a")
    b = _stand_in(tmp_path / "b", text="other\n")
    (b / "dist" / "index.js").unlink()
    (b / "dist" / "index.js").symlink_to(a / "dist" / "index.js")
    assert content_key(a) == content_key(b)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_prepared_repo_is_built_once_and_reproducible(tmp_path):
    source = _stand_in(tmp_path / "src")
    repo, commit = prepared_repo(source, tmp_path / "cache")
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert (repo / "HEAD").read_text().strip() == "ref: refs/heads/main"
    files = subprocess.run(["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", commit],
                           capture_output=True, text=True, check=True).stdout.split()
    assert files == ["action.yml", "dist/index.js"]
    again = prepared_repo(source, tmp_path / "cache")
    assert again == (repo, commit)
    # fixed identity and dates: another cache gives the very same commit for the same files
    assert prepared_repo(_stand_in(tmp_path / "copy"), tmp_path / "other-cache")[1] == commit
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no build dir left behind


@pytest.mark.parametrize("ref", ["v4", "v1.2.3", "releases/v2", "main-2"])
def test_refs_that_can_be_tags(ref):
    _check_ref("a/b", ref)


@pytest.mark.parametrize("ref", ["../x", "v1..2", "-v1", "v1/", "v1.lock", "a b", "v1~1", "", "v1/.x", "a.lock/b",
                                 "a//b"])
def test_refs_that_cannot_be_tags(ref):
    with pytest.raises(LabError, match="cannot be a tag"):
        _check_ref("a/b", ref)


def test_tags_that_cannot_live_beside_each_other():
    _check_refs("a/b", ["v1", "v1.1", "v2/x"])
    with pytest.raises(LabError, match="use both a/b@v1 and a/b@v1/x"):
        _check_refs("a/b", ["v1", "v1/x"])


def _git_repo(path: Path) -> str:
    path.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    (path / "action.yml").write_text("runs: {using: node20, main: main.js}\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "v1"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD:action.yml"], cwd=path, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_seeded_copy_missing_objects_is_refused_with_the_objects_and_the_fix(tmp_path):
    blob = _git_repo(tmp_path / "setup-qemu-action")
    assert parse_seed_option([f"docker/setup-qemu-action={tmp_path / 'setup-qemu-action'}"])  # complete: accepted
    (tmp_path / "setup-qemu-action" / ".git" / "objects" / blob[:2] / blob[2:]).unlink()  # a mirror lacking a blob
    with pytest.raises(ConfigError, match=rf"incomplete \(missing blob {blob}\).*repository corruption.*--refetch"):
        parse_seed_option([f"docker/setup-qemu-action={tmp_path / 'setup-qemu-action'}"])
