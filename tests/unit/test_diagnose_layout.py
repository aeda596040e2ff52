"""harness.diagnose.layout: where a runner's stores are, from its config (the runner's defaults) or given outright;
what is not a runner's store is refused with one line naming the path."""

from __future__ import annotations

import json

import pytest

from harness.diagnose import layout
from harness.errors import ConfigError
from harness.redact import redact


def test_defaults_are_the_runner_s_own_and_inside_home(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("log: {level: info}\n")
    found = layout.from_config(config, home=tmp_path / "home")
    assert found.workdir == tmp_path / "home" / ".cache" / "act"
    assert found.cache_dir == tmp_path / "home" / ".cache" / "actcache"
    assert found.tool_cache == found.workdir / "tool_cache"
    assert found.runner_file == tmp_path / ".runner" and found.cache_used
    assert set(found.nested_in_home()) == {found.workdir, found.cache_dir, found.tool_cache}
    layout.check(found)  # absent stores of a config are fine: the runner has not written them yet


def test_relative_paths_resolve_against_cwd_tool_cache_moves_external_server_unuses_the_store(tmp_path):
    config = tmp_path / "etc" / "config.yaml"
    config.parent.mkdir()
    (tmp_path / "run").mkdir()
    config.write_text("runner: {file: .runner, envs: {RUNNER_TOOL_CACHE: /opt/tools}}\n"
                      "cache: {dir: cache, external_server: 'http://10.0.0.1:4000/'}\nhost: {workdir_parent: work}\n")
    found = layout.from_config(config, cwd=tmp_path / "run", home=tmp_path)
    assert (found.workdir, found.cache_dir, found.runner_file) == (
        tmp_path / "run" / "work", tmp_path / "run" / "cache", tmp_path / "run" / ".runner")
    assert str(found.tool_cache) == "/opt/tools"
    assert not found.cache_used and "external_server" in found.cache_note
    by_default = layout.from_config(config, home=tmp_path)
    assert by_default.workdir == config.parent / "work"  # --cwd defaults to the config's directory


def test_secrets_of_runner_file_and_config_are_registered(tmp_path):
    token, secret = "f" * 40, "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / ".runner").write_text(json.dumps({"id": 1, "uuid": "u" * 36, "token": token, "name": "r"}))
    config = tmp_path / "config.yaml"
    config.write_text(f"runner: {{file: .runner}}\ncache: {{secret: '{secret}'}}\n")
    layout.from_config(config, home=tmp_path)
    assert token not in redact(f"a {token} b") and secret not in redact(f"x{secret}")


@pytest.mark.parametrize(("text", "message"), [
    (None, "no such file"),
    ("a: [1, 2\n", "not YAML (line"),
    ("just a line\n", "not a runner's config (none of log, runner, cache, container, host at the top)"),
    ("runner: 3\n", "runner must be a mapping"),
])
def test_a_bad_config_is_one_line_naming_it(tmp_path, text, message):
    config = tmp_path / "config.yaml"
    if text is not None:
        config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        layout.from_config(config, home=tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(config) in str(caught.value) or message == "runner must be a mapping"


def test_not_a_runner_s_store(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"--workdir .*/etc: not a runner's store"):
        layout.check(layout.from_dirs(tmp_path / "etc", tmp_path / "empty", tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"--cache-dir .*/etc: not a runner's cache store \(no bolt.db"):
        layout.check(layout.from_dirs(tmp_path / "empty", tmp_path / "etc", tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"--home .*/absent: no such directory"):
        layout.check(layout.from_dirs(tmp_path / "empty", tmp_path / "empty", tmp_path / "absent"))
    (tmp_path / "work" / "ab" / ("c" * 62)).mkdir(parents=True)
    layout.check(layout.from_dirs(tmp_path / "work", tmp_path / "empty", tmp_path / "empty"))
