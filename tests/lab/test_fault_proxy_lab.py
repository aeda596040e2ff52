"""The fault proxy on a real lab: a private runner talks to Forgejo only through it, the suite never does, and a
reset from the task's first report ends as Forgejo's zombie stop (finalization-lost) with the runner's aftermath."""

from __future__ import annotations

import json
import uuid

import pytest

from harness import classify
from harness.cell import run_cell
from harness.lab.booting import boot
from harness.lab.lab import RunnerSpec
from harness.scenarios import load
from harness.target import open_lab
from harness.versions import Version

from .conftest import resolve_or_skip

pytestmark = [pytest.mark.lab]
RUNNER_RPCS = {"Ping", "Register", "Declare", "FetchTask", "UpdateLog", "UpdateTask", "(connect)"}


@pytest.fixture(scope="module")
def target():
    forgejo = resolve_or_skip("forgejo", Version(13, 0, 5))
    runner = resolve_or_skip("forgejo-runner", Version(12, 1, 2))
    lab = boot(f"fp-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(runner)], use_docker=False)
    yield open_lab(lab)
    assert not lab.down()


def test_reset_during_setup_is_the_zombie_stop_and_only_runner_rpcs_cross_the_proxy(target, tmp_path):
    handle = target.runners["12.1.2"]
    result = run_cell(target, load("reset-during-setup"), handle, tmp_path / "bundle", evidence="always")
    fault = result.observations["fault"]
    assert result.passed, result.error or result.selfcheck_problem
    assert result.classification is not None and result.classification.name == classify.FINALIZATION_LOST
    assert fault["fired"] and fault["class"] == fault["expected_class"] == "finalization-lost"
    assert 25 < fault["time_to_verdict"] < 90  # the lab's zombie timeout (30 s) + its cron period (10 s)
    assert fault["behaviour"]["first_reaction_s"] is not None  # 12.1.2 warns about the failed reports
    bundle = tmp_path / "bundle"
    lines = [json.loads(line) for line in (bundle / "fault-proxy.jsonl").read_text().splitlines()]
    rpcs = {line["rpc"] for line in lines if "rpc" in line}
    assert {"Declare", "FetchTask", "UpdateLog", "UpdateTask"} <= rpcs <= RUNNER_RPCS  # never the suite's /api/v1
    assert any(line.get("action") == "reset" for line in lines)
    assert [line["event"] for line in lines if "event" in line] == ["fault started", "fault released"]
    assert (bundle / "runner-aftermath.log").read_text().strip()
    assert handle.lab_runner is not None and handle.lab_runner.instance_url == target.url  # the shared runner untouched
