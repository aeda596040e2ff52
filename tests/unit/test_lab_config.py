"""Lab configuration: Forgejo's app.ini, the runner config, labels and the masked PATH (no process is started)."""

from __future__ import annotations

import base64
import configparser
import os
import stat
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.lab.forgejo import IniSecrets, ZombieSettings, render_app_ini
from harness.runners.binaries import Binary
from harness.runners.process import LabRunner, _masked_path, label_name, labels_for
from harness.versions import Version

V12 = Version(12, 1, 2)

# -- app.ini ---------------------------------------------------------------------------------------------


def parse_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keep Forgejo's upper-case keys
    parser.read_string("[root]\n" + text)
    return parser


def test_app_ini_values(tmp_path):
    ini = parse_ini(render_app_ini(tmp_path, "172.17.0.1", 3111, None, ZombieSettings()))
    assert ini["root"]["WORK_PATH"] == str(tmp_path)
    server = ini["server"]
    assert (server["HTTP_ADDR"], server["HTTP_PORT"]) == ("172.17.0.1", "3111")
    assert server["ROOT_URL"] == "http://172.17.0.1:3111/"
    assert server["OFFLINE_MODE"] == "true" and server["DISABLE_SSH"] == "true"
    assert "STATIC_ROOT_PATH" not in server
    assert ini["database"]["DB_TYPE"] == "sqlite3"
    assert ini["database"]["PATH"] == f"{tmp_path}/data/forgejo.db"
    assert ini["security"]["INSTALL_LOCK"] == "true"
    assert ini["repository"]["DEFAULT_BRANCH"] == "main"


def test_app_ini_actions_match_the_recording_setup(tmp_path):
    """The README of the recordings lists the server settings they were made with; the lab uses the same."""
    ini = parse_ini(render_app_ini(tmp_path, "127.0.0.1", 3000, None, ZombieSettings()))
    assert ini["actions"]["ENABLED"] == "true"
    assert ini["actions"]["DEFAULT_ACTIONS_URL"] == "self"
    assert ini["actions"]["ZOMBIE_TASK_TIMEOUT"] == "30s"
    cron = ini["cron.stop_zombie_tasks"]
    assert (cron["ENABLED"], cron["RUN_AT_START"], cron["SCHEDULE"]) == ("true", "false", "@every 10s")


def test_app_ini_actions_url_is_a_users_mirror(tmp_path):
    ini = parse_ini(render_app_ini(tmp_path, "h", 1, None, ZombieSettings(), actions_url="http://127.0.0.1:9/git"))
    assert ini["actions"]["DEFAULT_ACTIONS_URL"] == "http://127.0.0.1:9/git"


def test_app_ini_custom_zombie_and_static_root(tmp_path):
    zombie = ZombieSettings(zombie_timeout="2m", zombie_cron="@every 1m", endless_timeout="3h")
    ini = parse_ini(render_app_ini(tmp_path, "h", 1, tmp_path / "static", zombie))
    assert ini["actions"]["ZOMBIE_TASK_TIMEOUT"] == "2m"
    assert ini["actions"]["ENDLESS_TASK_TIMEOUT"] == "3h"
    assert ini["cron.stop_zombie_tasks"]["SCHEDULE"] == "@every 1m"
    assert ini["server"]["STATIC_ROOT_PATH"] == str(tmp_path / "static")


def test_app_ini_carries_the_secrets_forgejo_would_write_back(tmp_path):
    """Forgejo rewrites app.ini in place when one is missing: concurrent CLI calls then read a torn file."""
    ini = parse_ini(render_app_ini(tmp_path, "h", 1, None, ZombieSettings()))
    assert len(ini["security"]["SECRET_KEY"]) >= 32
    assert len(ini["security"]["INTERNAL_TOKEN"]) >= 32
    jwt = ini["oauth2"]["JWT_SECRET"]
    assert "=" not in jwt and len(base64.urlsafe_b64decode(jwt + "=")) == 32  # Forgejo's DecodeJwtSecret shape
    other = parse_ini(render_app_ini(tmp_path, "h", 1, None, ZombieSettings()))
    assert other["oauth2"]["JWT_SECRET"] != jwt  # fresh per lab
    fixed = IniSecrets("k" * 40, "t" * 40, jwt)
    assert parse_ini(render_app_ini(tmp_path, "h", 1, None, ZombieSettings(), fixed))["security"]["SECRET_KEY"] == "k" * 40


