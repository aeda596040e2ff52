"""Replay tier: the write calls (create repo, commit, dispatch) under injected faults.

A plain fault (502, reset) means the server did nothing; a ``lost`` fault means the server did the
write and only its answer was lost. The client must retry the first and find the second instead of
writing twice. What the recordings lack (the multi-file commit, the read-back of a file, a 409, the
empty answers of a server where nothing happened yet) is derived from the recorded answers.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from replay_server import Fault, load_exchanges, load_meta, scenario_dir

from harness.budgets import BUDGETS
from harness.errors import ApiError, HarnessError
from harness.forgejo.client import ForgejoClient, OurSideError, RepoFile

TOKEN = "tok-canary-123456"
NATIVE_OK = scenario_dir("11.0.15", "12.1.2", "native-ok")
DISPATCH = {"11.0.15": scenario_dir("11.0.15", "12.1.2", "dispatch"), "13.0.5": scenario_dir("13.0.5", "12.1.2", "dispatch")}
REPOS = r"^/api/v1/user/repos$"
COMMIT = r"^/api/v1/repos/[^/]+/[^/]+/contents$"
DISPATCHES = r"/actions/workflows/dispatch\.yml/dispatches$"
FAST = replace(BUDGETS, api_write=5.0, dispatch_lookup=0.5)


def _json(seq: int, method: str, path: str, status: int, body: Any) -> dict[str, Any]:
    return {"seq": seq, "method": method, "url_path": path, "status": status,
            "response_headers": {"Content-Type": "application/json;charset=utf-8"}, "response_body": body}


def _recorded(exchanges: list[dict[str, Any]], method: str, suffix: str) -> dict[str, Any]:
    return next(e for e in exchanges if e["method"] == method and e["url_path"].endswith(suffix))


def _write_exchanges(directory, *, conflict: bool = False, file_first: int | None = None) -> list[dict[str, Any]]:
    """The recording plus what Forgejo would answer to the calls the recorder did not make.

    ``conflict``: a second repo creation answers 409 (and the repo and the user can be read).
    ``file_first``: the read-back of the workflow file answers this status first (404: not committed yet).
    """
    exchanges = load_exchanges(directory)
    repo = load_meta(directory)["repo"]
    workflow = f".forgejo/workflows/{load_meta(directory).get('workflow_file') or directory.name + '.yml'}"
    single = _recorded(exchanges, "POST", f"/contents/{workflow}")["response_body"]
    created = _recorded(exchanges, "POST", "/user/repos")["response_body"]
    extra = [
        _json(901, "POST", f"/api/v1/repos/{repo}/contents", 201,
              {"files": [single["content"]], "commit": single["commit"], "verification": single["verification"]}),
        _json(903, "GET", f"/api/v1/repos/{repo}/contents/{workflow}", 200, single["content"]),
    ]
    if file_first is not None:
        extra.insert(1, _json(902, "GET", f"/api/v1/repos/{repo}/contents/{workflow}", file_first,
                              {"message": "object does not exist [id: , rel_path: .forgejo]", "url": ""}))
    if conflict:
        extra += [
            _json(904, "POST", "/api/v1/user/repos", 409,
                  {"message": "The repository with the same name already exists.", "url": ""}),
            _json(905, "GET", "/api/v1/user", 200, {"id": 1, "login": repo.split("/")[0]}),
            _json(906, "GET", f"/api/v1/repos/{repo}", 200, created),
        ]
    return exchanges + extra


def _name(directory) -> str:
    return load_meta(directory)["repo"].split("/")[1]


def _events(client: ForgejoClient) -> list[str]:
    return [r["event"] for r in client.transcript.records() if "event" in r]


# -- create repo ----------------------------------------------------------------------------------
def test_create_repo_502_is_retried_and_makes_one_repo(replay):
    server = replay(_write_exchanges(NATIVE_OK), faults=[Fault(REPOS, method="POST", status=502)])
    client = ForgejoClient(server.url, TOKEN, budgets=FAST)
    t0 = time.monotonic()
    repo = client.create_repo(_name(NATIVE_OK))
    elapsed = time.monotonic() - t0
    assert repo["full_name"] == load_meta(NATIVE_OK)["repo"]
    assert [s.status for s in server.requests("POST", REPOS)] == [502, 201]
    assert len(server.served("POST", REPOS)) == 1, "one repo created on the server"
    assert _events(client) == ["write-failed"]
    failed = next(r for r in client.transcript.records() if r.get("event") == "write-failed")
    assert (failed["attempt"], failed["status"], failed["reached_server"]) == (1, 502, True)
    assert elapsed < FAST.api_write


def test_create_repo_502_forever_is_our_side_error_within_the_budget(replay):
    budgets = replace(FAST, api_write=1.5)
    faults = [Fault(REPOS, nth=n, method="POST", status=502) for n in range(1, 40)]
    server = replay(_write_exchanges(NATIVE_OK), faults=faults)
    client = ForgejoClient(server.url, TOKEN, budgets=budgets)
    t0 = time.monotonic()
    with pytest.raises(OurSideError) as info:
        client.create_repo(_name(NATIVE_OK))
    elapsed = time.monotonic() - t0
    error = info.value
    assert isinstance(error, ApiError) and isinstance(error, HarnessError)  # the cell engine: inconclusive
    posts = server.requests("POST", REPOS)
    assert len(error.attempts) == len(posts) >= 2
    assert not server.served("POST", REPOS), "no attempt did anything on the server"
    assert error.status == 502
    text = str(error)
    assert f"create repo {_name(NATIVE_OK)}" in text and f"{len(posts)} attempt(s)" in text
    assert "last status: HTTP 502" in text and "not the runner under test" in text
    assert "api_write=1.5s" in text and "REGRESS_BUDGET_API_WRITE" in text
    # the back-off never sleeps past the budget: the last attempt is at its end, none after it
    assert budgets.api_write <= error.attempts[-1].elapsed < budgets.api_write + 0.5
    assert elapsed < budgets.api_write + 0.5
    assert _events(client)[-1] == "write-gave-up"


def test_create_repo_lost_answer_then_409_is_ours(replay):
    directory = NATIVE_OK
    server = replay(_write_exchanges(directory, conflict=True),
                    faults=[Fault(REPOS, method="POST", status=502, lost=True)])
    client = ForgejoClient(server.url, TOKEN, budgets=FAST)
    repo = client.create_repo(_name(directory))
    assert repo["full_name"] == load_meta(directory)["repo"]
    assert [s.status for s in server.requests("POST", REPOS)] == [502, 409]
    assert [s.seq for s in server.served("POST", REPOS)] == [5, 904], "created once (seq 5), then 409"
    assert [s.path for s in server.requests("GET")] == ["/api/v1/user", f"/api/v1/repos/{load_meta(directory)['repo']}"]
    assert _events(client) == ["write-failed", "write-recovered"]


def test_create_repo_409_without_a_lost_answer_stays_an_error(replay):
    exchanges = [e for e in _write_exchanges(NATIVE_OK, conflict=True)
                 if not (e["method"] == "POST" and e["url_path"] == "/api/v1/user/repos" and e["status"] == 201)]
    server = replay(exchanges)
    with pytest.raises(ApiError) as info:
        ForgejoClient(server.url, TOKEN, budgets=FAST).create_repo(_name(NATIVE_OK))
    assert info.value.status == 409 and not isinstance(info.value, OurSideError)
    assert "already exists" in str(info.value)
    assert len(server.requests("POST", REPOS)) == 1


def test_create_repo_reset_is_retried(replay):
    server = replay(_write_exchanges(NATIVE_OK), faults=[Fault(REPOS, method="POST", reset=True)])
    client = ForgejoClient(server.url, TOKEN, budgets=FAST)
    assert client.create_repo(_name(NATIVE_OK))["full_name"] == load_meta(NATIVE_OK)["repo"]
    assert [s.status for s in server.requests("POST", REPOS)] == [None, 201]
    unanswered = [r for r in client.transcript.records() if r.get("method") == "POST" and r["status"] is None]
    assert len(unanswered) == 1 and "ConnectionError" in unanswered[0]["error"]


# -- commit -----------------------------------------------------------------------------------------
def _commit(client: ForgejoClient, directory) -> str:
    files = [RepoFile(".forgejo/workflows/native-ok.yml", (directory / "workflow.yml").read_bytes())]
    return client.commit_files("regress", _name(directory), files, "regress: native-ok")


def test_commit_lost_answer_is_found_by_read_back_not_committed_twice(replay):
    server = replay(_write_exchanges(NATIVE_OK), faults=[Fault(COMMIT, method="POST", status=502, lost=True)])
    client = ForgejoClient(server.url, TOKEN, budgets=FAST)
    assert _commit(client, NATIVE_OK) == load_meta(NATIVE_OK)["commit_sha"]
    assert len(server.requests("POST", COMMIT)) == 1, "no second commit"
    (read,) = server.requests("GET", r"/contents/")
    assert read.path.endswith("/contents/.forgejo/workflows/native-ok.yml") and read.query == "ref=main"
    assert _events(client) == ["write-failed", "write-lookup", "write-recovered"]


def test_commit_502_not_landed_is_posted_again(replay):
    server = replay(_write_exchanges(NATIVE_OK, file_first=404), faults=[Fault(COMMIT, method="POST", status=502)])
    client = ForgejoClient(server.url, TOKEN, budgets=FAST)
    assert _commit(client, NATIVE_OK) == load_meta(NATIVE_OK)["commit_sha"]
    assert [s.status for s in server.requests("POST", COMMIT)] == [502, 201]
    assert [s.status for s in server.requests("GET", r"/contents/")] == [404]
    assert _events(client) == ["write-failed", "write-lookup"]


def test_commit_read_back_of_other_content_is_not_taken_for_ours(replay):
    server = replay(_write_exchanges(NATIVE_OK), faults=[Fault(COMMIT, method="POST", status=502)])
    client = ForgejoClient(server.url, TOKEN, budgets=FAST)
    files = [RepoFile(".forgejo/workflows/native-ok.yml", b"name: something else\n")]
    client.commit_files("regress", _name(NATIVE_OK), files, "regress: other")
    assert [s.status for s in server.requests("POST", COMMIT)] == [502, 201], "content differs: posted again"


# -- dispatch ---------------------------------------------------------------------------------------
def _dispatch_exchanges(forgejo: str, *, nothing_yet: bool = False) -> list[dict[str, Any]]:
    """The dispatch recording; ``nothing_yet``: the run and task lists answer empty first (v11: always)."""
    exchanges = load_exchanges(DISPATCH[forgejo])
    if not nothing_yet:
        return exchanges
    repo = load_meta(DISPATCH[forgejo])["repo"]
    if forgejo == "11.0.15":  # a task would show the run at once: none may be there during the lookup
        exchanges = [e for e in exchanges if not e["url_path"].endswith("/actions/tasks")]
        return [*exchanges, _json(910, "GET", f"/api/v1/repos/{repo}/actions/tasks", 200,
                                  {"workflow_runs": [], "total_count": 0})]
    empty = _json(910, "GET", f"/api/v1/repos/{repo}/actions/runs", 200, {"workflow_runs": [], "total_count": 0})
    return [empty, *exchanges]


def _dispatch(client: ForgejoClient, forgejo: str):
    return client.dispatch("regress", _name(DISPATCH[forgejo]), "dispatch.yml")


@pytest.mark.parametrize(("forgejo", "lookup", "run_id"), [("13.0.5", "/actions/runs", 5), ("11.0.15", "/actions/tasks", 0)])
def test_dispatch_lost_answer_finds_the_run_and_does_not_dispatch_again(replay, forgejo, lookup, run_id):
    server = replay(_dispatch_exchanges(forgejo), faults=[Fault(DISPATCHES, method="POST", status=502, lost=True)])
    client = ForgejoClient(server.url, TOKEN, budgets=FAST)
    info = _dispatch(client, forgejo)
    assert (info.run_number, info.run_id) == (1, run_id)
    assert len(server.requests("POST", DISPATCHES)) == 1, "no second dispatch"
    assert [s.path.endswith(lookup) for s in server.requests("GET", r"/actions/(runs|tasks)$")] == [True]
    assert _events(client) == ["write-failed", "write-lookup", "write-recovered"]


@pytest.mark.parametrize("forgejo", sorted(DISPATCH))
def test_dispatch_502_not_landed_is_sent_again_after_the_lookup(replay, forgejo):
    server = replay(_dispatch_exchanges(forgejo, nothing_yet=True),
                    faults=[Fault(DISPATCHES, method="POST", status=502)])
    client = ForgejoClient(server.url, TOKEN, budgets=FAST)
    assert _dispatch(client, forgejo).run_number == 1
    assert [s.status for s in server.requests("POST", DISPATCHES)] == [502, 201]
    sequence = [(s.method, s.path.rsplit("/", 1)[-1]) for s in server.requests(path=r"/actions/")]
    assert sequence[0] == ("POST", "dispatches") and sequence[-1] == ("POST", "dispatches")
    assert {p for _, p in sequence[1:-1]} == {"tasks" if forgejo == "11.0.15" else "runs"}


def test_dispatch_502_forever_looks_up_before_every_retry(replay):
    budgets = replace(FAST, api_write=1.5)
    faults = [Fault(DISPATCHES, nth=n, method="POST", status=502) for n in range(1, 40)]
    exchanges = _dispatch_exchanges("13.0.5", nothing_yet=True)
    exchanges = [e for e in exchanges if not (e["url_path"].endswith("/actions/runs") and e["seq"] != 910)]
    server = replay(exchanges, faults=faults)
    client = ForgejoClient(server.url, TOKEN, budgets=budgets)
    with pytest.raises(OurSideError) as info:
        _dispatch(client, "13.0.5")
    kinds = [s.method for s in server.requests(path=r"/actions/")]
    posts = kinds.count("POST")
    assert len(info.value.attempts) == posts >= 2
    assert kinds == ["POST", "GET"] * posts, "a lookup after every failed dispatch, the last one included"
    assert "dispatch dispatch.yml" in str(info.value) and "last status: HTTP 502" in str(info.value)
