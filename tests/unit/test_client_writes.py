"""harness.forgejo.writes: what the write retries decide on, on recorded payloads and real socket errors."""

from __future__ import annotations

import socket

import pytest
import requests
from urllib3.exceptions import ProtocolError

from harness.errors import ApiError, HarnessError, TransientApiError
from harness.forgejo.models import DispatchInfo, Task
from harness.forgejo.transcript import Transcript
from harness.forgejo.writes import (
    Attempt,
    OurSideError,
    RepoContent,
    WorkflowRun,
    dispatch_from_runs,
    dispatch_from_tasks,
    landed_commit,
    our_side_message,
    reached_server,
)
from harness.redact import register_secret

F11 = "forgejo-11.0.15/runner-12.1.2"
F13 = "forgejo-13.0.5/runner-12.1.2"


def _wrapped(exc: BaseException) -> TransientApiError:
    """As ``HttpBase.request`` raises it: ``raise TransientApiError(...) from exc``."""
    try:
        raise TransientApiError(f"POST /x: {type(exc).__name__}: {exc}") from exc
    except TransientApiError as wrapped:
        return wrapped


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- reached_server -------------------------------------------------------------------------------
def test_a_refused_connection_never_reached_the_server():
    with pytest.raises(requests.ConnectionError) as info:
        requests.post(f"http://127.0.0.1:{_closed_port()}/api/v1/user/repos", json={}, timeout=2)
    assert reached_server(info.value) is False
    assert reached_server(_wrapped(info.value)) is False


def test_a_connect_timeout_never_reached_the_server():
    assert reached_server(_wrapped(requests.ConnectTimeout("connect timed out"))) is False


@pytest.mark.parametrize(
    "error",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))),
    ],
    ids=["read-timeout", "reset-after-sending"],
)
def test_a_timeout_or_reset_after_sending_may_have_reached_the_server(error):
    assert reached_server(_wrapped(error)) is True


def test_an_http_answer_reached_the_server():
    assert reached_server(TransientApiError("POST /x answered HTTP 502", status=502)) is True


# -- the error when the budget runs out ----------------------------------------------------------
ATTEMPTS = (
    Attempt(1, 0.0, None, "POST /api/v1/user/repos: ConnectionError: refused", reached=False),
    Attempt(2, 0.51, 502, "POST /api/v1/user/repos answered HTTP 502: Bad Gateway", reached=True),
)


def test_attempt_describe():
    assert [a.describe() for a in ATTEMPTS] == [
        "#1 at 0.00s: POST /api/v1/user/repos: ConnectionError: refused (not sent)",
        "#2 at 0.51s: HTTP 502",
    ]


def test_our_side_error_names_the_call_the_attempts_the_last_status_and_whose_fault():
    error = OurSideError("create repo regress/x", ATTEMPTS, budget_name="api_write", budget=30.0, url="http://f/")
    assert isinstance(error, ApiError) and isinstance(error, HarnessError)
    assert (error.status, error.url, error.call, error.attempts) == (502, "http://f/", "create repo regress/x", ATTEMPTS)
    text = str(error)
    assert text.startswith("the suite's own call to Forgejo failed: create repo regress/x did not succeed in 2 attempt(s)")
    assert "over 0.5s (budget api_write=30s); last status: HTTP 502; last error: POST /api/v1/user/repos answered" in text
    assert "not the runner under test" in text and "REGRESS_BUDGET_API_WRITE" in text


def test_our_side_message_without_an_answer():
    text = our_side_message("dispatch ci.yml", ATTEMPTS[:1], "api_write", 5)
    assert "last status: no answer; last error: POST /api/v1/user/repos: ConnectionError: refused" in text


# -- commit read-back --------------------------------------------------------------------------------
def _recorded_file(recording_at, scenario: str) -> RepoContent:
    rec = recording_at(f"{F11}/{scenario}")
    (created,) = rec.api(f"/contents/.forgejo/workflows/{scenario}.yml", "POST")
    return RepoContent.from_api(created["response_body"]["content"])


def test_repo_content_parses_the_recorded_file(recording_at):
    rec = recording_at(f"{F11}/native-ok")
    file = _recorded_file(recording_at, "native-ok")
    assert file.path == ".forgejo/workflows/native-ok.yml"
    assert file.content == rec.workflow.encode()
    assert file.last_commit_sha == rec.meta["commit_sha"]