def test_zombie_worst_case():
    assert ZombieSettings().worst_case_seconds() == 40.0
    assert ZombieSettings(zombie_timeout="1m", zombie_cron="@every 30s").worst_case_seconds() == 90.0
    assert ZombieSettings(zombie_timeout="bogus", zombie_cron="@daily").worst_case_seconds() == 900.0


@pytest.mark.parametrize("forgejo_runner", ["forgejo-11.0.15/runner-12.1.2", "forgejo-11.0.15/runner-11.3.1",
                                            "forgejo-13.0.5/runner-12.1.2"])
def test_recorded_zombie_stop_within_worst_case(recording_at, forgejo_runner):
    """The killed-runner recordings (same zombie settings) were failed within timeout + cron period."""
    seconds = recording_at(f"{forgejo_runner}/killed-after-last-step").meta["seconds_from_kill_to_job_done"]
    assert 30.0 < seconds <= ZombieSettings().worst_case_seconds()


# -- labels ----------------------------------------------------------------------------------------------


def test_labels_for_native_and_docker():
    assert labels_for(V12, "regress-job:bookworm") == {
        "native": "regress-12.1.2-native:host",
        "docker": "regress-12.1.2-docker:docker://regress-job:bookworm",
    }


def test_labels_for_without_image_and_with_axis():
    assert labels_for(V12, None) == {"native": "regress-12.1.2-native:host"}
    assert labels_for(V12, None, "nogit") == {"native": "regress-12.1.2-nogit-native:host"}
    assert labels_for(Version(11, 3, 1), None) != labels_for(V12, None)


def test_label_name():
    assert label_name("regress-12.1.2-native:host") == "regress-12.1.2-native"
    assert label_name("regress-12.1.2-docker:docker://regress-job:bookworm") == "regress-12.1.2-docker"
    assert label_name("plain") == "plain"


# -- runner config ---------------------------------------------------------------------------------------


def lab_runner(tmp_path: Path, **kw) -> LabRunner:
    defaults = dict(
        name="r12", binary=Binary("forgejo-runner", V12, tmp_path / "forgejo-runner-12.1.2", "bin-dir"),
        dir=tmp_path / "runner", instance_url="http://172.17.0.1:3111", labels=labels_for(V12, "img:1"),
        lab_id="lab-1", capacity=2, bridge_ip="172.17.0.1", docker_host="unix:///run/lab/docker.sock",
        cache_port=40001, proxy_port=40002,
    )
    defaults.update(kw)
    return LabRunner(**defaults)


def test_runner_config_defaults(tmp_path):
    runner = lab_runner(tmp_path)
    config = runner.config()
    assert config["log"] == {"level": "debug", "job_level": "info"}
    assert config["runner"]["labels"] == ["regress-12.1.2-native:host", "regress-12.1.2-docker:docker://img:1"]
    assert config["runner"]["capacity"] == 2
    assert (config["runner"]["fetch_interval"], config["runner"]["report_interval"]) == ("1s", "1s")
    assert config["runner"]["file"] == str(tmp_path / "runner" / ".runner")
    assert config["cache"]["external_server"] == "http://172.17.0.1:40001/"
    assert config["cache"]["proxy_port"] == 40002 and config["cache"]["dir"] == str(runner.cache_dir)
    assert config["container"]["network"] == "" and config["container"]["privileged"] is False
    assert "--label regress.lab=lab-1" in config["container"]["options"]
    assert config["host"]["workdir_parent"] == str(runner.workdir)


def test_runner_config_overrides_deep_merge(tmp_path):
    runner = lab_runner(tmp_path, overrides={"container": {"privileged": True}, "runner": {"capacity": 5},
                                             "cache": {"enabled": False}, "server": {"connections": {"x": 1}}})
    config = runner.config()
    assert config["container"]["privileged"] is True
    assert config["container"]["network"] == "", "a partial override keeps the other keys"
    assert config["runner"]["capacity"] == 5 and config["runner"]["timeout"] == "3h"
    assert config["cache"]["enabled"] is False and config["cache"]["dir"] == str(runner.cache_dir)
    assert config["server"] == {"connections": {"x": 1}}
    assert runner.overrides["container"] == {"privileged": True}, "overrides are not modified"


def test_runner_config_is_yaml_serialisable(tmp_path):
    config = lab_runner(tmp_path).config()
    assert yaml.safe_load(yaml.safe_dump(config, sort_keys=False)) == config


