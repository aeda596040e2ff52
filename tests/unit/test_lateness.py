"""harness.lateness: late is not stopped, on the real job views of late-reports-during-post (tests/data/late-reports)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import lateness
from harness.bundle_class import classify_bundle
from harness.classify import Inputs, classify
from harness.forgejo.models import JobView, Status, Task
from harness.scenarios import load
from harness.verdict import Observation, Violation, judge

DATA = Path(__file__).parents[1] / "data" / "late-reports"
EXPECT = load("late-reports-during-post").expect


def view(name: str) -> JobView:
    return JobView.from_view(json.loads((DATA / f"{name}.job-view.json").read_text()))


def tasks(name: str) -> tuple[Task, ...]:
    return tuple(Task.from_api(t) for t in json.loads((DATA / f"{name}.tasks.json").read_text()))


def statuses(v: JobView) -> tuple[Status, ...]:
    return (v.job_status(0),)


SILENCE = lateness.Silence(task=1, seconds=24.0, step="Post regress/slow-post@v1", budget=15.0,
                           last_updated="2026-12-05 18:22:50+00:00")


def test_a_job_whose_result_came_before_its_final_log_is_awaited() -> None:
    """11.3.1 under the 12 s hold: the periodic UpdateTask carried SUCCESS and landed 12 s before the held final
    UpdateLog with the 🏁 line. That view is not the job's end: the judge waits for its log."""
    late = view("result-before-final-log-11.3.1")
    assert late.job_status(0) is Status.SUCCESS
    assert lateness.awaiting_final_log([late], statuses(late)) == [0]
    assert lateness.delivered([late], statuses(late))  # the runner's own result reached Forgejo


def test_a_zombie_stopped_job_is_not_awaited_and_never_delivered() -> None:
    """12.1.2 under the same hold: every report timed out (5 s client timeout) and was dropped; the zombie check
    failed the task with every step green."""
    lost = view("zombie-stopped-12.1.2")
    assert lost.job_status(0) is Status.FAILURE
    assert lateness.awaiting_final_log([lost], statuses(lost)) == []
    assert not lateness.delivered([lost], statuses(lost))


def test_a_complete_log_is_not_awaited() -> None:
    done = view("late-complete-11.3.1")
    assert any("🏁" in line.message for line in done.log_lines())
    assert lateness.awaiting_final_log([done], statuses(done)) == []


def test_a_stall_of_a_runner_that_delivered_is_report_late_and_the_cell_passes() -> None:
    done = view("late-complete-11.3.1")
    found = lateness.finding(SILENCE, [done], statuses(done))
    assert (found.rule, found.severity) == ("report-late", "report")
    assert "24s without one while step Post regress/slow-post@v1 ran" in found.message
    verdict = judge([done], EXPECT, Observation(extra=(found,)), default_setup=(60.0, 20.0))
    assert verdict.ok and verdict.rules() == ("report-late",)
    assert classify(Inputs(verdict, views=(done,), tasks=tasks("late-complete-11.3.1"))) is None


def test_a_stall_of_a_runner_that_never_delivered_stays_runner_stalled_and_names_the_loss() -> None:
    lost = view("zombie-stopped-12.1.2")
    never = lateness.finding(lateness.Silence(3, None, "Post regress/slow-post@v1", 15.0, "?"), [lost],
                             statuses(lost))
    assert (never.rule, never.severity) == ("runner-stalled", "fail") and "reports late" not in never.message
    resumed = lateness.finding(SILENCE, [lost], statuses(lost))
    assert resumed.rule == "runner-stalled" and "reports late (24s), then the runner's result never reached" in \
        resumed.message
    verdict = judge([lost], EXPECT, Observation(extra=(never,)), default_setup=(60.0, 20.0))
    found = classify(Inputs(verdict, views=(lost,), tasks=tasks("zombie-stopped-12.1.2"), zombie_timeout=30.0))
    assert found is not None and found.name == "finalization-lost"


@pytest.mark.parametrize(("name", "settled"), [("late-complete-11.3.1", True), ("zombie-stopped-12.1.2", False)])
def test_an_old_verdict_with_a_failing_stall_is_settled_from_the_views(name: str, settled: bool) -> None:
    """Bundles written before this distinction carry a failing runner-stalled; ``classify BUNDLE`` settles it."""
    v = view(name)
    stalled = Violation("runner-stalled", "task 1's updated_at stopped advancing for more than 15s while step "
                        "Post regress/slow-post@v1 ran")
    verdict = judge([v], EXPECT, Observation(extra=(stalled,)), default_setup=(60.0, 20.0))
    after = lateness.settle(verdict, [v])
    assert ("report-late" in after.rules()) is settled
    assert any(x.rule == "runner-stalled" and x.severity == "fail" for x in after.violations) is not settled
    if settled:
        assert after.ok and classify(Inputs(after, views=(v,))) is None


def test_classify_bundle_settles_lateness(tmp_path: Path) -> None:
    v = json.loads((DATA / "late-complete-11.3.1.job-view.json").read_text())
    stalled = Violation("runner-stalled", "task 1's updated_at stopped advancing for more than 15s")
    verdict = judge([JobView.from_view(v)], EXPECT, Observation(extra=(stalled,)), default_setup=(60.0, 20.0))
    assert not verdict.ok
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "x"}))
    (tmp_path / "verdict.json").write_text(json.dumps(verdict.to_json()))
    (tmp_path / "job-view.json").write_text(json.dumps(v))
    assert classify_bundle(tmp_path) is None  # lateness alone is never a class, least of all unexplained


def test_final_log_late_is_report_only_and_says_how_long() -> None:
    found = lateness.final_log_late(12.4, [0])
    assert (found.rule, found.severity) == ("report-late", "report")
    assert "final log lines arrived 12.4s after its result" in found.message
