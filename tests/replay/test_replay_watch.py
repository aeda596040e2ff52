"""Replay tier: watch_job through whole recorded scenarios, with faults injected on top."""

from __future__ import annotations

import time

import pytest
from replay_server import JOB_VIEW, Fault, fast_sleep, load_exchanges, load_meta, scenario_dir, small_budgets

from harness.errors import PollTimeout
from harness.forgejo.client import ForgejoClient
from harness.forgejo.models import Status, parse_go_duration
from harness.forgejo.web import JobRef, WebSession
from harness.watch import PickupTimeout, WatchResult, watch_job

TOKEN = "tok-canary-123456"
JOB_VIEW_RE = JOB_VIEW.pattern


def _web(server) -> WebSession:
    client = ForgejoClient(server.url, TOKEN)
    web = WebSession(server.url, client.server_version())
    web.login("regress", "pw-canary-654321")
    return web


def _ref(meta: dict) -> JobRef:
    owner, repo = meta["repo"].split("/")
    return JobRef(owner, repo, meta["run_index"])


def _watch(web: WebSession, meta: dict, **budgets: float) -> WatchResult:
    return watch_job(
        web, _ref(meta), label="native", t_pushed=time.monotonic(), budgets=small_budgets(**budgets), sleep=fast_sleep
    )


def _steps(meta: dict) -> list[tuple[str, Status, float | None]]:
    return [(s["summary"], Status(s["status"]), parse_go_duration(s["duration"])) for s in meta["steps"]]


@pytest.mark.parametrize(
    ("forgejo", "scenario"),
    [
        ("11.0.15", "native-ok"),
        ("13.0.5", "native-ok"),
        ("11.0.15", "native-fail"),
        ("13.0.5", "killed-after-last-step"),
        ("11.0.15", "killed-after-last-step"),
    ],
)
def test_watch_replays_the_scenario_to_its_recorded_end(replay, forgejo, scenario):
    directory = scenario_dir(forgejo, "12.1.2", scenario)
    meta = load_meta(directory)
    server = replay(directory)
    notes: list[str] = []
    result = watch_job(
        _web(server),
        _ref(meta),
        label="native",
        t_pushed=time.monotonic(),
        budgets=small_budgets(),
        sleep=fast_sleep,
        notify=notes.append,
    )
    view = result.view
    assert view.done
    assert view.job_status(0) == Status(meta["final_job_status"])
    assert view.run_status == Status(meta["final_run_status"])
    assert view.job_detail == meta["final_job_detail"]
    assert [(s.name, s.status, s.duration) for s in view.steps] == _steps(meta)
    assert view.steps[0].lines, "the final view carries the logs of every step"
    assert result.t_pushed <= result.t_appeared <= result.t_picked <= result.t_done_seen
    # the first poll answered 404 "resource does not exist" and the watch went on
    posts = server.requests("POST", JOB_VIEW_RE)
    first = next(e for e in load_exchanges(directory) if JOB_VIEW.match(e["url_path"]))
    assert posts[0].status == first["status"] == 404 and "resource does not exist" in first["response_body"]
    assert all(p.status == 200 for p in posts[1:])  # every later poll carried a valid CSRF token
    assert all(p.path.endswith("/attempt/1") == forgejo.startswith("13.") for p in posts)
    assert posts[-1].json()["logCursors"] == [{"step": i, "cursor": 0, "expanded": True} for i in range(len(view.steps))]
    assert not server.misses()
    assert view.attempts == (1 if forgejo.startswith("13.") else None)
    assert any("waiting for the run to appear" in n for n in notes)


def test_killed_after_last_step_times_out_on_a_small_job_done_budget(replay):
    directory = scenario_dir("11.0.15", "12.1.2", "killed-after-last-step")
    server = replay(directory)
    web = _web(server)
    t0 = time.monotonic()
    with pytest.raises(PollTimeout) as info:
        _watch(web, load_meta(directory), job_done=0.3)
    assert time.monotonic() - t0 < 3
    assert info.value.budget_name == "job_done"
    assert "sleep 3=" in info.value.last and "done=False" in info.value.last