def test_prepare_writes_private_config(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.runners.process.register_secret", lambda value: None)
    runner = lab_runner(tmp_path, docker_host=None)
    runner.prepare()
    assert "docker" not in runner.labels, "no docker engine: the docker label is dropped"
    written = yaml.safe_load(runner.config_file.read_text())
    assert written["runner"]["labels"] == ["regress-12.1.2-native:host"]
    assert len(runner.secret) == 40 and int(runner.secret, 16) >= 0
    assert written["cache"]["secret"] == runner.cache_secret
    assert stat.S_IMODE(runner.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(runner.dir.stat().st_mode) == 0o700
    cache_cfg = yaml.safe_load((runner.dir / "cache-server.yaml").read_text())
    assert cache_cfg["cache"]["port"] == 40001 and cache_cfg["cache"]["secret"] == runner.cache_secret
    for d in (runner.workdir, runner.cache_dir, runner.home / ".docker"):
        assert d.is_dir()


def test_to_json_has_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.runners.process.register_secret", lambda value: None)
    runner = lab_runner(tmp_path)
    runner.prepare()
    text = repr(runner.to_json())
    assert runner.secret not in text and runner.cache_secret not in text
    assert runner.to_json()["alive"] is False


# -- masked PATH -----------------------------------------------------------------------------------------


def exe(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_masked_path_drops_tools_and_their_helpers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("git", "git-upload-pack", "sh", "gitk"):
        exe(a / name)
    exe(b / "node")
    exe(b / "readme.txt", mode=0o644)
    target = tmp_path / "path"
    _masked_path(target, f"{a}:{tmp_path / 'missing'}:{b}", ("git",))
    assert sorted(p.name for p in target.iterdir()) == ["gitk", "node", "sh"]
    assert all(p.is_symlink() for p in target.iterdir())
    assert os.readlink(target / "node") == str(b / "node")


def test_masked_path_first_dir_wins(tmp_path):
    exe(tmp_path / "a" / "node")
    exe(tmp_path / "b" / "node")
    target = tmp_path / "path"
    _masked_path(target, f"{tmp_path / 'a'}:{tmp_path / 'b'}", ("git",))
    assert os.readlink(target / "node") == str(tmp_path / "a" / "node")


def test_masked_path_replaces_previous(tmp_path):
    target = tmp_path / "path"
    exe(tmp_path / "a" / "git")
    _masked_path(target, str(tmp_path / "a"), ())
    assert (target / "git").exists()
    _masked_path(target, str(tmp_path / "a"), ("git",))
    assert list(target.iterdir()) == []


def test_runner_env_uses_masked_path(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_SECRET_THING", "x")
    runner = lab_runner(tmp_path, without_tools=("git",), env_overrides={"LANG": "C", "HTTP_PROXY": None})
    monkeypatch.setenv("HTTP_PROXY", "http://proxy")
    env = runner._env()
    assert env["PATH"] == str(runner.dir / "path")
    assert env["HOME"] == str(runner.home) and env["DOCKER_CONFIG"] == str(runner.home / ".docker")
    assert env["DOCKER_HOST"] == "unix:///run/lab/docker.sock"
    assert env["LANG"] == "C" and "HTTP_PROXY" not in env
    assert not any(k.startswith(("REGRESS_", "PYTEST_")) for k in env)


def test_a_config_axis_env_is_the_runner_process_environment_not_its_config(tmp_path):
    from harness.target import load_runner_config

    axis = tmp_path / "ct.yaml"
    axis.write_text("env:\n  FORGEJO_CLIENT_TIMEOUT: 90\nrunner:\n  capacity: 2\n")
    assert load_runner_config(axis) == ({"runner": {"capacity": 2}}, {"FORGEJO_CLIENT_TIMEOUT": "90"})
    shipped = Path(__file__).parents[2] / "examples" / "runner-configs" / "client-timeout-90s.yaml"
    assert load_runner_config(shipped) == ({}, {"FORGEJO_CLIENT_TIMEOUT": "90"})
    for bad in ("env: [FORGEJO_CLIENT_TIMEOUT=90]\n", "env: {'not a name': 1}\n", "env: {X: true}\n"):
        axis.write_text(bad)
        with pytest.raises(ConfigError, match="env: must map environment variable names"):
            load_runner_config(axis)


def test_a_runner_s_env_overrides_reach_its_process_environment(tmp_path):
    runner = lab_runner(tmp_path, env_overrides={"FORGEJO_CLIENT_TIMEOUT": "5"})
    assert runner.env()["FORGEJO_CLIENT_TIMEOUT"] == "5"
