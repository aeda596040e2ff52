"""harness.lab.seed: parsing --seed-action and the refs the workflows need (no git, no Forgejo)."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.lab.seed import _git_env, parse_seed_option, refs_from_uses, stand_in_sources
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
        missing = set(refs_from_uses(scenario.uses())) - set(stand_ins)
        assert not missing, f"{scenario.name} uses {missing} with no stand-in in {ACTIONS_DIR}"


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


def test_git_env_keeps_token_off_the_command_line():
    env = _git_env("tok-canary")
    assert env["GIT_CONFIG_VALUE_0"] == "Authorization: token tok-canary"
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader" and env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
