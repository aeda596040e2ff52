"""Evidence on real labs: written when the wait times out, and complete for a stalled runner."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from harness import classify
from harness.budgets import BUDGETS
from harness.bundle_class import classify_bundle
from harness.cell import run_cell
from harness.lab.booting import boot
from harness.lab.lab import RunnerSpec
from harness.scenarios import load
from harness.target import RunnerHandle, open_lab
from harness.versions import Version

from .conftest import resolve_or_skip

pytestmark = [pytest.mark.lab]


@pytest.fixture(scope="module")
def target():
    forgejo = resolve_or_skip("forgejo", Version(13, 0, 5))
    runner = resolve_or_skip("forgejo-runner", Version(12, 1, 2))
    lab = boot(f"ev-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(runner)], use_docker=False)
    yield open_lab(lab)
    assert not lab.down()


def test_pickup_timeout_names_the_label_cancels_and_leaves_a_bundle(target, tmp_path):
    nobody = RunnerHandle("12.1.2", Version(12, 1, 2), {"native": "nobody-has-this-label:host"})
    budgets = dataclasses.replace(BUDGETS, pickup=3.0)
    result = run_cell(target, load("native-checkout"), nobody, tmp_path / "bundle", budgets=budgets)
    assert result.error is not None and "no runner with label 'nobody-has-this-label'" in result.error
    assert "the run was cancelled" in result.error and "pickup=3s" in result.error
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["outcome"] == "inconclusive" and "nobody-has-this-label" in manifest["error"]
    assert "cannot see whether that runner is online" in result.error  # not a runner's fault: inconclusive
    assert (tmp_path / "bundle" / "api-transcript.jsonl").read_text().count("\n") > 3
    repro = (tmp_path / "bundle" / "repro.md").read_text()
    assert "— inconclusive" in repro and "nobody-has-this-label" in repro
    assert result.classification.name == classify.INCONCLUSIVE
    assert repro.startswith("class: inconclusive — our own side failed: no runner with label 'nobody-has-this-label'")


def test_frozen_runner_bundle_has_stall_time_step_cpu_and_goroutines(target, tmp_path):
    handle = next(iter(target.runners.values()))
    result = run_cell(target, load("frozen-during-post"), handle, tmp_path / "bundle", evidence="always")
    assert result.passed, result.error or result.selfcheck_problem
    bundle = tmp_path / "bundle"
    stall = json.loads((bundle / "manifest.json").read_text())["observations"]["stall"]
    # the runner's own last ⭐ line names the step (Forgejo may still show an earlier one)
    assert stall["step"] == "Post regress/slow-post@v1 (the runner's last ⭐ line)", stall["step"]
    assert stall["at"] and stall["runner_state"] == "stopped"
    assert stall["thread_cpu_pct"], "per-thread CPU of the frozen runner was not captured"
    assert "goroutine " in (bundle / "goroutines.txt").read_text()
    assert (bundle / "cpu.csv").read_text().count("\n") > 5
    stalled_after = stall["at"] - json.loads((bundle / "manifest.json").read_text())["observations"][
        "runner_control"]["at"]
    assert stalled_after < BUDGETS.runner_stalled + 5, f"stall reported {stalled_after:.0f}s after the freeze"
    found = result.classification  # the selfcheck passes; its class is the mechanism it reproduces
    assert found.name == classify.FINALIZATION_LOST, found
    assert found.timings["silence_before_stop"] >= 30 - classify.ZOMBIE_SLACK  # the lab's ZOMBIE_TASK_TIMEOUT 30s
    assert "'Complete job' ran" in found.why
    assert (bundle / "repro.md").read_text().startswith("class: finalization-lost — ")
    assert json.loads((bundle / "result.json").read_text())["class"] == "finalization-lost"
    assert classify_bundle(bundle) == found  # the bundle alone gives the same class, lines and timings


def test_cpu_plot_is_in_the_bundle(target, tmp_path):
    handle = next(iter(target.runners.values()))
    result = run_cell(target, load("native-checkout"), handle, tmp_path / "bundle", evidence="always")
    assert result.passed, result.error or (result.verdict and result.verdict.table())
    png = tmp_path / "bundle" / "cpu.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("scenario", "expected"), [("killed-during-post", classify.FINALIZATION_LOST),
                                                    ("post-exit-1", classify.HIDDEN_POST_FAILURE),
                                                    ("slow-action-fetch", classify.SETUP_SLOW)])
def test_each_selfcheck_is_classified_as_the_mechanism_it_reproduces(target, tmp_path, scenario, expected):
    handle = next(iter(target.runners.values()))
    result = run_cell(target, load(scenario), handle, tmp_path / "bundle", evidence="always")
    assert result.passed, result.error or result.selfcheck_problem
    assert result.classification.name == expected, result.classification
    assert (tmp_path / "bundle" / "repro.md").read_text().startswith(f"class: {expected} — ")
