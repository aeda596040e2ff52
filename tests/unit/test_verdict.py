"""harness.verdict: the judge on real recordings and on synthetic job views (built in the view's JSON shape)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from harness.forgejo.models import JobView, LogLine, Status
from harness.scenarios import Expect
from harness.verdict import (
    JobVerdict,
    Observation,
    PostStep,
    Verdict,
    Violation,
    judge,
    post_steps,
    selfcheck_mismatch,
    setup_seconds,
    setup_window,
)

DEFAULT_SETUP = (60.0, 20.0)


def expect(**data: Any) -> Expect:
    return Expect.parse({"kind": "native", **data}, "test-expect.yml")


def rules(verdict) -> set[str]:
    return set(verdict.rules())


def view_payload(job: str, steps: list[tuple[str, str, list[str]]], *, done: bool = True, t0: float = 1000.0,
                 step_seconds: float = 0.5) -> dict[str, Any]:
    """A job-view answer: ``steps`` = [(summary, status, log messages)], lines ``step_seconds`` apart."""
    logs = []
    t = t0
    for i, (_, _, messages) in enumerate(steps):
        lines = []
        for n, message in enumerate(messages, 1):
            lines.append({"index": n, "message": message, "timestamp": t})
            t += step_seconds
        logs.append({"step": i, "cursor": len(lines), "lines": lines, "started": int(t0)})
    run_status = job if done else "running"
    return {
        "state": {
            "run": {"status": run_status, "done": done, "title": "synthetic",
                    "jobs": [{"id": 1, "name": "test", "status": job, "duration": "3s"}]},
            "currentJob": {"title": "test", "detail": job.capitalize(),
                           "steps": [{"summary": s, "status": st, "duration": "1s"} for s, st, _ in steps]},
        },
        "logs": {"stepsLog": logs},
    }


def make_view(job: str, steps: list[tuple[str, str, list[str]]], **kw: Any) -> JobView:
    return JobView.from_view(view_payload(job, steps, **kw))


SETUP = ("Set up job", "success", ["runner received task", "⭐ Run Main build"])


def run(view: JobView, exp: Expect | None = None, obs: Observation | None = None):
    return judge(view, exp or expect(), obs or Observation(), default_setup=DEFAULT_SETUP)


# -- recordings ------------------------------------------------------------------------------------------


def test_native_post_recording_has_no_violation(recording_at):
    for runner in ("runner-12.1.2", "runner-11.3.1"):
        rec = recording_at(f"forgejo-11.0.15/{runner}/native-post")
        view = JobView.from_view(rec.last_view_payload())
        exp = expect(job="success",
                     steps={"actions/post-demo@main": "success", "echo after-action": "success"},
                     post_steps=["actions/post-demo@main"],
                     log_markers={"job_must": ["post-demo: post ran", "🏁  Job succeeded"],
                                  "job_must_not": ["Failure - Post"]})
        verdict = run(view, exp)
        assert verdict.violations == (), verdict.table()
        assert verdict.ok
        assert verdict.post_steps == (PostStep("actions/post-demo@main", Status.SUCCESS),)


@pytest.mark.parametrize("forgejo_runner", ["forgejo-11.0.15/runner-12.1.2", "forgejo-11.0.15/runner-11.3.1",
                                            "forgejo-13.0.5/runner-12.1.2"])
def test_killed_after_last_step_is_a_zombie_stop_not_a_legit_failure(recording_at, forgejo_runner):
    view = JobView.from_view(recording_at(f"{forgejo_runner}/killed-after-last-step").last_view_payload())
    assert view.job_status(0) is Status.FAILURE
    assert view.step("sleep 3").status is Status.FAILURE
    verdict = run(view, expect(job="failure"))
    assert "green-steps-failed-job" not in rules(verdict)
    assert verdict.violations == ()
    zombie = verdict.jobs[0].zombie
    assert zombie is not None and zombie.running == "sleep 3" and zombie.stopped_steps == ("sleep 3",)
    assert 30 <= zombie.silence <= 45  # lab ZOMBIE_TASK_TIMEOUT 30 s + a 10 s cron period
    wrong = run(view, expect(job="success"))
    assert rules(wrong) == {"unexpected-job-result"}
    message = wrong.violations[0].message
    assert "a step failed: a legitimate failure" not in message
    assert "Forgejo stopped the task while 'sleep 3' ran" in message and "not a legitimate failure" in message


def zombie_in_setup(payload: dict[str, Any]) -> dict[str, Any]:
    """A recording edited into the blackhole-before-the-first-report shape of issue 12: the runner's only
    report was its first line; Forgejo's zombie stop failed every workflow step (0 s, no line of their own)
    and "Set up job" carries the time until the stop."""
    edited = copy.deepcopy(payload)
    steps = edited["state"]["currentJob"]["steps"]
    logs = edited["logs"]["stepsLog"]
    stop = logs[0]["started"] + 39
    logs[0]["lines"] = logs[0]["lines"][:1]
    steps[0].update(duration="39s", status="success")
    for i in range(1, len(steps)):
        steps[i].update(duration="0s", status="failure")
        logs[i].update(lines=[], cursor=0, started=stop)
    return edited


def test_zombie_stop_during_setup_is_no_step_failure_and_no_slow_setup(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-11.3.1/killed-after-last-step")
    view = JobView.from_view(zombie_in_setup(rec.last_view_payload()))
    assert view.step("Set up job").duration == 39 and setup_seconds(view) == 39
    verdict = run(view, expect(job="success"), Observation(cold=False))
    assert rules(verdict) == {"unexpected-job-result"}  # no setup-over-budget for the zombie's 39 s
    assert "a step failed: a legitimate failure" not in verdict.violations[0].message
    assert "while 'Set up job' ran" in verdict.violations[0].message
    zombie = verdict.jobs[0].zombie
    assert zombie.setup_stretched and zombie.silent_steps == ("echo a", "sleep 3")
    assert verdict.setup_seconds is None
    assert "Forgejo stopped the task while 'Set up job' ran" in verdict.table()
    measured = run(view, expect(job="failure"), Observation(setup_seconds=39.0, cold=False))
    assert measured.violations == ()


def test_runner_closing_a_job_itself_is_no_zombie_stop():
    cancelled = make_view("failure", [SETUP, ("a", "success", ["a"]), ("b", "cancelled", []),
                                      ("Complete job", "failure", ["Cancelled"])])
    assert run(cancelled, expect(job="failure")).jobs[0].zombie is None
    last_words = make_view("failure", [SETUP, ("a", "success", ["a"]), ("Complete job", "failure", ["Early termination"])])
    assert run(last_words, expect(job="failure")).jobs[0].zombie is None
    result = make_view("failure", [SETUP, ("a", "failure", ["a"]), ("Complete job", "failure", ["🏁  Job failed"])])
    judged = run(result, expect(job="success"))
    assert judged.jobs[0].zombie is None and "a step failed: a legitimate failure" in judged.violations[0].message


def test_killed_after_last_step_mid_run_is_not_done(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-12.1.2/killed-after-last-step")
    running = next(JobView.from_view(p) for p in rec.job_view_payloads()
                   if JobView.from_view(p).job_status(0) is Status.RUNNING)
    assert "job-not-done" in rules(run(running, expect(job="failure")))


def test_every_recording_agrees_with_its_recorded_outcome(recording):
    meta = recording.meta
    view = JobView.from_view(recording.last_view_payload())
    steps = {s["summary"]: s["status"] for s in meta["steps"] if s["summary"] not in ("Set up job", "Complete job")}
    exp = Expect.parse({"kind": "docker" if recording.scenario.startswith("docker") else "native",
                        "job": meta["final_job_status"], "steps": steps}, str(recording.path / "meta.json"))
    verdict = run(view, exp)
    assert verdict.violations == (), verdict.table()
    assert verdict.job_status == Status(meta["final_job_status"])


def test_native_fail_recording_is_not_green_steps(recording_at):
    view = JobView.from_view(recording_at("forgejo-13.0.5/runner-12.1.2/native-fail").last_view_payload())
    verdict = run(view, expect(job="success"))
    assert rules(verdict) == {"unexpected-job-result"}
    assert "legitimate" in verdict.violations[0].message


def test_continue_on_error_recording_with_success_job(recording_at):
    view = JobView.from_view(recording_at("forgejo-11.0.15/runner-12.1.2/native-continue-on-error").last_view_payload())
    failed = [s.name for s in view.workflow_steps() if s.status is Status.FAILURE]
    assert len(failed) == 1
    verdict = run(view, expect(job="success", continue_on_error=failed))
    assert verdict.violations == ()


# -- synthetic: green steps / post steps -----------------------------------------------------------------


def test_green_steps_failed_job_with_cut_off_post():
    view = make_view("failure", [
        SETUP,
        ("uses: regress/slow-post@v1", "success", ["main ran"]),
        ("echo done", "success", ["done"]),
        ("Complete job", "failure", ["⭐ Run Post regress/slow-post@v1", "post: sleeping"]),
    ])
    verdict = run(view, expect(job="failure"))
    assert rules(verdict) == {"green-steps-failed-job", "post-step-cut-off"}
    assert verdict.post_steps == (PostStep("regress/slow-post@v1", None),)
    assert not verdict.ok
    cut = [v for v in verdict.violations if v.rule == "post-step-cut-off"]
    assert "regress/slow-post@v1" in cut[0].message


def test_green_steps_failed_job_mentions_detail():
    view = make_view("failure", [SETUP, ("echo ok", "success", ["ok"]), ("Complete job", "failure", [])])
    verdict = run(view, expect(job="failure"))
    assert rules(verdict) == {"green-steps-failed-job"}
    assert "detail: Failure" in verdict.violations[0].message


def test_skipped_steps_count_as_green():
    view = make_view("failure", [SETUP, ("a", "success", ["a"]), ("b", "skipped", []), ("Complete job", "failure", [])])
    assert "green-steps-failed-job" in rules(run(view, expect(job="failure")))


def test_failed_post_explains_failed_job():
    view = make_view("failure", [SETUP, ("echo ok", "success", ["ok"]),
                                 ("Complete job", "failure", ["⭐ Run Post X", "  ❌  Failure - Post X"])])
    verdict = run(view, expect(job="failure"))
    assert "green-steps-failed-job" not in rules(verdict)
    assert verdict.post_steps == (PostStep("X", Status.FAILURE),)


def test_hidden_post_failure():
    view = make_view("success", [SETUP, ("uses: regress/failing-post@v1", "success", ["main"]),
                                 ("Complete job", "success", ["⭐ Run Post regress/failing-post@v1",
                                                              "  ❌  Failure - Post regress/failing-post@v1",
                                                              "🏁  Job succeeded"])])
    verdict = run(view, expect(job="success", marker="selfcheck", expected_violations=["hidden-post-failure"]))
    assert rules(verdict) == {"hidden-post-failure"}
    assert "regress/failing-post@v1" in verdict.violations[0].message
    assert selfcheck_mismatch(verdict, ["hidden-post-failure"]) is None


def test_post_outcome_with_duration_suffix():
    lines = ["⭐ Run Post actions/checkout@v4", "  ✅  Success - Post actions/checkout@v4 [120.5ms]"]
    assert post_steps(lines) == (PostStep("actions/checkout@v4", Status.SUCCESS),)


def test_post_steps_accept_log_lines_and_strings():
    lines = [LogLine(1, "⭐ Run Post A", 1.0), LogLine(2, "⭐ Run Post B", 2.0), LogLine(3, "✅  Success - Post A", 3.0)]
    assert post_steps(lines) == (PostStep("A", Status.SUCCESS), PostStep("B", None))
    assert post_steps(["nothing here"]) == ()


def test_post_steps_fall_back_to_all_logs_when_complete_job_has_none():
    view = make_view("success", [SETUP, ("step", "success", ["⭐ Run Post Y", "❌  Failure - Post Y"]),
                                 ("Complete job", "success", [])])
    assert "hidden-post-failure" in rules(run(view, expect(job="success")))


def test_continue_on_error_failure_with_success_job_not_flagged():
    view = make_view("success", [SETUP, ("may fail", "failure", ["exit 1"]), ("after", "success", ["ok"]),
                                 ("Complete job", "success", ["🏁  Job succeeded"])])
    verdict = run(view, expect(job="success", continue_on_error=["may fail"], steps={"may fail": "failure"}))
    assert verdict.violations == ()


def test_continue_on_error_step_counts_green_when_job_fails():
    steps = [SETUP, ("may fail", "failure", ["exit 1"]), ("after", "success", ["ok"]), ("Complete job", "failure", [])]
    listed = run(make_view("failure", steps), expect(job="failure", continue_on_error=["may fail"]))
    assert "green-steps-failed-job" in rules(listed)
    unlisted = run(make_view("failure", steps), expect(job="failure"))
    assert "green-steps-failed-job" not in rules(unlisted)


def test_no_workflow_rows_is_not_green():
    view = make_view("failure", [("Set up job", "failure", ["boom"]), ("Complete job", "failure", [])])
    assert "green-steps-failed-job" not in rules(run(view, expect(job="failure")))


# -- expectations ----------------------------------------------------------------------------------------


def test_missing_step_and_missing_post_step():
    view = make_view("success", [SETUP, ("build", "success", ["ok"]), ("Complete job", "success", [])])
    verdict = run(view, expect(job="success", steps={"build": "success", "test": "success"},
                               post_steps=["actions/checkout@v4"]))
    missing = [v for v in verdict.violations if v.rule == "missing-step"]
    assert len(missing) == 2
    assert any("'test'" in v.message for v in missing)
    assert any("actions/checkout@v4" in v.message for v in missing)


def test_unexpected_step_result():
    view = make_view("success", [SETUP, ("build", "skipped", []), ("Complete job", "success", [])])
    verdict = run(view, expect(job="success", steps={"build": "success"}))
    assert rules(verdict) == {"unexpected-step-result"}
    assert "skipped" in verdict.violations[0].message


def test_unexpected_job_result_without_failed_step_is_not_legit():
    view = make_view("cancelled", [SETUP, ("build", "success", []), ("Complete job", "cancelled", [])])
    verdict = run(view, expect(job="success"))
    assert rules(verdict) == {"unexpected-job-result"}
    assert "legitimate" not in verdict.violations[0].message


def test_every_violation_is_reported_not_only_the_first():
    view = make_view("failure", [SETUP, ("a", "success", ["a"]), ("Complete job", "failure", [])], done=False)
    verdict = run(view, expect(job="success", steps={"b": "success"}, log_markers={"job_must": ["never"]}))
    assert rules(verdict) >= {"job-not-done", "unexpected-job-result", "missing-step", "marker-missing"}


# -- setup budget ----------------------------------------------------------------------------------------


GREEN = [SETUP, ("build", "success", ["ok"]), ("Complete job", "success", [])]


@pytest.mark.parametrize(("cold", "over"), [(True, False), (None, False), (False, True)])
def test_setup_budget_cold_vs_warm(cold, over):
    verdict = run(make_view("success", GREEN), expect(job="success"), Observation(setup_seconds=30.0, cold=cold))
    assert ("setup-over-budget" in rules(verdict)) is over
    assert verdict.setup_budget == (20.0 if cold is False else 60.0)


def test_setup_budget_from_expect_overrides_default():
    exp = expect(job="success", setup_budget={"cold": 10, "warm": 5})
    verdict = run(make_view("success", GREEN), exp, Observation(setup_seconds=12.0, cold=True))
    assert rules(verdict) == {"setup-over-budget"}
    assert "12.0s > 10s (cold)" in verdict.violations[0].message
    warm = run(make_view("success", GREEN), exp, Observation(setup_seconds=6.0, cold=False))
    assert "6.0s > 5s (warm)" in warm.violations[0].message


def test_setup_seconds_measured_from_log_timestamps():
    view = make_view("success", [("Set up job", "success", ["a", "b", "c", "d", "e"]), ("Complete job", "success", [])],
                     step_seconds=20.0)
    assert setup_seconds(view) == pytest.approx(80.0)
    verdict = run(view, expect(job="success"))
    assert rules(verdict) == {"setup-over-budget"}
    assert verdict.setup_seconds == pytest.approx(80.0)


def test_setup_seconds_falls_back_to_row_duration():
    view = make_view("success", [("Set up job", "success", ["only"]), ("Complete job", "success", [])])
    assert setup_seconds(view) == 1.0
    assert setup_seconds(make_view("success", [("x", "success", [])])) is None


# -- log markers -----------------------------------------------------------------------------------------


def test_job_log_markers():
    view = make_view("success", [SETUP, ("build", "success", ["hello world", "WARNING: stale"]),
                                 ("Complete job", "success", ["🏁  Job succeeded"])])
    ok = run(view, expect(job="success", log_markers={"job_must": ["hello world", "🏁  Job succeeded"],
                                                      "job_must_not": ["panic"]}))
    assert ok.violations == ()
    bad = run(view, expect(job="success", log_markers={"job_must": ["goodbye"], "job_must_not": ["WARNING: stale"]}))
    assert sorted(v.rule for v in bad.violations) == ["marker-missing", "marker-present"]


def test_runner_log_markers_without_runner_log_is_report_only():
    exp = expect(job="success", log_markers={"runner_must": ["Cleaning up network for job"]})
    verdict = run(make_view("success", GREEN), exp, Observation(runner_log=None,
                                                                unavailable={"runner_log": "existing instance"}))
    assert rules(verdict) == {"observation-unavailable"}
    assert verdict.violations[0].severity == "report"
    assert "existing instance" in verdict.violations[0].message
    assert verdict.ok and verdict.failing == ()


def test_runner_log_markers_checked_when_available():
    exp = expect(job="success", log_markers={"runner_must": ["Cleaning up network for job"],
                                             "runner_must_not": ["unable to send final job logs and status"]})
    good = run(make_view("success", GREEN), exp, Observation(runner_log="x Cleaning up network for job test y"))
    assert good.violations == ()
    bad = run(make_view("success", GREEN), exp, Observation(runner_log="unable to send final job logs and status"))
    assert sorted(v.rule for v in bad.violations) == ["marker-missing", "marker-present"]


def test_runner_log_markers_on_recorded_docker_runner_log(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-12.1.2/docker-ok")
    view = JobView.from_view(rec.last_view_payload())
    exp = Expect.parse({"kind": "docker", "job": "success",
                        "log_markers": {"runner_must": ["Cleaning up network for job"]}}, "docker-ok")
    assert run(view, exp, Observation(runner_log=rec.runner_log)).violations == ()
    native = recording_at("forgejo-11.0.15/runner-12.1.2/native-ok").runner_log
    assert rules(run(view, exp, Observation(runner_log=native))) == {"marker-missing"}


def test_extra_violations_are_appended():
    extra = Violation("runner-stalled", "no update for 20s")
    verdict = run(make_view("success", GREEN), expect(job="success"), Observation(extra=(extra,)))
    assert verdict.violations == (extra,)
    assert not verdict.ok


# -- selfcheck and rendering -----------------------------------------------------------------------------


def test_selfcheck_mismatch():
    view = make_view("failure", [SETUP, ("a", "success", ["a"]),
                                 ("Complete job", "failure", ["⭐ Run Post regress/slow-post@v1"])])
    verdict = run(view, expect(job="failure", log_markers={"runner_must": ["x"]}))
    assert set(verdict.rules()) == {"green-steps-failed-job", "post-step-cut-off", "observation-unavailable"}
    assert selfcheck_mismatch(verdict, ["green-steps-failed-job", "post-step-cut-off"]) is None
    problem = selfcheck_mismatch(verdict, ["green-steps-failed-job", "post-step-cut-off", "runner-stalled"])
    assert problem is not None and "runner-stalled" in problem
    assert selfcheck_mismatch(verdict, ["green-steps-failed-job"]) is not None


def test_selfcheck_mismatch_when_judge_finds_nothing():
    verdict = run(make_view("success", GREEN), expect(job="success"))
    assert "the judge found []" in selfcheck_mismatch(verdict, ["hidden-post-failure"])


def test_violation_str_and_rules_order():
    assert str(Violation("r", "m")) == "[r] m"
    assert str(Violation("r", "m", "report")) == "[r] m (report only)"
    view = make_view("failure", [SETUP, ("a", "success", ["a"]), ("Complete job", "failure", [])], done=False)
    verdict = run(view, expect(job="failure"))
    assert verdict.rules() == ("job-not-done", "green-steps-failed-job")


def test_table_and_json():
    view = make_view("failure", [SETUP, ("a", "success", ["a"]), ("Complete job", "failure", ["⭐ Run Post P"])])
    verdict = run(view, expect(job="failure"), Observation(setup_seconds=3.0, cold=False))
    table = verdict.table()
    assert table.startswith("job: failure")
    assert "(post) P" in table and "no outcome line (cut off)" in table
    assert "setup: 3.0s (warm) / budget 20s" in table
    assert "[green-steps-failed-job]" in table
    data = verdict.to_json()
    assert data["ok"] is False and data["job"] == "failure"
    assert data["post_steps"] == [{"name": "P", "outcome": None}]
    assert [v["rule"] for v in data["violations"]] == ["green-steps-failed-job", "post-step-cut-off"]
    assert run(make_view("success", GREEN), expect(job="success")).table().endswith("violations: none")


# -- real-shaped payloads: recordings edited where the lab cannot be made to misbehave on demand ------------

POST_DEMO = "forgejo-11.0.15/runner-12.1.2/native-post"
COMPLETE = 3  # the "Complete job" row of the native-post recording


def edited(rec, edit) -> JobView:
    """The recording's final job view, after ``edit(payload)`` on a deep copy."""
    payload = copy.deepcopy(rec.last_view_payload())
    edit(payload)
    return JobView.from_view(payload)