def test_repo_content_of_a_directory_has_no_content():
    assert RepoContent.from_api({"type": "dir", "path": ".forgejo", "last_commit_sha": "abc"}).content is None


def test_landed_commit_needs_every_file_with_our_bytes(recording_at):
    file = _recorded_file(recording_at, "native-ok")
    wanted = {file.path: file.content or b""}
    assert landed_commit(wanted, {file.path: file}) == file.last_commit_sha
    assert landed_commit({file.path: b"other"}, {file.path: file}) is None
    assert landed_commit(wanted, {file.path: None}) is None
    assert landed_commit({**wanted, "b.yml": b"x"}, {file.path: file}) is None


def test_landed_commit_refuses_files_of_different_commits_or_without_one(recording_at):
    a = _recorded_file(recording_at, "native-ok")
    b = RepoContent("b.yml", b"b", "0" * 40)
    assert landed_commit({a.path: a.content or b"", b.path: b"b"}, {a.path: a, b.path: b}) is None
    nameless = RepoContent(a.path, a.content, "")
    assert landed_commit({a.path: a.content or b""}, {a.path: nameless}) is None


# -- dispatch look-up ---------------------------------------------------------------------------------
def test_runs_api_dispatched_run_is_found_by_trigger_event(recording_at):
    (answer,) = recording_at(f"{F13}/dispatch").api("/actions/runs")
    (run,) = WorkflowRun.list_from_api(answer["response_body"])
    assert (run.id, run.index, run.workflow_id, run.event) == (5, 1, "dispatch.yml", "workflow_dispatch")
    assert answer["response_body"]["workflow_runs"][0]["event"] == ""  # v13: the plain event is empty
    assert dispatch_from_runs([run], "dispatch.yml") == DispatchInfo(5, 1, ())
    assert dispatch_from_runs([run], "other.yml") is None


def test_runs_api_push_run_is_not_a_dispatch(recording_at):
    (answer,) = recording_at(f"{F13}/native-ok").api("/actions/runs")
    runs = WorkflowRun.list_from_api(answer["response_body"])
    assert [r.event for r in runs] == ["push"]
    assert dispatch_from_runs(runs, "native-ok.yml") is None


def test_runs_api_newest_dispatch_wins(recording_at):
    (answer,) = recording_at(f"{F13}/dispatch").api("/actions/runs")
    first = answer["response_body"]["workflow_runs"][0]
    runs = WorkflowRun.list_from_api({"workflow_runs": [{**first, "id": 9, "index_in_repo": 2}, first]})
    assert dispatch_from_runs(runs, "dispatch.yml") == DispatchInfo(9, 2, ())


def test_tasks_api_dispatched_run(recording_at):
    (answer,) = recording_at(f"{F11}/dispatch").api("/actions/tasks")
    tasks = Task.list_from_api(answer["response_body"])
    assert dispatch_from_tasks(tasks, "dispatch.yml") == DispatchInfo(0, 1, ("test",))
    assert dispatch_from_tasks(tasks, "other.yml") is None
    assert dispatch_from_tasks((), "dispatch.yml") is None


def test_tasks_api_push_task_is_not_a_dispatch(recording_at):
    (answer,) = recording_at(f"{F11}/native-ok").api("/actions/tasks")
    assert dispatch_from_tasks(Task.list_from_api(answer["response_body"]), "native-ok.yml") is None


# -- transcript ---------------------------------------------------------------------------------------
def test_transcript_keeps_unanswered_requests_and_retry_events_redacted():
    secret = "tok-canary-write-987654"
    register_secret(secret)
    transcript = Transcript()
    transcript.record_error("post", f"http://f/api/v1/user/repos?token={secret}", {"name": "x"}, f"reset {secret}")
    transcript.note("write-failed", call="create repo x", attempt=1, status=None, error=f"boom {secret}")
    first, second = transcript.records()
    assert (first["seq"], first["method"], first["status"], first["request_json"]) == (1, "POST", None, {"name": "x"})
    assert (second["seq"], second["event"], second["attempt"], second["call"]) == (2, "write-failed", 1, "create repo x")
    assert secret not in repr(transcript.records())
