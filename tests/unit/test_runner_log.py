"""harness.observe.runner_log: signatures, byte windows and per-task attribution on recorded runner logs."""

from __future__ import annotations

import re

import pytest

from harness.observe.runner_log import SIGNATURES, attribute, matches, read_from, size
from harness.runners.process import DECLARED, POLLING


def names(text: str) -> set[str]:
    return {sig.name for sig, _ in matches(text)}


def test_network_cleanup_signature_matches_meta(recording):
    flag = recording.meta["runner_log_has_cleaning_up_network_for_job"]
    assert ("network-cleanup" in names(recording.runner_log)) is flag


def test_recorded_runs_have_no_failure_signature(recording):
    failing = [sig.name for sig, _ in matches(recording.runner_log) if sig.severity == "fail"]
    assert failing == []


def test_matches_returns_first_line():
    text = "a\nx ReportLog error: boom 1\ny ReportState error: boom 2\n"
    found = matches(text)
    assert [(s.name, line) for s, line in found] == [("report-error", "x ReportLog error: boom 1")]


@pytest.mark.parametrize(
    ("line", "name"),
    [("level=warning msg=\"Non-terminating error while running 'git clone': some refs were not updated\"",
      "git-refs-not-updated"),
     ("level=error msg=\"unable to send final job logs and status: deadline exceeded\"", "final-report-lost"),
     ("uploading final logs failed, but will be retried", "final-report-retry"),
     ("UpdateTask returned task result failure for a task that was in local state running", "server-cancelled"),
     ("unrecoverable error in the cache: disk full", "cache-fatal"),
     ("Could not start the cache server, cache will be disabled", "cache-disabled"),
     ("Error: incorrect container platform option 'any'", "platform-any"),
     ("git worktree add error: exit status 128", "worktree-error")],
)
def test_each_signature(line, name):
    assert names(line) == {name}


def test_signature_table_is_consistent():
    assert len({s.name for s in SIGNATURES}) == len(SIGNATURES)
    assert {s.severity for s in SIGNATURES} <= {"fail", "report", "info"}


# -- attribution -----------------------------------------------------------------------------------------


def test_attribute_keeps_own_task_of_recorded_docker_log(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-12.1.2/docker-ok")
    task_id = rec.meta["task_id"]
    kept = attribute(rec.runner_log, task_id=task_id, job="test", workflow="docker-ok")
    assert f"task {task_id} repo is" in kept
    assert "[docker-ok/test] Cleaning up network for job test" in kept
    assert f"Cleaning up network WORKFLOW-738d7d5bef79fa1ef7c93eab104c69bf for job FORGEJO-ACTIONS-TASK-{task_id}_" in kept
    assert "network-cleanup" in names(kept)


def test_attribute_keeps_every_line_of_a_single_task_window(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-12.1.2/docker-ok")
    kept = attribute(rec.runner_log, task_id=rec.meta["task_id"], job="test", workflow="docker-ok")
    assert kept.splitlines() == rec.runner_log.splitlines()


def test_attribute_drops_other_tasks_of_recorded_docker_log(recording_at):
    rec = recording_at("forgejo-11.0.15/runner-12.1.2/docker-ok")
    other = attribute(rec.runner_log, task_id=999, job="other-job", workflow="other-wf")
    assert f"task {rec.meta['task_id']} " not in other
    assert "FORGEJO-ACTIONS-TASK-" not in other
    assert "[docker-ok/test]" not in other
    assert "Cleaning up network for job test" not in other
    assert "Detected CPUs" in other, "daemon-wide lines naming no task or job are kept"


def test_attribute_interleaved_tasks():
    text = "\n".join([
        "task 5 repo is o/a",
        "task 6 repo is o/b",
        "[wf/build] ⭐ Run Main make",
        "[wf/test] ⭐ Run Main pytest",
        "Cleaning up network for job build, and network name is: N",
        "Cleaning up network for job test, and network name is: M",
        "Cleaning up container for job FORGEJO-ACTIONS-TASK-5_WORKFLOW-x_JOB-build",
        "Cleaning up container for job FORGEJO-ACTIONS-TASK-6_WORKFLOW-y_JOB-test",
        "level=error msg=\"unable to send final job logs and status\"",
    ])
    kept = attribute(text, task_id=5, job="build", workflow="wf").splitlines()
    assert kept == ["task 5 repo is o/a", "[wf/build] ⭐ Run Main make",
                    "Cleaning up network for job build, and network name is: N",
                    "Cleaning up container for job FORGEJO-ACTIONS-TASK-5_WORKFLOW-x_JOB-build",
                    "level=error msg=\"unable to send final job logs and status\""]


def test_attribute_without_task_id_drops_task_lines():
    assert attribute("task 5 repo is o/a\nplain\n", task_id=None, job="j", workflow="w") == "plain\n"
    assert attribute("", task_id=1, job="j", workflow="w") == ""


def test_daemon_restart_lines_are_recognised(recording_at):
    text = recording_at("forgejo-11.0.15/runner-12.1.2/killed-after-last-step").runner_log
    assert DECLARED.search(text) and POLLING.search(text)
    assert not DECLARED.search(recording_at("forgejo-11.0.15/runner-12.1.2/native-ok").runner_log)


# -- byte windows ----------------------------------------------------------------------------------------


def test_size_and_read_from(tmp_path):
    log = tmp_path / "runner.log"
    assert size(log) == 0 and read_from(log, 0) == ""
    log.write_text("before\n")
    offset = size(log)
    with log.open("a") as out:
        out.write("task 7 ✅ after\n")
    assert offset == 7
    assert read_from(log, offset) == "task 7 ✅ after\n"
    assert size(log) == len("before\ntask 7 ✅ after\n".encode())


def test_read_from_mid_character_does_not_raise(tmp_path):
    log = tmp_path / "runner.log"
    log.write_text("✅x")
    assert re.fullmatch(r"\ufffd+x", read_from(log, 1))
