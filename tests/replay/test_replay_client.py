"""Replay tier: the REST client and the web session against recorded Forgejo 11 and 13 exchanges."""

from __future__ import annotations

import json

import pytest
from replay_server import JOB_VIEW, Fault, load_exchanges, load_meta, scenario_dir

from harness.errors import ApiError, ConfigError, TransientApiError
from harness.forgejo.client import ForgejoClient
from harness.forgejo.transcript import Transcript
from harness.forgejo.web import JobRef, WebSession
from harness.versions import Version

NATIVE_OK = {
    "11.0.15": scenario_dir("11.0.15", "12.1.2", "native-ok"),
    "13.0.5": scenario_dir("13.0.5", "12.1.2", "native-ok"),
}
TOKEN = "tok-canary-123456"
PASSWORD = "pw-canary-654321"


def _ref(meta: dict) -> JobRef:
    owner, repo = meta["repo"].split("/")
    return JobRef(owner, repo, meta["run_index"])


@pytest.mark.parametrize(("forgejo", "expected"), [("11.0.15", Version(11, 0, 15)), ("13.0.5", Version(13, 0, 5))])
def test_server_version_parses_the_recorded_version(replay, forgejo, expected):
    server = replay(NATIVE_OK[forgejo])
    client = ForgejoClient(server.url, TOKEN)
    assert client.server_version() == expected
    assert client.server_version() == expected  # cached: one request only
    assert [(s.method, s.path, s.status) for s in server.requests()] == [("GET", "/api/v1/version", 200)]
    assert server.requests()[0].headers["authorization"] == f"token {TOKEN}"


def test_version_502_then_200_is_retried(replay):
    server = replay(NATIVE_OK["11.0.15"], faults=[Fault(r"^/api/v1/version$", nth=1, status=502)])
    client = ForgejoClient(server.url, TOKEN)
    assert client.server_version() == Version(11, 0, 15)
    assert [s.status for s in server.requests("GET", "/api/v1/version")] == [502, 200]
    assert [r["status"] for r in client.transcript.records()] == [502, 200]


def test_version_5xx_forever_gives_up_after_the_retries(replay):
    faults = [Fault(r"^/api/v1/version$", nth=n, status=503) for n in range(1, 10)]
    server = replay(NATIVE_OK["11.0.15"], faults=faults)
    client = ForgejoClient(server.url, TOKEN, retries=3)
    with pytest.raises(TransientApiError) as info:
        client.server_version()
    assert info.value.status == 503
    assert len(server.requests("GET", "/api/v1/version")) == 3


def test_post_500_is_not_retried(replay):
    """A POST outside the three guarded writes (create repo, commit, dispatch) stays a single attempt."""
    server = replay(NATIVE_OK["11.0.15"], faults=[Fault(r"^/api/v1/admin/unadopted/", method="POST", status=500)])
    client = ForgejoClient(server.url, TOKEN)
    with pytest.raises(ApiError) as info:
        client.adopt_repo("regress", "native-ok-replay")
    assert info.value.status == 500
    assert "HTTP 500" in str(info.value)
    assert len(server.requests("POST", r"^/api/v1/admin/unadopted/")) == 1


def test_create_repo_replays_the_recorded_answer(replay):
    server = replay(NATIVE_OK["11.0.15"])
    repo = ForgejoClient(server.url, TOKEN).create_repo("native-ok-replay")
    assert repo["full_name"] == load_meta(NATIVE_OK["11.0.15"])["repo"]
    sent = server.requests("POST", r"^/api/v1/user/repos$")[0].json()
    assert sent["name"] == "native-ok-replay" and sent["default_branch"] == "main"


def test_whoami_401_is_a_config_error_naming_the_token(replay):
    exchanges = [
        {
            "seq": 1,
            "method": "GET",
            "url_path": "/api/v1/user",
            "status": 401,
            "response_headers": {"Content-Type": "application/json;charset=utf-8"},
            "response_body": {"message": "token is required", "url": "http://172.17.0.1:3111/api/swagger"},
        }
    ]
    server = replay(exchanges)
    with pytest.raises(ConfigError, match="token") as info:
        ForgejoClient(server.url, "bad-token-000000").whoami()
    assert "HTTP 401" in str(info.value)
    assert len(server.requests("GET", "/api/v1/user")) == 1  # a 401 is not retried


def test_whoami_returns_the_login(replay):
    exchanges = [
        {
            "seq": 1,
            "method": "GET",
            "url_path": "/api/v1/user",
            "status": 200,
            "response_headers": {"Content-Type": "application/json;charset=utf-8"},
            "response_body": {"id": 1, "login": "regress"},
        }
    ]
    assert ForgejoClient(replay(exchanges).url, TOKEN).whoami() == "regress"


@pytest.mark.parametrize("forgejo", sorted(NATIVE_OK))
def test_login_refreshes_the_csrf_token(replay, forgejo):
    server = replay(NATIVE_OK[forgejo])
    web = WebSession(server.url, Version.parse(forgejo))
    web.login("regress", PASSWORD)
    assert web.logged_in
    assert [(s.method, s.path) for s in server.requests()] == [("POST", "/user/login"), ("GET", "/")]
    assert server.requests("POST", "/user/login")[0].status == 303
    # the token used after login is the one issued after it (the pre-login one is void)
    assert web.session.cookies.get("_csrf") == server.issued_cookies["_csrf"][-1]
    assert "i_like_gitea" in web.session.cookies


