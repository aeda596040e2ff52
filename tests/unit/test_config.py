"""harness.config: option precedence (CLI > env > ini > default) and validation in build()."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import OPTIONS, Setting, build, resolve_raw
from harness.errors import ConfigError
from harness.versions import Version


def no_cli(dest):
    return None


def raw(environ=None, cli=None, ini=None, **values):
    """resolve_raw with fake callables, then overrides given as ``option_name=value`` (``-`` spelled ``_``)."""
    found = resolve_raw(cli or no_cli, environ or {}, ini)
    for key, value in values.items():
        found[key.replace("_", "-")] = Setting(value, "test")
    return found


def settings(environ=None, **values):
    return build(raw(**values), environ or {})


# -- precedence ------------------------------------------------------------------------------------------


def test_option_names():
    opt = next(o for o in OPTIONS if o.name == "runner-version")
    assert (opt.env, opt.ini, opt.dest) == ("REGRESS_RUNNER_VERSION", "regress_runner_version", "regress_runner_version")


def test_cli_beats_env_and_ini():
    cli = {"regress_forgejo_version": "13.0.5"}.get
    found = resolve_raw(cli, {"REGRESS_FORGEJO_VERSION": "12.0.0"}, lambda name: "11.0.15")
    assert found["forgejo-version"] == Setting("13.0.5", "command line")


def test_env_beats_ini():
    found = resolve_raw(no_cli, {"REGRESS_FORGEJO_VERSION": "12.0.0"}, lambda name: "11.0.15")
    assert found["forgejo-version"] == Setting("12.0.0", "env REGRESS_FORGEJO_VERSION")


def test_ini_beats_default():
    found = resolve_raw(no_cli, {}, {"regress_evidence": "always"}.get)
    assert found["evidence"] == Setting("always", "ini regress_evidence")


def test_default_when_nothing_given():
    found = resolve_raw(no_cli, {}, None)
    assert found["evidence"] == Setting("on-failure", "default")
    assert found["repeat"] == Setting("1", "default")
    assert found["forgejo-version"] == Setting(None, "default")
    assert set(found) == {o.name for o in OPTIONS}


def test_empty_env_and_empty_cli_list_fall_through():
    cli = {"regress_runner_version": []}.get
    found = resolve_raw(cli, {"REGRESS_RUNNER_VERSION": ""}, {"regress_runner_version": ["11.3.1"]}.get)
    assert found["runner-version"] == Setting(["11.3.1"], "ini regress_runner_version")


@pytest.mark.parametrize(("text", "value"), [("1", True), ("yes", True), ("0", False), ("false", False), ("No", False)])
def test_flag_from_env(text, value):
    found = resolve_raw(no_cli, {"REGRESS_ALLOW_DOWNLOAD": text}, None)
    assert found["allow-download"] == Setting(value, "env REGRESS_ALLOW_DOWNLOAD")


def test_flag_from_ini_string():
    found = resolve_raw(no_cli, {}, {"regress_keep_repos": "false"}.get)
    assert found["keep-repos"].value is False


def test_false_cli_flag_falls_through_to_env():
    found = resolve_raw({"regress_allow_download": False}.get, {"REGRESS_ALLOW_DOWNLOAD": "1"}, None)
    assert found["allow-download"] == Setting(True, "env REGRESS_ALLOW_DOWNLOAD")


def test_resolve_raw_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("REGRESS_EVIDENCE", "never")
    assert resolve_raw(no_cli)["evidence"].source == "env REGRESS_EVIDENCE"


# -- build(): valid values -------------------------------------------------------------------------------


def test_build_defaults():
    s = settings()
    assert s.runner_versions == () and s.forgejo_version is None and not s.existing
    assert s.evidence == "on-failure" and s.repeat == 1 and s.setup_budget is None
    assert s.evidence_dir == Path("artifacts/evidence")


def test_build_lists_from_env_string():
    s = build(raw({"REGRESS_RUNNER_VERSION": "11.3.1, v12.1.2", "REGRESS_RUNNER_WITHOUT": "12.1.2=git,12.1.2=node"}), {})
    assert s.runner_versions == (Version(11, 3, 1), Version(12, 1, 2))
    assert s.runner_without == {Version(12, 1, 2): ("git", "node")}


def test_build_runner_binaries(tmp_path):
    s = settings(runner_binary=[f"12.1.2={tmp_path}/r"])
    assert s.runner_binaries == {Version(12, 1, 2): tmp_path / "r"}


@pytest.mark.parametrize(("text", "budget"), [("cold=60,warm=20", (60.0, 20.0)), ("45", (45.0, 45.0)),
                                              ("cold=30", (30.0, 30.0)), ("2.5", (2.5, 2.5))])
def test_setup_budget(text, budget):
    assert settings(setup_budget=text).setup_budget == budget


def test_setup_budget_with_space_after_comma():
    assert settings(setup_budget="cold=60, warm=20").setup_budget == (60.0, 20.0)


def test_existing_instance(tmp_path):
    token = tmp_path / "token"
    token.write_text("t\n")
    s = settings(forgejo_url="https://forgejo.example/", forgejo_token_file=str(token),
                 runner_label=["12.1.2:native=my-runner", "12.1.2:docker=my-docker"])
    assert s.existing and s.forgejo_url == "https://forgejo.example"
    assert s.runner_labels == {(Version(12, 1, 2), "native"): "my-runner", (Version(12, 1, 2), "docker"): "my-docker"}
    assert s.versions_to_run([Version(9, 9, 9)]) == (Version(12, 1, 2),)


def test_forgejo_token_from_env_is_enough():
    s = settings({"FORGEJO_TOKEN": "x"}, forgejo_url="http://h:3000", runner_label=["12.1.2:native=l"])
    assert s.forgejo_token_file is None and s.existing


def test_gate_versions_added_to_run():
    s = settings(runner_version=["11.3.1"], baseline="11.3.1", candidate="v12.1.2", gate_on="setup,cache", repeat="3")
    assert s.versions_to_run([]) == (Version(11, 3, 1), Version(12, 1, 2))
    assert s.gate_on == ("setup", "cache") and s.repeat == 3


def test_versions_to_run_defaults_to_available():
    available = [Version(11, 3, 1), Version(12, 1, 2)]
    assert settings().versions_to_run(available) == tuple(available)


def test_sources_kept():
    s = build(raw({"REGRESS_EVIDENCE": "always"}), {})
    assert s.sources["evidence"] == Setting("always", "env REGRESS_EVIDENCE")


# -- build(): errors ---------------------------------------------------------------------------------------


def _error(environ=None, **values) -> str:
    with pytest.raises(ConfigError) as info:
        settings(environ, **values)
    return str(info.value)


@pytest.mark.parametrize("value", [["twelve"], ["12.1"], ["12.1.2", "x.y.z"]])
def test_bad_runner_version(value):
    assert "--runner-version (test)" in _error(runner_version=value)


def test_bad_version_names_env_source():
    with pytest.raises(ConfigError, match=r"--forgejo-version \(env REGRESS_FORGEJO_VERSION\)"):
        build(raw({"REGRESS_FORGEJO_VERSION": "latest"}), {})


@pytest.mark.parametrize("label", ["12.1.2=foo", "12.1.2:windows=foo", "12.1.2:native=", "native=foo", "x:native=foo"])
def test_bad_runner_label(label):
    message = _error({"FORGEJO_TOKEN": "t"}, forgejo_url="http://h", runner_label=[label])
    assert "--runner-label" in message


def test_runner_label_without_url():
    assert "give --forgejo-url too" in _error(runner_label=["12.1.2:native=l"])


def test_url_without_token():
    assert "--forgejo-url needs a token" in _error(forgejo_url="http://h", runner_label=["12.1.2:native=l"])


def test_url_without_labels():
    assert "needs --runner-label" in _error({"FORGEJO_TOKEN": "t"}, forgejo_url="http://h")


def test_url_scheme():
    assert "must start with http:// or https://" in _error({"FORGEJO_TOKEN": "t"}, forgejo_url="forgejo.example")


def test_missing_token_file(tmp_path):
    assert "does not exist" in _error(forgejo_url="http://h", forgejo_token_file=str(tmp_path / "nope"),
                                      runner_label=["12.1.2:native=l"])


def test_user_without_password_file():
    assert "go together" in _error(forgejo_user="me")


@pytest.mark.parametrize(("baseline", "candidate"), [("12.1.2", "12.1.2"), ("v12.1.2", "12.1.2")])
def test_baseline_equals_candidate(baseline, candidate):
    assert "nothing to compare" in _error(baseline=baseline, candidate=candidate)


def test_baseline_without_candidate():
    assert "--baseline and --candidate go together" in _error(baseline="11.3.1")


@pytest.mark.parametrize("value", ["sometimes", "", "ALWAYS"])
def test_bad_evidence(value):
    assert "--evidence (test)" in _error(evidence=value)


@pytest.mark.parametrize("value", ["fast", "cold=x", "warm=20", "cold=60,warm", "0", "cold=10,warm=-1"])
def test_bad_setup_budget(value):
    assert "--setup-budget" in _error(setup_budget=value)


@pytest.mark.parametrize("value", ["0", "-2", "two", None])
def test_bad_repeat(value):
    assert "--repeat" in _error(repeat=value)


def test_bad_gate_on():
    assert "unknown ['memory']" in _error(gate_on="setup,memory")


@pytest.mark.parametrize("item", ["12.1.2", "12.1.2="])
def test_bad_runner_without(item):
    assert "is not VERSION=TOOL" in _error(runner_without=[item])


def test_bad_runner_binary():
    assert "is not VERSION=PATH" in _error(runner_binary=["/usr/bin/forgejo-runner"])


def test_actions_url():
    assert settings(actions_url="http://127.0.0.1:8080/mirror/").actions_url == "http://127.0.0.1:8080/mirror"
    assert settings().actions_url is None


@pytest.mark.parametrize(("values", "message"), [
    ({"actions_url": "file:///srv/git"}, "must be an http:// or https:// URL"),
    ({"actions_url": "http://m.test", "seed_action": ["actions/checkout=/tmp"]}, "exclude each other"),
])
def test_bad_actions_url(values, message):
    assert message in _error(**values)


def test_actions_url_is_for_the_lab(tmp_path):
    token = tmp_path / "t"
    token.write_text("x")
    message = _error(actions_url="http://m.test", forgejo_url="http://f.test", forgejo_token_file=str(token),
                     runner_label=["12.1.2:native=n"])
    assert "not with --forgejo-url" in message


def test_warm_up_options():
    assert (settings().warm_up, settings().warm_up_repos) == (False, 3)
    s = settings(warm_up=True, warm_up_repos="4")
    assert (s.warm_up, s.warm_up_repos) == (True, 4)
    with pytest.raises(ConfigError, match=r"--warm-up-repos \(test\): must be at least 2"):
        settings(warm_up=True, warm_up_repos="1")
    with pytest.raises(ConfigError, match=r"--warm-up-repos \(test\): needs --warm-up"):
        settings(warm_up_repos="3")


def test_runner_keys_with_a_suffix(tmp_path):
    fix = Version(12, 1, 2, "fix")
    s = settings(runner_binary=[f"12.1.2+fix={tmp_path}/r"], runner_without=["12.1.2+fix=git"],
                 baseline="12.1.2", candidate="12.1.2+fix")
    assert s.runner_binaries == {fix: tmp_path / "r"} and s.runner_without == {fix: ("git",)}
    assert (s.baseline, s.candidate) == (Version(12, 1, 2), fix)
    assert s.versions_to_run([]) == (Version(12, 1, 2), fix)
    assert "not a version: '12.1.2-fix'" in _error(runner_version=["12.1.2-fix"])


def test_zombie_timeout_is_a_go_duration_for_the_lab_only():
    assert settings().zombie_timeout is None
    assert settings(zombie_timeout="10m").zombie_timeout == "10m"
    with pytest.raises(ConfigError, match="a Go duration"):
        settings(zombie_timeout="ten minutes")
    with pytest.raises(ConfigError, match="an existing instance"):
        settings({"FORGEJO_TOKEN": "t"}, zombie_timeout="10m", forgejo_url="https://forgejo.example.org",
                 runner_label="12.1.2:native=r")