def complete_log(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return next(e for e in payload["logs"]["stepsLog"] if e["step"] == COMPLETE)["lines"]


def duplicate_post(first_outcome: str):
    """The post step of native-post run twice: the first run ends ``first_outcome``, the second succeeds."""

    def edit(payload: dict[str, Any]) -> None:
        lines = complete_log(payload)
        start, ran, success, done = (dict(line) for line in lines)
        first = dict(success, message=f"  {first_outcome} - Post actions/post-demo@main")
        lines[:] = [start, ran, first, dict(start), dict(ran), success, done]
        for i, line in enumerate(lines, 1):
            line["index"] = i

    return edit


def test_duplicated_post_step_failure_is_not_hidden_by_second_success(recording_at):
    view = edited(recording_at(POST_DEMO), duplicate_post("❌  Failure"))
    verdict = run(view, expect(job="success", post_steps=["actions/post-demo@main"]))
    assert verdict.post_steps == (PostStep("actions/post-demo@main", Status.FAILURE),
                                  PostStep("actions/post-demo@main", Status.SUCCESS))
    assert rules(verdict) == {"hidden-post-failure"}
    both_ok = run(edited(recording_at(POST_DEMO), duplicate_post("✅  Success")), expect(job="success"))
    assert both_ok.violations == () and len(both_ok.post_steps) == 2


def test_post_steps_pair_each_start_with_the_next_outcome_of_that_name():
    lines = ["⭐ Run Post A", "⭐ Run Post B", "✅  Success - Post B", "❌  Failure - Post A",
             "⭐ Run Post A", "✅  Success - Post A [1.2s]", "⭐ Run Post A"]
    assert post_steps(lines) == (PostStep("A", Status.FAILURE), PostStep("B", Status.SUCCESS),
                                 PostStep("A", Status.SUCCESS), PostStep("A", None))
    assert post_steps(["✅  Success - Post lonely"]) == (PostStep("lonely", Status.SUCCESS),)


def cut_off_post(payload: dict[str, Any]) -> None:
    """native-post with its post step's outcome line gone (what a lost final log upload looks like)."""
    lines = complete_log(payload)
    lines[:] = [line for line in lines if "Success - Post" not in line["message"]]


@pytest.mark.parametrize("job", ["success", "failure", "cancelled"])
def test_cut_off_post_step_is_reported_whatever_the_job_status(recording_at, job):
    def edit(payload: dict[str, Any]) -> None:
        cut_off_post(payload)
        payload["state"]["run"]["jobs"][0]["status"] = job

    verdict = run(edited(recording_at(POST_DEMO), edit), expect(job=job))
    assert verdict.post_steps == (PostStep("actions/post-demo@main", None),)
    assert "post-step-cut-off" in rules(verdict)
    cut = next(v for v in verdict.violations if v.rule == "post-step-cut-off")
    assert "'actions/post-demo@main'" in cut.message and f"(job {job})" in cut.message
    if job == "success":
        assert rules(verdict) == {"post-step-cut-off"}


def test_cut_off_not_reported_while_the_job_runs():
    view = make_view("running", [SETUP, ("a", "success", ["a"]), ("Complete job", "running", ["⭐ Run Post P"])],
                     done=False)
    assert rules(run(view, expect(job="success"))) == {"job-not-done", "unexpected-job-result"}


def test_failed_expected_post_step_in_a_failed_job():
    view = make_view("failure", [SETUP, ("a", "failure", ["exit 1"]),
                                 ("Complete job", "failure", ["⭐ Run Post X", "❌  Failure - Post X"])])
    verdict = run(view, expect(job="failure", post_steps=["X"]))
    assert rules(verdict) == {"unexpected-step-result"}
    assert "post step 'X' failed" in verdict.violations[0].message


# -- several jobs --------------------------------------------------------------------------------------------

F13 = "forgejo-13.0.5/runner-12.1.2"


def two_jobs(first: dict[str, Any], second: dict[str, Any], names=("lint", "unit"),
             statuses: tuple[str | None, str | None] = (None, None)) -> list[JobView]:
    """A two-job run from two recorded final views: each view lists both jobs, shows its own."""
    a, b = copy.deepcopy(first), copy.deepcopy(second)
    jobs = []
    for i, payload in enumerate((a, b)):
        job = dict(payload["state"]["run"]["jobs"][0], id=10 + i, name=names[i])
        if statuses[i]:
            job["status"] = statuses[i]
        jobs.append(job)
    for i, payload in enumerate((a, b)):
        payload["state"]["run"]["jobs"] = copy.deepcopy(jobs)
        payload["state"]["currentJob"]["title"] = names[i]
    return [JobView.from_view(a), JobView.from_view(b)]


def test_second_job_green_steps_failed_is_found(recording_at):
    ok = recording_at(f"{F13}/native-ok").last_view_payload()
    views = two_jobs(ok, ok, statuses=(None, "failure"))
    verdict = run(views, expect(job="success", marker="selfcheck", expected_violations=["green-steps-failed-job"]))
    assert rules(verdict) == {"green-steps-failed-job", "unexpected-job-result"}
    green = verdict.violations[0]
    assert green.rule == "green-steps-failed-job" and green.message.startswith("job 'unit': ")
    assert verdict.job_statuses == (Status.SUCCESS, Status.FAILURE)
    assert verdict.job_status is Status.SUCCESS  # job 0's, as before
    only_first = run(views[0], expect(job="success"))  # one view: job 1 judged on its status only
    assert rules(only_first) == {"unexpected-job-result", "observation-unavailable"}
    assert only_first.jobs[1] == JobVerdict(1, "unit", Status.FAILURE, (), (), None, viewed=False)


def test_expected_result_per_job_id(recording_at):
    views = two_jobs(recording_at(f"{F13}/native-ok").last_view_payload(),
                     recording_at(f"{F13}/native-fail").last_view_payload())
    assert run(views, expect(job="success", jobs={"unit": "failure"})).violations == ()
    plain = run(views, expect(job="success"))
    assert rules(plain) == {"unexpected-job-result"}
    message = plain.violations[0].message
    assert message.startswith("job 'unit' is failure, expected success") and "legitimate" in message
    unknown = run(views, expect(job="success", jobs={"unit": "failure", "deploy": "success"}))
    assert rules(unknown) == {"missing-job"} and "'deploy'" in unknown.violations[0].message


def test_job_ids_match_expectations_when_names_differ(recording_at):
    views = two_jobs(recording_at(f"{F13}/native-ok").last_view_payload(),
                     recording_at(f"{F13}/native-fail").last_view_payload(), names=("Lint it", "Unit tests"))
    exp = expect(job="success", jobs={"unit": "failure"})
    assert run(views, exp).rules() == ("unexpected-job-result", "missing-job")
    by_id = judge(views, exp, Observation(), default_setup=DEFAULT_SETUP, job_ids=("lint", "unit"))
    assert by_id.violations == ()


def test_step_expectations_match_whichever_job_has_the_row(recording_at):
    views = two_jobs(recording_at(f"{F13}/native-ok").last_view_payload(),
                     recording_at(f"{F13}/native-fail").last_view_payload())
    exp = expect(job="success", jobs={"unit": "failure"},
                 steps={"echo first-step": "success", "echo must-be-skipped": "skipped"})
    assert run(views, exp).violations == ()
    wrong = run(views, expect(job="success", jobs={"unit": "failure"},
                              steps={"echo must-be-skipped": "success", "echo nowhere": "success"}))
    assert [v.rule for v in wrong.violations] == ["unexpected-step-result", "missing-step"]
    assert wrong.violations[0].message.startswith("job 'unit': step 'echo must-be-skipped' is skipped")
    assert "'lint': ['echo first-step'" in wrong.violations[1].message


def test_markers_over_every_job_log(recording_at):
    views = two_jobs(recording_at(f"{F13}/native-ok").last_view_payload(),
                     recording_at(f"{F13}/native-fail").last_view_payload())
    exp = expect(job="success", jobs={"unit": "failure"},
                 log_markers={"job_must": ["before-exit", "first-step"], "job_must_not": ["🏁  Job failed"]})
    verdict = run(views, exp)
    assert [v.message for v in verdict.violations] == ["job 'unit': job log contains '🏁  Job failed'"]


def test_several_jobs_table_json_and_slowest_setup(recording_at):
    ok = recording_at(f"{F13}/native-ok").last_view_payload()
    views = two_jobs(ok, recording_at(f"{F13}/native-fail").last_view_payload())
    verdict = run(views, expect(job="success", jobs={"unit": "failure"}))
    assert verdict.setup_seconds == max(setup_seconds(v) for v in views)
    table = verdict.table()
    assert table.startswith("run: 2 jobs\njob 0 'lint': success\n")
    assert "job 1 'unit': failure" in table and "echo must-be-skipped" in table and "(slowest job)" in table
    data = verdict.to_json()
    assert data["job"] == "success" and [s["name"] for s in data["steps"]] == [s.name for s in views[0].steps]
    assert [(j["index"], j["name"], j["status"], j["viewed"]) for j in data["jobs"]] == [
        (0, "lint", "success", True), (1, "unit", "failure", True)]
    slow = run(views, expect(job="success", jobs={"unit": "failure"}, setup_budget={"cold": 0.001}),
               Observation(cold=True))
    assert [v.rule for v in slow.violations] == ["setup-over-budget", "setup-over-budget"]
    assert slow.violations[1].message.startswith("job 'unit': 'Set up job' took")


def test_same_view_passed_for_two_job_indexes_is_flagged(recording_at):
    views = two_jobs(recording_at(f"{F13}/native-ok").last_view_payload(),
                     recording_at(f"{F13}/native-fail").last_view_payload())
    verdict = run([views[0], views[0]], expect(job="success", jobs={"unit": "failure"}))
    assert "job-view-mismatch" in rules(verdict)
    assert "job index 1 shows job 'lint', not 'unit'" in verdict.violations[0].message


def test_verdict_built_without_jobs_still_renders():
    verdict = Verdict((), Status.SUCCESS, (("a", Status.SUCCESS, 1.0),), (), None, None, None)
    assert verdict.job_statuses == (Status.SUCCESS,)
    assert verdict.to_json()["jobs"][0]["steps"] == [{"name": "a", "status": "success", "duration": 1.0}]
    assert verdict.table().startswith("job: success\n  a")


def test_judge_needs_a_view():
    with pytest.raises(ValueError, match="at least one job view"):
        run([])


# -- run-level errors (v13 preExecutionError) ------------------------------------------------------------------

REJECTION = "Workflow was not run: jobs.test: unknown key 'runs_on' (line 4)"  # illustrative text


def rejected(payload: dict[str, Any], *, keep_jobs: bool) -> None:
    """A v13 final view edited into a rejected run: the error in ``state.run``, no task, no steps."""
    run_state = payload["state"]["run"]
    run_state.update(status="failure", done=True, preExecutionError=REJECTION)
    run_state["jobs"] = [dict(run_state["jobs"][0], status="failure")] if keep_jobs else []
    payload["state"]["currentJob"].update(steps=[], detail="")
    payload["logs"]["stepsLog"] = []


@pytest.mark.parametrize("keep_jobs", [False, True])
def test_pre_execution_error_is_workflow_rejected(recording_at, keep_jobs):
    view = edited(recording_at(f"{F13}/native-ok"), lambda p: rejected(p, keep_jobs=keep_jobs))
    assert view.run_error == REJECTION
    verdict = run(view, expect(job="success"))
    assert verdict.violations[0] == Violation("workflow-rejected", f"Forgejo did not run the workflow; its error: "
                                                                   f"{REJECTION}")
    assert verdict.violations[0].severity == "fail" and not verdict.ok
    if keep_jobs:
        assert rules(verdict) == {"workflow-rejected", "unexpected-job-result"}
    else:
        assert rules(verdict) == {"workflow-rejected"}  # no "job is unknown" beside it


def test_done_run_without_jobs_is_workflow_rejected(recording_at):
    def edit(payload: dict[str, Any]) -> None:
        rejected(payload, keep_jobs=False)
        payload["state"]["run"]["preExecutionError"] = ""

    verdict = run(edited(recording_at(f"{F13}/native-ok"), edit), expect(job="success"))
    assert rules(verdict) == {"workflow-rejected"}
    assert "without a single job" in verdict.violations[0].message


# -- the "Set up job" window -----------------------------------------------------------------------------------


def test_setup_window_ends_at_run_main_not_at_the_rows_last_line(recording_at):
    view = JobView.from_view(recording_at("forgejo-11.0.15/runner-12.1.2/docker-ok").last_view_payload())
    setup = view.step("Set up job")
    run_main = next(line for line in setup.lines if line.message.startswith("⭐ Run Main cat /etc/os-release"))
    assert setup.lines[-1].message.startswith("  🐳  docker exec")  # the first step's own lines follow it
    assert setup_window(view) == (setup.lines[0].timestamp, run_main.timestamp)
    old = setup.lines[-1].timestamp - setup.lines[0].timestamp
    assert setup_seconds(view) == pytest.approx(run_main.timestamp - setup.lines[0].timestamp)
    assert old - setup_seconds(view) > 0.2  # the old window counted the first step's docker exec calls


def test_setup_window_excludes_a_javascript_actions_add_matcher_line(recording_at):
    def edit(payload: dict[str, Any]) -> None:  # an action that registers a problem matcher (e.g. checkout)
        lines = payload["logs"]["stepsLog"][0]["lines"]
        last = lines[-1]
        lines.append(dict(last, index=last["index"] + 1, timestamp=last["timestamp"] + 0.2,
                          message="❓ add-matcher /run/act/actions/post-demo/.github/problem-matcher.json"))

    view = edited(recording_at(POST_DEMO), edit)
    setup = view.step("Set up job")
    assert setup.lines[-1].message.startswith("❓ add-matcher")
    assert setup_window(view)[1] == setup.lines[-2].timestamp  # ⭐ Run Main actions/post-demo@main


def test_setup_window_fallbacks():
    no_marker = make_view("success", [("Set up job", "success", ["a", "b", "c"]), ("x", "success", ["x"]),
                                      ("Complete job", "success", [])], step_seconds=2.0)
    assert setup_window(no_marker) == (1000.0, 1006.0)  # the first workflow step's first line
    marker_in_step = make_view("success", [("Set up job", "success", ["a", "b"]),
                                           ("x", "success", ["⭐ Run Main x", "x"]), ("Complete job", "success", [])])
    assert setup_window(marker_in_step) == (1000.0, 1001.0)
    pre = make_view("success", [("Set up job", "success", ["a", "⭐ Run Pre cache", "⭐ Run Main x"]),
                                ("Complete job", "success", [])])
    assert setup_window(pre) == (1000.0, 1000.5)
    assert setup_window(make_view("success", [("Set up job", "success", ["only"])])) == (1000.0, 1001.0)
    assert setup_window(make_view("success", [("x", "success", [])])) is None


# -- stale-action: a changed action's printed version against the commit its tag points at now ------------------

REFS = "Non-terminating error while running 'git clone': some refs were not updated"


def _movetag_view(*setup: str, printed: str = "movetag-version: C") -> JobView:
    return make_view("success", [("Set up job", "success", ["runner received task", *setup, "⭐ Run Main movetag"]),
                                 ("movetag", "success", [printed]),
                                 ("Complete job", "success", ["🏁  Job succeeded"])])


def _want(marker: str = "C"):
    from harness.verdict import ActionVersion

    return ActionVersion("regress/movetag", "v1", "77e98e14519200000000", marker)


def test_stale_action_quotes_what_ran_what_the_tag_points_at_and_the_git_refs_line():
    verdict = judge(_movetag_view(REFS, printed="movetag-version: B"), expect(job="success"),
                    Observation(actions=(_want(),)), default_setup=DEFAULT_SETUP)
    (stale,) = [v for v in verdict.failing if v.rule == "stale-action"]
    assert stale.message == (f"job log {REFS!r}, then regress/movetag@v1 printed 'movetag-version: B' though v1 is at "
                             "77e98e145192 (movetag-version: C): outdated action code ran")
    assert verdict.job_status is Status.SUCCESS and rules(verdict) == {"stale-action"}


def test_the_current_version_passes_and_a_silent_action_is_a_missing_marker():
    assert judge(_movetag_view(), expect(job="success"), Observation(actions=(_want(),)), default_setup=DEFAULT_SETUP).ok
    silent = judge(_movetag_view(printed="hello"), expect(job="success"), Observation(actions=(_want(),)),
                   default_setup=DEFAULT_SETUP)
    assert [(v.rule, v.message) for v in silent.failing] == [(
        "marker-missing", "no job log line 'movetag-version:': regress/movetag@v1 (now 77e98e145192, version C) "
        "never said which version ran")]
    assert judge(_movetag_view(printed="movetag-version: B"), expect(job="success"), Observation(),
                 default_setup=DEFAULT_SETUP).ok  # no changed action: nothing to compare