@pytest.mark.parametrize("forgejo", sorted(NATIVE_OK))
def test_job_view_first_poll_404_then_views(replay, forgejo):
    directory = NATIVE_OK[forgejo]
    server = replay(directory)
    web = WebSession(server.url, Version.parse(forgejo))
    web.login("regress", PASSWORD)
    ref = _ref(load_meta(directory))
    assert web.job_view(ref, with_logs=False) is None  # "resource does not exist": the run is not there yet
    view = web.job_view(ref, with_logs=False)
    assert view is not None
    posts = server.requests("POST", JOB_VIEW.pattern)
    assert [s.status for s in posts] == [404, 200]
    assert all(s.headers.get("x-csrf-token") for s in posts)
    assert all(p.path.endswith("/attempt/1") == (forgejo == "13.0.5") for p in posts)
    assert posts[-1].json() == {"logCursors": []}


@pytest.mark.parametrize("forgejo", sorted(NATIVE_OK))
def test_raw_log_uses_the_versions_url(replay, forgejo):
    directory = NATIVE_OK[forgejo]
    server = replay(directory)
    web = WebSession(server.url, Version.parse(forgejo))
    text = web.raw_log(_ref(load_meta(directory)))
    assert text == (directory / "job.log").read_text(encoding="utf-8")
    (seen,) = server.requests("GET")
    assert seen.path.endswith("/attempt/1/logs" if forgejo == "13.0.5" else "/jobs/0/logs")


def test_raw_log_of_a_job_never_started_is_none(replay):
    directory = scenario_dir("11.0.15", "12.1.2", "never-picked")
    server = replay(directory)
    assert WebSession(server.url, Version(11, 0, 15)).raw_log(_ref(load_meta(directory))) is None
    assert [s.status for s in server.requests("GET")] == [404]


def test_job_view_post_without_csrf_header_is_refused_by_the_replay(replay):
    """The replay server's own CSRF check (so the watch tests prove the header is sent)."""
    server = replay(NATIVE_OK["11.0.15"])
    ref = _ref(load_meta(NATIVE_OK["11.0.15"]))
    web = WebSession(server.url, Version(11, 0, 15))
    response = web.session.post(server.url + f"/{ref.owner}/{ref.repo}/actions/runs/1/jobs/0", json={"logCursors": []})
    assert (response.status_code, response.text) == (400, "Invalid CSRF token.\n")


def _replay_session(replay, *, csrf_in_html: bool):
    directory = NATIVE_OK["11.0.15"]
    server = replay(directory, csrf_in_html=csrf_in_html)
    transcript = Transcript()
    client = ForgejoClient(server.url, TOKEN, transcript=transcript)
    web = WebSession(server.url, client.server_version(), transcript=transcript)
    web.login("regress", PASSWORD)
    client.create_repo("native-ok-replay")
    ref = _ref(load_meta(directory))
    while web.job_view(ref, with_logs=False) is None:
        pass
    assert web.full_job_view(ref) is not None
    assert web.raw_log(ref)
    return server, client


def test_transcript_records_the_exchanges_without_token_or_cookies(replay):
    server, client = _replay_session(replay, csrf_in_html=False)
    records = client.transcript.records()
    assert [(r["method"], r["status"]) for r in records[:4]] == [("GET", 200), ("POST", 303), ("GET", 200), ("POST", 201)]
    assert [r["url"].removeprefix(server.url) for r in records[:3]] == ["/api/v1/version", "/user/login", "/"]
    job_views = [r for r in records if JOB_VIEW.search(r["url"].removeprefix(server.url))]
    assert [r["status"] for r in job_views[:2]] == [404, 200]
    assert job_views[-1]["request_json"]["logCursors"], "the full view asks for the logs of every step"
    assert records[-1]["response_body"].startswith((NATIVE_OK["11.0.15"] / "job.log").read_text(encoding="utf-8")[:60])
    assert len(records) == len(server.requests())
    dumped = json.dumps(records)
    assert TOKEN not in dumped
    assert PASSWORD not in dumped
    values = server.cookie_values()
    assert {"_csrf", "i_like_gitea"} <= set(server.issued_cookies)
    assert values and not [v for v in values if v in dumped]


def test_transcript_redacts_the_csrf_token_of_pages_in_known_forms(replay):
    server, client = _replay_session(replay, csrf_in_html=True)
    home = next(r for r in client.transcript.records() if r["url"] == server.url + "/")
    assert "csrfToken: '<redacted>'" in home["response_body"]
    assert '"x-csrf-token": "<redacted>"' in home["response_body"]


def test_transcript_never_holds_the_live_csrf_token(replay):
    server, client = _replay_session(replay, csrf_in_html=True)
    dumped = json.dumps(client.transcript.records())
    leaked = [v for v in server.issued_cookies["_csrf"] if v in dumped]
    assert not leaked


def test_exchanges_file_is_well_formed():
    """Guard for the data: the fields the replay relies on are in every record."""
    for directory in NATIVE_OK.values():
        for record in load_exchanges(directory):
            assert {"seq", "method", "url_path", "status", "response_headers", "response_body"} <= set(record)
