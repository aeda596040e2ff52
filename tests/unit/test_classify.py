"""harness.classify: one failure class per non-pass cell, on the real recordings and on recordings edited
into the shapes the runner's sources describe (issue 12)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import classify as c
from harness.forgejo.models import JobView, Task
from harness.scenarios import Expect, load
from harness.verdict import Observation, Violation, judge
from tests.unit.test_verdict import zombie_in_setup

F11 = "forgejo-11.0.15"
RUNNERS = ("runner-11.3.1", "runner-12.1.2")
REAL = Path(__file__).parents[1] / "data" / "classify-real"  # real bundles' job views (its README)
LAB_ZOMBIE = 30.0  # the recordings' ZOMBIE_TASK_TIMEOUT (tests/data/recordings/README.md)


def expect(**data: Any) -> Expect:
    return Expect.parse({"kind": "native", **data}, "test-expect.yml")


def tasks_of(rec: Any) -> tuple[Task, ...]:
    answers = rec.api("/actions/tasks")
    return Task.list_from_api(answers[-1]["response_body"]) if answers else ()


def classify(payloads: list[dict[str, Any]] | dict[str, Any], exp: Expect, *, obs: Observation | None = None,
             tasks: tuple[Task, ...] = (), zombie_timeout: float | None = LAB_ZOMBIE, **kw: Any) -> c.Classification:
    views = [JobView.from_view(p) for p in (payloads if isinstance(payloads, list) else [payloads])]
    verdict = judge(views, exp, obs or Observation(), default_setup=(60.0, 20.0))
    found = c.classify(c.Inputs(verdict, views=views, tasks=tasks, zombie_timeout=zombie_timeout, **kw))
    assert found is not None, verdict.table()
    assert found.name in c.CLASSES
    return found


def edited(rec: Any, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    payload = copy.deepcopy(rec.last_view_payload())
    edit(payload)
    return payload


def replace_lines(payload: dict[str, Any], old: str, new: str) -> None:
    for entry in payload["logs"]["stepsLog"]:
        for line in entry["lines"]:
            line["message"] = line["message"].replace(old, new)


def fail_job(payload: dict[str, Any]) -> None:
    payload["state"]["run"]["status"] = "failure"
    payload["state"]["run"]["jobs"][0]["status"] = "failure"
    payload["state"]["currentJob"]["steps"][-1]["status"] = "failure"


# -- the precedence and the names are what other modules import -----------------------------------------------


def test_every_class_has_a_place_in_the_precedence():
    assert len(c.PRECEDENCE) == len(c.CLASSES) == 13
    assert c.PRECEDENCE[0] == c.INCONCLUSIVE and c.PRECEDENCE[-1] == c.UNEXPLAINED
    assert c.INCONCLUSIVE not in c.FAIL_CLASSES and c.STALE_ACTION in c.FAIL_CLASSES
    with pytest.raises(ValueError, match="unknown failure class 'bogus'"):
        c.Classification("bogus", "")


# -- recordings, as recorded ------------------------------------------------------------------------------------


def test_a_clean_pass_has_no_class(recording):
    meta = recording.meta
    view = recording.last_view_payload()
    steps = {s["summary"]: s["status"] for s in meta["steps"] if s["summary"] not in ("Set up job", "Complete job")}
    exp = Expect.parse({"kind": "docker" if recording.scenario.startswith("docker") else "native",
                        "job": meta["final_job_status"], "steps": steps}, "meta.json")
    views = [JobView.from_view(view)]
    verdict = judge(views, exp, Observation(), default_setup=(60.0, 20.0))
    assert c.classify(c.Inputs(verdict, views=views, tasks=tasks_of(recording))) is None


@pytest.mark.parametrize("runner", RUNNERS)
def test_native_fail_expected_success_is_step_failed(recording_at, runner):
    found = classify(recording_at(f"{F11}/{runner}/native-fail").last_view_payload(), expect(job="success"))
    assert found.name == c.STEP_FAILED
    assert "job log: '🏁  Job failed'" in found.evidence
    assert "failed step: 'echo before-exit && exit 3'" in found.evidence


@pytest.mark.parametrize("forgejo_runner", [f"{F11}/runner-11.3.1", f"{F11}/runner-12.1.2",
                                            "forgejo-13.0.5/runner-12.1.2"])
def test_killed_runner_is_finalization_lost(recording_at, forgejo_runner):
    rec = recording_at(f"{forgejo_runner}/killed-after-last-step")
    found = classify(rec.last_view_payload(), expect(job="success"), tasks=tasks_of(rec))
    assert found.name == c.FINALIZATION_LOST, found
    assert 30 <= found.timings["silence_before_stop"] <= 45  # 30 s zombie timeout + up to a 10 s cron period
    assert "last log line: 'a'" in found.evidence
    assert "'sleep 3' ran" in found.why and "ZOMBIE_TASK_TIMEOUT 30s" in found.why
    on_a_foreign_instance = classify(rec.last_view_payload(), expect(job="success"), zombie_timeout=None)
    assert on_a_foreign_instance.name == c.FINALIZATION_LOST


def test_a_zombie_stop_sooner_than_the_timeout_is_unexplained(recording_at):
    rec = recording_at(f"{F11}/runner-11.3.1/killed-after-last-step")
    found = classify(rec.last_view_payload(), expect(job="success"), zombie_timeout=600.0)
    assert found.name == c.UNEXPLAINED
    assert "sooner than ZOMBIE_TASK_TIMEOUT 600s" in found.why


def test_zombie_stop_during_setup_is_finalization_lost_not_setup_slow(recording_at):
    rec = recording_at(f"{F11}/runner-11.3.1/killed-after-last-step")
    found = classify(zombie_in_setup(rec.last_view_payload()), expect(job="success"), obs=Observation(cold=False))
    assert found.name == c.FINALIZATION_LOST
    assert "'Set up job' ran" in found.why
    assert any("no log line of their own: ['echo a', 'sleep 3']" in line for line in found.evidence)


def test_never_picked(recording_at):
    rec = recording_at(f"{F11}/runner-12.1.2/never-picked")
    why = "no runner with label 'x' picked the job within pickup=60s; runner r12 was running"
    found = classify(rec.last_view_payload(), expect(job="success"), obs=Observation(extra=(
        Violation("never-picked", why),)))  # the violation the cell's watch adds (harness.cell._timed_out)
    assert found.name == c.NEVER_PICKED and found.evidence == (why,)


def test_still_running_is_gave_up_waiting(recording_at):
    rec = recording_at(f"{F11}/runner-12.1.2/killed-after-last-step")
    running = next(p for p in rec.job_view_payloads() if p["state"]["run"]["jobs"][0]["status"] == "running")
    assert classify(running, expect(job="failure")).name == c.GAVE_UP_WAITING


def test_rejected_workflow(recording_at):
    def reject(payload: dict[str, Any]) -> None:
        payload["state"]["run"].update(status="failure", done=True, preExecutionError="jobs.test: unknown key",
                                       jobs=[])
        payload["state"]["currentJob"]["steps"] = []
        payload["logs"]["stepsLog"] = []

    found = classify(edited(recording_at("forgejo-13.0.5/runner-12.1.2/native-ok"), reject), expect(job="success"))
    assert found.name == c.WORKFLOW_REJECTED and "unknown key" in found.evidence[0]


# -- recordings edited into the mechanisms of issue 12 ---------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS)
def test_failed_post_in_a_successful_job_is_hidden_post_failure(recording_at, runner):
    payload = edited(recording_at(f"{F11}/{runner}/native-post"),
                     lambda p: replace_lines(p, "✅  Success - Post", "❌  Failure - Post"))
    assert classify(payload, expect(job="success")).name == c.HIDDEN_POST_FAILURE


def lose_complete_job_log(payload: dict[str, Any]) -> None:
    """What 500-updatelog-complete produced in 2 of 8 real cells: the result arrived, "Complete job"'s log did not."""
    complete = len(payload["state"]["currentJob"]["steps"]) - 1
    for entry in payload["logs"]["stepsLog"]:
        if entry["step"] == complete:
            entry["lines"] = []


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_successful_job_whose_last_log_lines_never_arrived_is_final_log_lost(recording_at, runner):
    payload = edited(recording_at(f"{F11}/{runner}/native-post"), lose_complete_job_log)
    found = classify(payload, expect(job="success", log_markers={"job_must": ["🏁  Job succeeded"]}))
    assert found.name == c.FINAL_LOG_LOST, found
    assert found.evidence[0] == "last log line: 'after-action'"
    assert any("🏁  Job succeeded" in line for line in found.evidence[2:])  # the verdict's own line, quoted


