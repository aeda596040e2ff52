"""harness.forgejo.models against the recorded Forgejo payloads and hand-made edge cases."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from harness.forgejo.models import (
    DispatchInfo,
    JobView,
    ServerVersion,
    Status,
    Task,
    first_log_runner,
    parse_api_time,
    parse_go_duration,
)

# -- recorded job views ------------------------------------------------------------------------------


def test_every_recorded_view_response_parses(recording):
    responses = recording.view_responses()
    assert responses, "a recording without a single job-view answer"
    for record in responses:
        view = JobView.from_view(record["response_body"])
        assert isinstance(view.run_status, Status)
        assert all(isinstance(s.status, Status) for s in view.steps)


def test_no_recorded_status_is_unknown(recording):
    for payload in recording.job_view_payloads():
        view = JobView.from_view(payload)
        assert view.run_status is not Status.UNKNOWN
        assert all(j.status is not Status.UNKNOWN for j in view.jobs)
        assert all(s.status is not Status.UNKNOWN for s in view.steps)


def test_last_poll_matches_meta_final_state(recording):
    meta = recording.meta
    view = JobView.from_view(recording.last_view_payload())
    assert view.done
    assert view.run_status == Status(meta["final_run_status"])
    assert view.job_status(0) == Status(meta["final_job_status"])
    assert view.job_detail == meta["final_job_detail"]
    assert [(s.name, str(s.status)) for s in view.steps] == [(s["summary"], s["status"]) for s in meta["steps"]]


def test_last_poll_durations_match_meta(recording):
    view = JobView.from_view(recording.last_view_payload())
    assert [s.duration for s in view.steps] == [parse_go_duration(s["duration"]) for s in recording.meta["steps"]]


def test_synthetic_rows_frame_the_workflow_steps(recording):
    view = JobView.from_view(recording.last_view_payload())
    if not view.steps:
        assert recording.scenario == "never-picked"
        return
    assert view.steps[0].name == "Set up job" and view.steps[0].synthetic
    assert view.steps[-1].name == "Complete job" and view.steps[-1].synthetic
    assert view.workflow_steps() == view.steps[1:-1]
    assert not any(s.synthetic for s in view.workflow_steps())


def test_attempts_only_on_forgejo_13(recording):
    view = JobView.from_view(recording.last_view_payload())
    assert view.attempts == (1 if recording.forgejo.startswith("13.") else None)


def test_killed_job_is_running_before_the_zombie_stop(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-12.1.2/killed-after-last-step")
    views = [JobView.from_view(p) for p in rec.job_view_payloads()]
    running = [v for v in views if v.step("sleep 3") is not None and v.step("sleep 3").status is Status.RUNNING]
    assert running, "the recording holds polls with 'sleep 3' running after the kill"
    assert not any(v.done for v in running)
    assert views[-1].step("sleep 3").status is Status.FAILURE
    assert views[-1].step("sleep 3").duration >= 30


def test_native_post_outcome_is_in_complete_job_log(recording_at):
    view = JobView.from_view(recording_at("forgejo-11.0.15/runner-12.1.2/native-post").last_view_payload())
    complete = view.step("Complete job")
    messages = [line.message for line in complete.lines]
    assert "⭐ Run Post actions/post-demo@main" in messages
    assert any("Success - Post actions/post-demo@main" in m for m in messages)
    assert view.log_lines()[0].message.startswith("r12-f11(version:v12.1.2) received task")


def test_log_lines_carry_timestamps_and_start(recording_at):
    view = JobView.from_view(recording_at("forgejo-13.0.5/runner-12.1.2/native-ok").last_view_payload())
    setup = view.step("Set up job")
    assert setup.started is not None and setup.started > 1.7e9
    assert [line.index for line in setup.lines] == list(range(1, len(setup.lines) + 1))
    assert all(line.timestamp >= setup.started for line in setup.lines)


def test_never_picked_view_has_no_steps(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-12.1.2/never-picked")
    views = [JobView.from_view(p) for p in rec.job_view_payloads()]
    assert views[0].job_status(0) is Status.WAITING and not views[0].done
    assert views[-1].job_status(0) is Status.CANCELLED and views[-1].done
    assert all(v.steps == () for v in views)


def test_cancel_answer_parses_as_empty_view(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-12.1.2/never-picked")
    cancel = [r for r in rec.view_responses() if r["url_path"].endswith("/cancel")]
    assert len(cancel) == 1
    view = JobView.from_view(cancel[0]["response_body"])
    assert view.steps == () and view.jobs == () and view.run_status is Status.UNKNOWN


# -- synthetic views -------------------------------------------------------------------------------------


def _view(run_status="running", done=False, job_status="running", steps=()):
    return {
        "state": {
            "run": {"status": run_status, "done": done, "title": "t",
                    "jobs": [{"id": 7, "name": "test", "status": job_status, "duration": "1m5s"}]},
            "currentJob": {"title": "test", "detail": "", "steps": list(steps)},
        },
        "logs": {"stepsLog": []},
    }


def test_unknown_status_becomes_unknown():
    view = JobView.from_view(_view(run_status="exploded", job_status="Mystery",
                                   steps=[{"summary": "x", "status": "weird", "duration": "1s"}]))
    assert view.run_status is Status.UNKNOWN
    assert view.job_status(0) is Status.UNKNOWN
    assert view.steps[0].status is Status.UNKNOWN


@pytest.mark.parametrize("value", [None, "", 3, "succeeded", "done"])
def test_status_parse_never_raises(value):
    assert Status.parse(value) is Status.UNKNOWN


def test_status_parse_is_case_insensitive():
    assert Status.parse("SUCCESS") is Status.SUCCESS
    assert Status.parse("Cancelled") is Status.CANCELLED


def test_status_done_set():
    assert {s for s in Status if s.done} == {Status.SUCCESS, Status.FAILURE, Status.CANCELLED, Status.SKIPPED}


def test_view_done_needs_every_job_done():
    payload = _view(run_status="success", done=True, job_status="running")
    assert not JobView.from_view(payload).done
    payload["state"]["run"]["jobs"][0]["status"] = "success"
    assert JobView.from_view(payload).done


def test_job_status_out_of_range_is_unknown():
    view = JobView.from_view(_view())
    assert view.job_status(1) is Status.UNKNOWN
    assert view.job_status(-1) is Status.UNKNOWN


def test_job_summary_duration_parsed():
    assert JobView.from_view(_view()).jobs[0].duration == 65.0


def test_step_lookup_and_summary():
    view = JobView.from_view(_view(steps=[{"summary": "Set up job", "status": "success", "duration": "2s"},
                                          {"summary": "build", "status": "running", "duration": "3s"}]))
    assert view.step("build").status is Status.RUNNING
    assert view.step("absent") is None
    assert "build=running" in view.summary()
    assert "test: running" in view.summary()


def test_empty_payload_parses():
    view = JobView.from_view({})
    assert view.steps == () and view.jobs == () and not view.run_done
    assert "no jobs" in view.summary() and "no steps" in view.summary()


# -- durations -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0.0), ("41s", 41.0), ("1m5s", 65.0), ("1h2m3s", 3723.0), ("1.5s", 1.5), ("250ms", 0.25),
     ("3µs", 3e-6), ("3us", 3e-6), ("7ns", 7e-9), ("2m0.5s", 120.5)],
)
def test_parse_go_duration(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "   ", "abc", "5", "1m5", "5 s", "-", "1d", "s5"])
def test_parse_go_duration_rejects(text):
    assert parse_go_duration(text) is None


def test_parse_go_duration_none_input():
    assert parse_go_duration(None) is None  # type: ignore[arg-type]


# -- REST payloads ---------------------------------------------------------------------------------------


def test_tasks_from_recorded_api(recording):
    tasks_calls = recording.api("/actions/tasks")
    assert len(tasks_calls) == 1
    tasks = Task.list_from_api(tasks_calls[0]["response_body"])
    if recording.meta.get("task_id") is None:
        assert tasks == ()
        return
    assert len(tasks) == 1
    task = tasks[0]
    assert task.id == recording.meta["task_id"]
    assert task.job_name == "test" and task.run_number == 1
    assert task.status == Status(recording.meta["final_job_status"])
    assert task.workflow_id == recording.meta["workflow_file"]
    assert task.updated_at is not None and task.updated_at.utcoffset() == timedelta(0)
    assert task.created_at <= task.updated_at


def test_task_updated_at_keeps_offset():
    task = Task.from_api({"id": 9, "name": "b", "run_number": 2, "status": "running",
                          "updated_at": "2026-11-27T21:49:08+02:00", "created_at": "0001-01-01T00:00:00Z"})
    assert task.updated_at == datetime(2026, 11, 27, 19, 49, 8, tzinfo=UTC)
    assert task.updated_at.utcoffset() == timedelta(hours=2)
    assert task.created_at is None
    assert task.status is Status.RUNNING


def test_task_list_empty_and_missing():
    assert Task.list_from_api({"workflow_runs": [], "total_count": 0}) == ()
    assert Task.list_from_api({}) == ()


@pytest.mark.parametrize("text", [None, "", "not a time", "1970-01-01T00:00:00Z"])
def test_parse_api_time_unset(text):
    assert parse_api_time(text) is None


def test_parse_api_time_z():
    assert parse_api_time("2026-11-27T19:52:37Z") == datetime(2026, 11, 27, 19, 52, 37, tzinfo=UTC)


def test_dispatch_info_from_recording(recording_at):
    rec = recording_at("forgejo-13.0.5/runner-12.1.2/dispatch")
    answers = [r for r in rec.exchanges if r["url_path"].endswith("/dispatches") and r["status"] == 201]
    assert len(answers) == 1
    info = DispatchInfo.from_api(answers[0]["response_body"])
    assert info.run_number == 1 and info.jobs == ("test",) and info.run_id > 0


def test_server_version_from_recording(recording):
    answer = recording.api("/api/v1/version")[0]["response_body"]
    version = ServerVersion.from_api(answer)
    assert version.raw.startswith(recording.forgejo + "+")


# -- first job-log line ----------------------------------------------------------------------------------


def test_first_log_runner_on_recorded_job_log(recording):
    lines = recording.job_log.splitlines()
    found = first_log_runner(lines)
    if recording.meta.get("task_id") is None:
        assert found is None
        return
    assert found == (recording.meta["runner_name"], recording.meta["runner_version"])


def test_first_log_runner_known_line():
    line = "2026-11-27T19:49:37.4077986Z r12-f11(version:v12.1.2) received task 5 of job test, be triggered by event: push"
    assert first_log_runner([line]) == ("r12-f11", "12.1.2")
    assert first_log_runner(["r11-f11(version:11.3.1) received task 1 of job x"]) == ("r11-f11", "11.3.1")


def test_first_log_runner_only_looks_at_the_head():
    lines = ["noise"] * 5 + ["r12-f11(version:v12.1.2) received task 5 of job test"]
    assert first_log_runner(lines) is None
    assert first_log_runner([]) is None


# -- run-level error (v13 ``state.run.preExecutionError``) ---------------------------------------------------


def test_recorded_runs_have_no_run_error(recording):
    for payload in recording.job_view_payloads():
        has_key = "preExecutionError" in (payload.get("state") or {}).get("run", {})
        assert has_key == (recording.forgejo.startswith("13.") and bool(payload.get("state")))
        assert JobView.from_view(payload).run_error == ""


def test_pre_execution_error_is_kept_verbatim(recording_at):
    payload = copy.deepcopy(recording_at("forgejo-13.0.5/runner-12.1.2/native-ok").job_view_payloads()[0])
    text = "  Workflow was not run: jobs.test: 'runs_on' is not a valid key\n(line 4)"
    payload["state"]["run"].update(preExecutionError=text, status="failure", done=True, jobs=[])
    view = JobView.from_view(payload)
    assert view.run_error == text
    assert view.summary().endswith(f"; run error: {text}")
    payload["state"]["run"]["preExecutionError"] = {"code": 3}
    assert JobView.from_view(payload).run_error == "{'code': 3}"  # never dropped, whatever its shape
