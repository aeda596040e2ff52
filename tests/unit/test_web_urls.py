"""harness.forgejo.web: per-version web routes, checked against the URLs the recordings really used."""

from __future__ import annotations

import pytest

from harness.forgejo.client import has_runs_api
from harness.forgejo.web import JobRef, job_view_path, raw_log_path
from harness.versions import Version

V11, V12, V13 = Version(11, 0, 15), Version(12, 0, 0), Version(13, 0, 5)
REF = JobRef("regress", "repo", 1)


def recorded_ref(recording) -> JobRef:
    owner, repo = recording.meta["repo"].split("/")
    return JobRef(owner, repo, recording.meta["run_index"])


@pytest.mark.parametrize(
    ("server", "path"),
    [(V11, "/regress/repo/actions/runs/1/jobs/0"), (V12, "/regress/repo/actions/runs/1/jobs/0"),
     (Version(12, 9, 9), "/regress/repo/actions/runs/1/jobs/0"),
     (Version(13, 0, 0), "/regress/repo/actions/runs/1/jobs/0/attempt/1"),
     (V13, "/regress/repo/actions/runs/1/jobs/0/attempt/1")],
)
def test_job_view_path(server, path):
    assert job_view_path(server, REF) == path
    assert raw_log_path(server, REF) == path + "/logs"


def test_job_ref_fields_used():
    ref = JobRef("o", "r", run_index=7, job_index=2, attempt=3)
    assert job_view_path(V11, ref) == "/o/r/actions/runs/7/jobs/2"
    assert job_view_path(V13, ref) == "/o/r/actions/runs/7/jobs/2/attempt/3"


def test_has_runs_api():
    assert not has_runs_api(V11)
    assert has_runs_api(V12) and has_runs_api(V13)


def test_job_view_path_matches_recording(recording):
    server = Version.parse(recording.meta["forgejo_version"])
    paths = {r["url_path"] for r in recording.exchanges if r["method"] == "POST" and "/jobs/" in r["url_path"]}
    assert paths == {job_view_path(server, recorded_ref(recording))}


def test_raw_log_path_matches_recording(recording):
    server = Version.parse(recording.meta["forgejo_version"])
    gets = [r for r in recording.exchanges if r["method"] == "GET" and r["url_path"].endswith("/logs")]
    assert [r["url_path"] for r in gets] == [raw_log_path(server, recorded_ref(recording))]
    assert gets[0]["status"] == (404 if recording.scenario == "never-picked" else 200)


def test_runs_api_matches_recording(recording):
    server = Version.parse(recording.meta["forgejo_version"])
    runs = recording.api("/actions/runs")
    assert len(runs) == 1
    assert (runs[0]["status"] == 200) is has_runs_api(server)