def test_a_lost_last_log_does_not_explain_another_missing_marker_or_a_failed_job(recording_at):
    rec = recording_at(f"{F11}/runner-12.1.2/native-post")
    markers = {"job_must": ["🏁  Job succeeded", "never printed"]}
    other = classify(edited(rec, lose_complete_job_log), expect(job="success", log_markers=markers))
    assert other.name == c.UNEXPLAINED  # a line the job never printed is missing too: the loss does not explain it
    kept = classify(recording_at(f"{F11}/runner-12.1.2/native-post").last_view_payload(),
                    expect(job="success", log_markers={"job_must": ["never printed"]}))
    assert kept.name == c.UNEXPLAINED  # the 🏁 line arrived: nothing was lost


def test_job_failed_after_green_steps_is_context_cancelled(recording_at):
    def cancel(payload: dict[str, Any]) -> None:
        fail_job(payload)
        replace_lines(payload, "🏁  Job succeeded", "🏁  Job failed")

    found = classify(edited(recording_at(f"{F11}/runner-12.1.2/native-ok"), cancel), expect(job="success"))
    assert found.name == c.CONTEXT_CANCELLED
    assert found.evidence[0] == "job log: '🏁  Job failed'"


@pytest.mark.parametrize("version", ["11.3.1", "12.1.2"])
def test_a_graceful_stop_during_a_main_step_is_context_cancelled_not_step_failed(version):
    """Real runs of term-during-main: the killed step is red, but the next one was cancelled (never started), not
    skipped as after a step failing on its own; 12.1.2 also shows the cancelled-step line."""
    payload = json.loads((REAL / f"term-during-main-{version}.job-view.json").read_text())
    found = classify(payload, load("term-during-main").expect)
    assert found.name == c.CONTEXT_CANCELLED, found
    assert found.evidence[0] == "job log: '🏁  Job failed'"
    assert "cancelled steps: ['after the slow step']" in found.evidence
    killed = [e for e in found.evidence if "this step has been cancelled: ctx: context canceled" in e]
    assert len(killed) == (1 if version == "12.1.2" else 0), found.evidence


