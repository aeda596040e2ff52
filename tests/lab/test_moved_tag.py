"""moved-tag on a real 11.3.1 runner: the phased cell's bundle holds every phase's job log, names the commit
that ran (the runner's stale clone) and the class; the known bug counts as reproduced. Before the runner is
torn down, ``diagnose --check-upstream`` on its real stores names the stale tag, the cached and the remote
commit."""

from __future__ import annotations

import json
import uuid

import pytest

from harness.cell import run_cell
from harness.lab.booting import boot
from harness.lab.lab import RunnerSpec
from harness.lab.private import private_runner
from harness.scenarios import load
from harness.target import RunnerHandle, open_lab
from harness.versions import Version

from .conftest import newest_forgejo, resolve_or_skip
from .diagnose_helper import keep_copy, run_diagnose

pytestmark = [pytest.mark.lab]


@pytest.fixture(scope="module")
def target():
    forgejo = newest_forgejo()
    lab = boot(f"mt-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(resolve_or_skip("forgejo-runner", Version(11, 3, 1)))],
               use_docker=False)
    yield open_lab(lab)
    assert not lab.down()


def test_the_stale_action_cell_and_its_bundle(target, tmp_path, record_property):
    shared = next(iter(target.runners.values()))
    with private_runner(target.lab, shared.key) as runner:  # a runner of its own, diagnosed before its teardown
        handle = RunnerHandle(shared.key, shared.version, dict(runner.labels), runner)
        result = run_cell(target, load("moved-tag"), handle, tmp_path / "bundle", evidence="always", own_runner=True,
                          keep_repo=True)  # the action copy stays for --check-upstream (the lab goes at the end)
        code, found, report = run_diagnose(runner.workdir, runner.cache_dir, runner.home, "--check-upstream")
        keep_copy("moved-tag-11.3.1", runner.workdir, runner.cache_dir)
    record_property("diagnose", report)
    print(report)
    assert result.error is None, result.error
    phases = {p["phase"]: p for p in result.observations["phases"]}
    printed = {name: p["actions"][0]["printed"] for name, p in phases.items()}
    assert printed == {"A": ["movetag-version: A"], "B": ["movetag-version: B"], "C": ["movetag-version: B"]}, printed
    assert phases["A"]["cold"] is True and phases["C"]["cold"] is False
    assert [p["rules"] for p in phases.values()] == [[], [], ["stale-action", "signature:git-refs-not-updated"]]
    assert handle.lab_runner.name != shared.lab_runner.name  # a runner of its own
    assert result.known_bug_reproduced() and result.classification.name == "stale-action"
    bundle = tmp_path / "bundle"
    assert all((bundle / f"phase-{name}.job.log").is_file() for name in "ABC")
    assert "some refs were not updated" in (bundle / "phase-C.job.log").read_text()
    manifest = json.loads((bundle / "manifest.json").read_text())
    (ran,) = manifest["actions"]
    assert ran["commit"] == phases["B"]["actions"][0]["commit"] != phases["C"]["actions"][0]["commit"]
    assert ran["commit_from"] == "runner clone"  # the stale clone's commit, not the one v1 points at
    assert manifest["class"] == "stale-action"

    # diagnose on the runner's real stores: the 11.x work tree of regress/movetag@v1, its tag v1 stale
    assert found["owner"] == "11.x" and set(found["stores"]) == {"cache_server", "tool_cache", "action_clones", "home"}
    (clone,) = [c for c in found["clones"] if c["ref"].endswith("@v1") and "movetag" in c["ref"]]
    assert clone["kind"] == "v11-worktree" and clone["used_by_owner"] and clone["bytes"] > 0, clone
    (checked,) = [r for r in found["upstream"] if r["clone"] == clone["path"]]
    (v1,) = [t for t in checked["tags"] if t["tag"] == "v1"]
    cached, upstream = phases["B"]["actions"][0]["commit"], phases["C"]["actions"][0]["commit"]
    assert (v1["cached"], v1["upstream"], v1["stale"], v1["descends"]) == (cached, upstream, True, False), v1
    stale = [f for f in found["findings"] if f["kind"] == "stale-tag"]
    assert len(stale) == 1 and cached in stale[0]["what"] and upstream in stale[0]["what"], found["findings"]
    assert stale[0]["command"] == f"rm -rf -- {clone['path']}" and stale[0]["bytes"] == clone["bytes"]
    assert code == 1 and "tag v1: cached " + cached in report and "descends: NO" in report, report
