"""harness.evidence: the re-run command and the actions that ran in repro.md; tools probed in a given
environment (the lab runner's)."""

from __future__ import annotations

import os
import shlex
import stat

from harness.evidence import actions_note, environment, repro_markdown, rerun_command

MANIFEST = {
    "bundle_dir": "/b/qemu-buildx-12.1.2-cacheoff", "scenario": "qemu-buildx", "outcome": "pass",
    "runner": {"version": "12.1.2"},
    "rerun": {"runner_version": "12.1.2", "runner_key": "12.1.2-cacheoff", "forgejo_version": "11.0.15",
              "runner_binary": "/opt/runner fix", "seed_action": ["actions/checkout=/src/checkout"],
              "runner_config": {"cacheoff": "runner-config-overrides.yaml"}, "actions_url": None,
              "runner_without": ["git"]},
    "actions": [{"uses": "actions/checkout@v4", "kind": "seeded copy", "from": "/src/checkout", "commit": "11d5960a",
                 "commit_from": "runner clone"},
                {"uses": "docker/setup-qemu-action@v3", "kind": "stand-in", "from": "/suite/fixtures", "commit": None,
                 "commit_from": "unknown: the runner's clone is gone"}],
}


def test_rerun_command_carries_every_option_that_shaped_the_cell():
    words = shlex.split(rerun_command(MANIFEST))
    assert words[:5] == ["python", "-m", "harness", "rerun", "/b/qemu-buildx-12.1.2-cacheoff"]
    assert words[5:] == ["--runner-version=12.1.2", "--forgejo-version=11.0.15", "--runner-binary=12.1.2=/opt/runner fix",
                         "--seed-action=actions/checkout=/src/checkout",
                         "--runner-config=cacheoff=/b/qemu-buildx-12.1.2-cacheoff/runner-config-overrides.yaml",
                         "--runner-without=12.1.2=git"]


def test_rerun_command_of_an_old_bundle_and_with_an_actions_url():
    assert rerun_command({"bundle_dir": "/b", "runner": {"version": "11.3.1"}}) == \
        "python -m harness rerun /b --runner-version=11.3.1"
    with_url = {"bundle_dir": "/b", "rerun": {"runner_version": "11.3.1", "actions_url": "http://127.0.0.1:9/git"}}
    assert rerun_command(with_url).endswith("--actions-url=http://127.0.0.1:9/git")


def test_repro_names_each_action_that_ran_and_where_from():
    note = actions_note(MANIFEST)
    assert "- `actions/checkout@v4`: 11d5960a (seeded copy from `/src/checkout`; read from the runner clone)" in note
    assert "- `docker/setup-qemu-action@v3`: commit unknown (stand-in from `/suite/fixtures`; unknown: the" in note
    repro = repro_markdown(MANIFEST, "table", "name: x\n")
    assert rerun_command(MANIFEST) in repro and note.strip() in repro
    assert actions_note({}) == ""


def test_tools_are_probed_in_the_given_environment(tmp_path):
    tool_dir = tmp_path / "bin"
    tool_dir.mkdir()
    for name, output in (("git", "git version 9.9.9-runner"), ("docker", "buildx v0.0.1-in-runner-home")):
        script = tool_dir / name
        script.write_text(f"#!/bin/sh\necho '{output}'\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    env = environment(None, {"PATH": str(tool_dir), "HOME": str(tmp_path)}, "runner r's environment")
    assert env["tools_probed_in"] == "runner r's environment"
    assert env["git"] == "git version 9.9.9-runner" and env["buildx"] == "buildx v0.0.1-in-runner-home"
    assert env["node"] is None  # not on that PATH: the runner's jobs would not find it either
    assert environment()["tools_probed_in"] == "the test process's environment"
    assert os.environ.get("PATH") != str(tool_dir)


def test_rerun_command_of_a_condition_cell_repeats_the_condition():
    manifest = {"bundle_dir": "/b", "rerun": {"runner_version": "12.1.2", "condition": {"slowci": "condition.yml"}}}
    assert rerun_command(manifest).endswith("--runner-version=12.1.2 --condition=slowci=/b/condition.yml")


def test_repro_md_of_an_existing_runner_carries_its_figures_and_the_diagnose_after_the_cell():
    from harness.evidence import existing_runner_note

    manifest = {"observations": {
        "existing_runner": {"name": "prod-b", "source": "unit forgejo-runner (PID 41)", "config": "/etc/r/c.yml",
                            "docker_host": None, "cache_server_pid": None},
        "cpu": {"setup": {"runner_pct": 12.5}, "steps": {"runner_pct": 3.0}},
        "store_growth_mb": {"cache_server": 0.0, "action_clones": 0.1},
        "shared_runner_with": ["task 77"],
        "diagnose": {"stores": {"action_clones": {"bytes": 2_500_000, "entries": 3}}, "findings": ["[unused-clone] x"],
                     "bytes_to_reclaim": 1_000_000}}}
    note = existing_runner_note(manifest)
    assert "## Your runner (--runner-process)" in note and "prod-b (unit forgejo-runner (PID 41))" in note
    assert '"setup": 12.5' in note and "['task 77'] (its CPU and store figures are report-only)" in note
    assert "diagnose after the cell: action_clones 2.5 MB (3 entries); 1 finding(s), 1.0 MB to reclaim" in note
    assert existing_runner_note({"observations": {}}) == ""