@pytest.mark.parametrize("last", ["Cancelled", "Early termination"])
def test_reporter_closed_without_result_is_report_gave_up(recording_at, last):
    def close(payload: dict[str, Any]) -> None:
        fail_job(payload)
        payload["state"]["currentJob"]["steps"][2]["status"] = "cancelled"
        replace_lines(payload, "🏁  Job succeeded", last)

    found = classify(edited(recording_at(f"{F11}/runner-12.1.2/native-ok"), close), expect(job="success"))
    assert found.name == c.REPORT_GAVE_UP
    assert f"last log line: {last!r}" in found.evidence


def test_runner_failing_the_job_itself_with_its_run_error_is_report_gave_up(recording_at):
    def close(payload: dict[str, Any]) -> None:
        fail_job(payload)
        replace_lines(payload, "🏁  Job succeeded", "failed to create container: no space left on device")

    found = classify(edited(recording_at(f"{F11}/runner-11.3.1/native-ok"), close), expect(job="success"))
    assert found.name == c.REPORT_GAVE_UP
    assert found.timings["silence_before_stop"] < c.ZOMBIE_SLACK


def test_refs_not_updated_is_stale_action_even_when_a_marker_is_what_failed(recording_at):
    line = "Non-terminating error while running 'git clone': some refs were not updated"

    def stale(payload: dict[str, Any]) -> None:
        setup = payload["logs"]["stepsLog"][0]["lines"]
        setup.insert(1, dict(setup[0], message=line))

    exp = expect(job="success", log_markers={"job_must": ["version C"]})
    found = classify(edited(recording_at(f"{F11}/runner-11.3.1/native-ok"), stale), exp)
    assert found.name == c.STALE_ACTION and found.evidence == (f"job log: {line}",)
    plain = classify(recording_at(f"{F11}/runner-11.3.1/native-ok").last_view_payload(), exp)
    assert plain.name == c.UNEXPLAINED and "marker-missing" in plain.why
    by_rule = classify(recording_at(f"{F11}/runner-12.1.2/native-ok").last_view_payload(), expect(job="success"),
                       obs=Observation(extra=(Violation("stale-action", "printed version B, v1 is C"),)))
    assert by_rule.name == c.STALE_ACTION


