"""harness.verdict: the judge on real recordings and on synthetic job views (built in the view's JSON shape)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.forgejo.models import JobView, LogLine, Status
from harness.scenarios import Expect
from harness.verdict import Observation, PostStep, Violation, judge, post_steps, selfcheck_mismatch, setup_seconds

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
def test_killed_after_last_step_is_a_legit_failure(recording_at, forgejo_runner):
    view = JobView.from_view(recording_at(f"{forgejo_runner}/killed-after-last-step").last_view_payload())
    assert view.job_status(0) is Status.FAILURE
    assert view.step("sleep 3").status is Status.FAILURE
    verdict = run(view, expect(job="failure"))
    assert "green-steps-failed-job" not in rules(verdict)
    assert verdict.violations == ()
    wrong = run(view, expect(job="success"))
    assert rules(wrong) == {"unexpected-job-result"}
    assert "legitimate failure" in wrong.violations[0].message


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
