"""What ran, on real labs: a seeded copy's bundle names the commit its tag resolved to and re-runs with the
same actions from its own repro.md command; ``--actions-url`` makes both runner versions clone from a
git smart-HTTP server of the test's own (no stand-in seeded)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.cell import run_cell
from harness.lab.booting import boot
from harness.lab.lab import RunnerSpec
from harness.lab.seed import parse_seed_option
from harness.scenarios import load
from harness.target import open_lab
from harness.versions import Version

from .conftest import RUNNERS, resolve_or_skip
from .git_http import GitHttpServer, make_action

pytestmark = [pytest.mark.lab]
ROOT = Path(__file__).resolve().parents[2]


def scenario(root: Path, name: str, uses: list[str]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    steps = "".join(f"      - uses: {u}\n" for u in uses)
    (folder / "workflow.yml").write_text(f"name: {name}\non: [push]\njobs:\n  test:\n    runs-on: __RUNS_ON__\n"
                                         f"    steps:\n{steps}")
    return root


def rerun_command(repro: str) -> list[str]:
    found = re.search(r"^python -m harness rerun .*$", repro, re.M)
    assert found, repro
    return [sys.executable, *shlex.split(found[0])[1:]]


@pytest.mark.docker
def test_seeded_copy_bundle_names_the_commit_that_ran_and_reruns_with_it(tmp_path):
    forgejo = resolve_or_skip("forgejo", Version(11, 0, 15))
    runner = resolve_or_skip("forgejo-runner", Version(12, 1, 2))
    action = make_action(tmp_path / "copies" / "real-action")
    scenarios = scenario(tmp_path / "sc", "uses-seeded", ["myorg/real-action@v3"])
    lab = boot(f"prov-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(runner)], use_docker=False,
               seed_sources=parse_seed_option([f"myorg/real-action={action.path}"]))
    try:
        target = open_lab(lab)
        bundle = tmp_path / "bundle"
        result = run_cell(target, load("uses-seeded", scenarios), target.runners["12.1.2"], bundle,
                          evidence="always")
    finally:
        assert not lab.down()
    assert result.passed, result.error or (result.verdict and result.verdict.table())
    assert "release v3 of real-action" in (bundle / "job.log").read_text()
    manifest = json.loads((bundle / "manifest.json").read_text())
    ran = manifest["actions"]
    assert [(a["uses"], a["kind"], a["from"], a["commit"]) for a in ran] == [
        ("myorg/real-action@v3", "seeded copy", str(action.path), action.tags["v3"])], ran
    assert ran[0]["commit_from"] == "runner clone" and action.tags["v3"] != action.head
    assert manifest["seeded_actions"] == {"myorg/real-action@v3": action.tags["v3"]}
    assert manifest["environment"]["tools_probed_in"].startswith("runner regress-12.1.2's environment")
    assert manifest["environment"]["git"], manifest["environment"]
    # actions/ holds what ran (the tag's files), not the copy's head or a stand-in
    shipped = (bundle / "actions" / "myorg" / "real-action" / "dist" / "index.js").read_text()
    assert "release v3" in shipped
    assert not (bundle / "actions" / "actions").exists()
    repro = (bundle / "repro.md").read_text()
    assert f"--seed-action=myorg/real-action={action.path}" in repro and action.tags["v3"] in repro
    proc = subprocess.run(rerun_command(repro), capture_output=True, text=True, cwd=tmp_path, timeout=900,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "same verdict" in out and "other actions ran this time" not in out, out[-3000:]
    new_bundle = Path(re.findall(r"new bundle: (\S+)", out)[-1])
    if not new_bundle.is_absolute():
        new_bundle = tmp_path / new_bundle
    again = json.loads((new_bundle / "manifest.json").read_text())["actions"]
    assert [(a["kind"], a["commit"]) for a in again] == [("seeded copy", action.tags["v3"])], again


def test_actions_url_both_runners_clone_from_a_smart_http_mirror(tmp_path):
    forgejo = resolve_or_skip("forgejo", Version(11, 0, 15))
    runners = [resolve_or_skip("forgejo-runner", v) for v in RUNNERS]
    qemu = make_action(tmp_path / "work" / "setup-qemu-action")
    buildx = make_action(tmp_path / "work" / "setup-buildx-action")
    uses = ["docker/setup-qemu-action@v3", "docker/setup-buildx-action@v1"]
    scenarios = scenario(tmp_path / "sc", "uses-mirror", uses)
    with GitHttpServer(tmp_path / "mirror") as mirror:
        mirror.publish("docker/setup-qemu-action", qemu.path)
        mirror.publish("docker/setup-buildx-action", buildx.path)
        lab = boot(f"prov-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(r) for r in runners], use_docker=False,
                   actions_url=mirror.url)
        try:
            assert lab.seeded == [], "stand-ins were seeded although the actions come from the actions URL"
            assert f"DEFAULT_ACTIONS_URL = {mirror.url}" in lab.forgejo.app_ini.read_text()
            target = open_lab(lab)
            results = {key: run_cell(target, load("uses-mirror", scenarios), handle, tmp_path / key,
                                     evidence="always") for key, handle in target.runners.items()}
        finally:
            assert not lab.down()
    assert set(results) == {str(v) for v in RUNNERS}
    for key, result in results.items():
        assert result.passed, (key, result.error or (result.verdict and result.verdict.table()))
        log = (tmp_path / key / "job.log").read_text()
        assert f"git clone '{mirror.url}/docker/setup-qemu-action'" in log, log
        assert "release v3 of setup-qemu-action" in log and "release v1 of setup-buildx-action" in log, log
        manifest = json.loads((tmp_path / key / "manifest.json").read_text())
        assert [(a["uses"], a["kind"], a["from"], a["commit"], a["commit_from"]) for a in manifest["actions"]] == [
            (uses[0], "actions URL", mirror.url, qemu.tags["v3"], "runner clone"),
            (uses[1], "actions URL", mirror.url, buildx.tags["v1"], "runner clone")], manifest["actions"]
        assert manifest["seeded_actions"] == {}
        assert f"--actions-url={mirror.url}" in (tmp_path / key / "repro.md").read_text()
        assert "release v3" in (tmp_path / key / "actions/docker/setup-qemu-action/dist/index.js").read_text()
    assert any("git-upload-pack" in r for r in mirror.requests), mirror.requests