def test_a_failed_set_up_job_reported_by_the_runner_is_step_failed_with_its_error(recording_at):
    """docker-checkout on 12.1.2 without git (the lab product test's regression): "Set up job" failed, the steps
    cancelled, the runner's error line and 🏁  Job failed in the log."""
    error = "⚙️ [runner]: git worktree add error: : exec: \"git\": executable file not found in $PATH"

    def no_git(payload: dict[str, Any]) -> None:
        fail_job(payload)
        steps = payload["state"]["currentJob"]["steps"]
        steps[0]["status"] = "failure"
        for step in steps[1:-1]:
            step["status"] = "cancelled"
        setup = payload["logs"]["stepsLog"][0]["lines"]
        setup[1:] = [dict(setup[0], message=error), dict(setup[0], message="🏁  Job failed")]
        for entry in payload["logs"]["stepsLog"][1:]:
            entry["lines"] = []

    exp = expect(job="success", steps={"echo first-step": "success"})
    found = classify(edited(recording_at(f"{F11}/runner-12.1.2/native-ok"), no_git), exp)
    assert found.name == c.STEP_FAILED
    assert found.why.startswith("'Set up job' failed and the runner reported it")
    assert found.evidence == ("job log: '🏁  Job failed'", "failed step: 'Set up job'", error)


def test_setup_over_budget_is_setup_slow(recording_at):
    found = classify(recording_at(f"{F11}/runner-12.1.2/docker-ok").last_view_payload(),
                     expect(kind="docker", job="success", setup_budget={"cold": 0.01}))
    assert found.name == c.SETUP_SLOW and found.timings["setup_budget"] == 0.01


def test_our_failure_is_inconclusive_whatever_the_verdict(recording_at):
    views = [JobView.from_view(recording_at(f"{F11}/runner-12.1.2/native-fail").last_view_payload())]
    verdict = judge(views, expect(job="success"), Observation(), default_setup=(60.0, 20.0))
    found = c.classify(c.Inputs(verdict, views=views, error="GET /api/v1/version: 502 after 3 tries\nmore"))
    assert found is not None and found.name == c.INCONCLUSIVE and "502 after 3 tries" in found.why
    assert c.classify(c.Inputs(None)).name == c.INCONCLUSIVE


def test_a_selfcheck_whose_violation_did_not_fire_is_unexplained(recording_at):
    views = [JobView.from_view(recording_at(f"{F11}/runner-12.1.2/native-post").last_view_payload())]
    verdict = judge(views, expect(job="success"), Observation(), default_setup=(60.0, 20.0))
    problem = "expected violations ['hidden-post-failure'], the judge found []"
    found = c.classify(c.Inputs(verdict, views=views, selfcheck_problem=problem))
    assert found is not None and found.name == c.UNEXPLAINED and found.evidence == (f"selfcheck: {problem}",)
    assert found.line().startswith("class: unexplained — no failure class explains")


def test_cut_off_post_with_a_frozen_runner_is_finalization_lost():
    """The frozen/killed-during-post selfchecks' shape: green steps, a post step cut off, the stop 36 s later
    (the "Complete job" row runs from the last step's end to the stop)."""
    payload = {
        "state": {"run": {"status": "failure", "done": True, "jobs": [{"id": 1, "name": "t", "status": "failure"}]},
                  "currentJob": {"title": "t", "steps": [
                      {"summary": "Set up job", "status": "success", "duration": "0s"},
                      {"summary": "regress/slow-post@v1", "status": "success", "duration": "0s"},
                      {"summary": "Complete job", "status": "failure", "duration": "36s"}]}},
        "logs": {"stepsLog": [
            {"step": 0, "started": 1000, "lines": [{"index": 1, "message": "⭐ Run Main regress/slow-post@v1",
                                                    "timestamp": 1000.2}]},
            {"step": 1, "started": 1000, "lines": [{"index": 2, "message": "main ran", "timestamp": 1000.4}]},
            {"step": 2, "started": 1001, "lines": [{"index": 3, "message": "⭐ Run Post regress/slow-post@v1",
                                                    "timestamp": 1000.9}]}]},
    }
    found = classify(payload, expect(job="success"))
    assert found.name == c.FINALIZATION_LOST
    assert found.timings["silence_before_stop"] == pytest.approx(36.1)
    assert "'Complete job' ran" in found.why