def test_never_picked_cancels_the_run(replay):
    directory = scenario_dir("11.0.15", "12.1.2", "never-picked")
    meta = load_meta(directory)
    label = "no-runner-has-this-label"
    assert f"runs-on: {label}" in (directory / "workflow.yml").read_text(encoding="utf-8")
    server = replay(directory)
    web = _web(server)
    t0 = time.monotonic()
    with pytest.raises(PickupTimeout) as info:
        watch_job(web, _ref(meta), label=label, t_pushed=t0, budgets=small_budgets(pickup=0.5), sleep=fast_sleep)
    assert time.monotonic() - t0 < 5
    message = str(info.value)
    assert repr(label) in message
    assert "the run was cancelled" in message
    assert "pickup=0.5s" in message
    assert "waiting" in message
    (cancel,) = server.requests("POST", r"/actions/runs/1/cancel$")
    assert cancel.status == 200 and cancel.headers.get("x-csrf-token")
    assert cancel.path == f"/{meta['repo']}/actions/runs/1/cancel"
    # the watch polled several times while the job waited; after the cancel the view shows it cancelled
    assert len(server.requests("POST", JOB_VIEW_RE)) >= 3
    view = web.job_view(_ref(meta), with_logs=False)
    assert view is not None and view.done and view.job_status(0) == Status.CANCELLED
    assert view.steps == ()


def test_run_that_never_appears_times_out_on_run_appears(replay):
    directory = scenario_dir("11.0.15", "12.1.2", "native-ok")
    meta = load_meta(directory)
    # keep only the first job-view answer (404 "resource does not exist"): it is repeated forever
    exchanges = [e for e in load_exchanges(directory) if not JOB_VIEW.match(e["url_path"]) or e["status"] == 404]
    server = replay(exchanges)
    web = _web(server)
    budget = 0.6
    t0 = time.monotonic()
    with pytest.raises(PollTimeout) as info:
        _watch(web, meta, run_appears=budget)
    elapsed = time.monotonic() - t0
    assert budget <= elapsed < budget + 2.5
    assert info.value.budget_name == "run_appears"
    assert info.value.budget == budget
    assert "404" in info.value.last
    assert "run_appears=0.6s" in str(info.value)
    posts = server.requests("POST", JOB_VIEW_RE)
    assert len(posts) >= 3 and {p.status for p in posts} == {404}


@pytest.mark.parametrize(
    "fault",
    [
        Fault(JOB_VIEW_RE, nth=2, reset=True),
        Fault(JOB_VIEW_RE, nth=2, status=502),
        Fault(JOB_VIEW_RE, nth=3, status=503),
        Fault(JOB_VIEW_RE, nth=2, status=400, body="Invalid CSRF token.\n"),
    ],
    ids=["reset", "502", "503", "csrf-400"],
)
def test_transient_job_view_failure_is_retried_by_the_watch(replay, fault):
    directory = scenario_dir("13.0.5", "12.1.2", "native-ok")
    meta = load_meta(directory)
    server = replay(directory, faults=[fault])
    web = _web(server)
    result = _watch(web, meta)
    assert result.view.job_status(0) == Status.SUCCESS
    assert [s.name for s in result.view.steps] == [s["summary"] for s in meta["steps"]]
    posts = server.requests("POST", JOB_VIEW_RE)
    faulted = [p for p in posts if p.fault is not None]
    assert faulted and faulted[0] is posts[fault.nth - 1]
    assert faulted[0].status == (None if fault.reset else fault.status)
    assert posts[fault.nth].status in (200, 404)  # the watch went on after the fault
    if fault.status == 400:  # the refused token was dropped and a fresh one fetched
        assert len(server.requests("GET", "^/$")) == 2
        assert posts[fault.nth].headers["x-csrf-token"] == server.issued_cookies["_csrf"][-1]


def test_job_view_slower_than_the_read_timeout_is_retried(replay):
    directory = scenario_dir("11.0.15", "12.1.2", "native-ok")
    server = replay(directory, faults=[Fault(JOB_VIEW_RE, nth=2, delay=0.8)])
    web = _web(server)
    web.timeout = (1.0, 0.2)
    result = _watch(web, load_meta(directory))
    assert result.view.job_status(0) == Status.SUCCESS
    assert server.requests("POST", JOB_VIEW_RE)[1].fault is not None
