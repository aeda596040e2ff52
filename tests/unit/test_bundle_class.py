"""harness.bundle_class: a bundle's class from its files alone equals the class of the cell that wrote it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import classify as c
from harness.bundle_class import bundle_inputs, classify_bundle
from harness.errors import HarnessError
from harness.forgejo.models import JobView, Task
from harness.scenarios import Expect
from harness.verdict import Observation, judge, verdict_from_json

F11 = "forgejo-11.0.15/runner-11.3.1"


def write_bundle(path: Path, rec: Any, exp: Expect, *, zombie: str | None = "30s", error: str | None = None) -> Any:
    """The files a cell's bundle holds, from a recording (the verdict as the judge gives it)."""
    path.mkdir()
    payload = rec.last_view_payload()
    verdict = judge([JobView.from_view(payload)], exp, Observation(), default_setup=(60.0, 20.0))
    tasks = rec.api("/actions/tasks")[-1]["response_body"]["workflow_runs"] if rec.api("/actions/tasks") else []
    (path / "job-view.json").write_text(json.dumps(payload))
    (path / "tasks.json").write_text(json.dumps(tasks))
    (path / "job.log").write_text(rec.job_log)
    (path / "verdict.json").write_text(json.dumps(verdict.to_json()))
    actions = {"ZOMBIE_TASK_TIMEOUT": zombie} if zombie else {}
    (path / "manifest.json").write_text(json.dumps({"error": error, "selfcheck_problem": None, "timings": {},
                                                    "forgejo": {"actions": actions}}))
    return verdict


def live_class(rec: Any, exp: Expect) -> c.Classification | None:
    views = [JobView.from_view(rec.last_view_payload())]
    verdict = judge(views, exp, Observation(), default_setup=(60.0, 20.0))
    tasks = rec.api("/actions/tasks")
    return c.classify(c.Inputs(verdict, views=tuple(views), zombie_timeout=30.0,
                               tasks=Task.list_from_api(tasks[-1]["response_body"]) if tasks else ()))


@pytest.mark.parametrize(("scenario", "expected"), [("killed-after-last-step", c.FINALIZATION_LOST),
                                                    ("native-fail", c.STEP_FAILED), ("native-ok", None)])
def test_a_bundle_gets_the_class_of_its_cell(recording_at, tmp_path, scenario, expected):
    rec = recording_at(f"{F11}/{scenario}")
    exp = Expect.parse({"kind": "native", "job": "success" if expected else rec.meta["final_job_status"]}, "x")
    write_bundle(tmp_path / "b", rec, exp)
    found, live = classify_bundle(tmp_path / "b"), live_class(rec, exp)
    assert (found.name if found else None) == expected
    assert found == live
    assert bundle_inputs(tmp_path / "b").zombie_timeout == 30.0


def test_verdict_round_trips_through_its_json(recording_at):
    rec = recording_at(f"{F11}/native-post")
    verdict = judge([JobView.from_view(rec.last_view_payload())], Expect.parse({"kind": "native", "job": "failure"},
                                                                                 "x"), Observation(),
                    default_setup=(60.0, 20.0))
    back = verdict_from_json(json.loads(json.dumps(verdict.to_json())))
    assert back.violations == verdict.violations and back.job_statuses == verdict.job_statuses
    assert back.post_steps == verdict.post_steps and back.setup_seconds == verdict.setup_seconds
    with pytest.raises(ValueError, match="not a verdict"):
        verdict_from_json({"violations": [{"rule": "x", "severity": "maybe"}]})


def test_our_failure_recorded_in_the_manifest_is_inconclusive(recording_at, tmp_path):
    write_bundle(tmp_path / "b", recording_at(f"{F11}/native-ok"), Expect.parse({"kind": "native"}, "x"),
                 error="GET /api/v1/version: 502 after 3 tries")
    assert classify_bundle(tmp_path / "b").name == c.INCONCLUSIVE


def test_cli_prints_the_class_and_its_evidence_and_refuses_a_non_bundle(recording_at, tmp_path):
    rec = recording_at(f"{F11}/killed-after-last-step")
    write_bundle(tmp_path / "b", rec, Expect.parse({"kind": "native", "job": "success"}, "x"), zombie=None)
    proc = subprocess.run([sys.executable, "-m", "harness", "classify", str(tmp_path / "b")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'b'}: class: finalization-lost — the runner stopped reporting")
    assert "  last log line: 'a'" in lines and any(line.startswith("  timings: ") for line in lines)
    with pytest.raises(HarnessError, match="not an evidence bundle"):
        classify_bundle(tmp_path)
    bad = subprocess.run([sys.executable, "-m", "harness", "classify", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "not an evidence bundle" in bad.stderr and "Traceback" not in bad.stderr
