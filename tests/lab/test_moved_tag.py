"""moved-tag on a real 11.3.1 runner: the phased cell's bundle holds every phase's job log, names the commit
that ran (the runner's stale clone) and the class; the known bug counts as reproduced."""

from __future__ import annotations

import json
import uuid

import pytest

from harness.cell import run_cell
from harness.lab.lab import RunnerSpec, boot
from harness.scenarios import load
from harness.target import open_lab
from harness.versions import Version

from .conftest import newest_forgejo, resolve_or_skip

pytestmark = [pytest.mark.lab]


@pytest.fixture(scope="module")
def target():
    forgejo = newest_forgejo()
    lab = boot(f"mt-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(resolve_or_skip("forgejo-runner", Version(11, 3, 1)))],
               use_docker=False)
    yield open_lab(lab)
    assert not lab.down()


def test_the_stale_action_cell_and_its_bundle(target, tmp_path):
    handle = next(iter(target.runners.values()))
    result = run_cell(target, load("moved-tag"), handle, tmp_path / "bundle", evidence="always")
    assert result.error is None, result.error
    phases = {p["phase"]: p for p in result.observations["phases"]}
    printed = {name: p["actions"][0]["printed"] for name, p in phases.items()}
    assert printed == {"A": ["movetag-version: A"], "B": ["movetag-version: B"], "C": ["movetag-version: B"]}, printed
    assert phases["A"]["cold"] is True and phases["C"]["cold"] is False
    assert [p["rules"] for p in phases.values()] == [[], [], ["stale-action", "signature:git-refs-not-updated"]]
    assert result.observations["private_runner"] != handle.lab_runner.name  # a runner of its own
    assert result.known_bug_reproduced() and result.classification.name == "stale-action"
    bundle = tmp_path / "bundle"
    assert all((bundle / f"phase-{name}.job.log").is_file() for name in "ABC")
    assert "some refs were not updated" in (bundle / "phase-C.job.log").read_text()
    manifest = json.loads((bundle / "manifest.json").read_text())
    (ran,) = manifest["actions"]
    assert ran["commit"] == phases["B"]["actions"][0]["commit"] != phases["C"]["actions"][0]["commit"]
    assert ran["commit_from"] == "runner clone"  # the stale clone's commit, not the one v1 points at
    assert manifest["class"] == "stale-action"
