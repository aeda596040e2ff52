"""REST client for Forgejo's ``/api/v1`` on ``requests.Session``.

Every call has a timeout; idempotent calls (GET, HEAD, DELETE) are retried on connection resets
and 5xx with tenacity. Other POST/PUT/PATCH calls are never retried blindly. The three writes a
cell depends on (``create_repo``, ``commit_files``, ``dispatch``) are retried within the
``api_write`` budget, each only after making sure the lost attempt did not already happen (see
:meth:`ForgejoClient._write`); when the budget runs out they raise
:class:`~harness.forgejo.writes.OurSideError`.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from harness.budgets import BUDGETS, Budgets
from harness.errors import ApiError, ConfigError, HarnessError, PollTimeout, TransientApiError
from harness.forgejo.models import DispatchInfo, ServerVersion, Task
from harness.forgejo.transcript import Transcript
from harness.forgejo.writes import (
    Attempt,
    OurSideError,
    RepoContent,
    WorkflowRun,
    dispatch_from_runs,
    dispatch_from_tasks,
    landed_commit,
    reached_server,
)
from harness.versions import Version
from harness.waiting import wait_for

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
T = TypeVar("T")
__all__ = ["ForgejoClient", "HttpBase", "OurSideError", "RepoFile"]


@dataclass(frozen=True)
class RepoFile:
    """One file of a multi-file commit."""

    path: str
    content: bytes


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, Mapping) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    return response.text.strip()[:300]


def has_runs_api(server: Version) -> bool:
    """``GET /repos/{o}/{r}/actions/runs`` exists from v12."""
    return server >= Version(12, 0, 0)


class HttpBase:
    """A ``requests.Session`` with timeouts, a transcript hook and retries for idempotent calls."""

    def __init__(self, base_url: str, *, transcript: Transcript | None = None, retries: int = 4,
                 trust_env: bool = True, budgets: Budgets = BUDGETS) -> None:
        """``trust_env=False`` for a lab's own server: no proxy from the environment applies to it."""
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"Forgejo URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = trust_env
        self.session.headers["User-Agent"] = "forgejo-runner-regress"
        self.transcript = transcript or Transcript()
        self.session.hooks["response"].append(lambda r, *a, **k: self.transcript.record(r))
        self.budgets = budgets
        self.timeout = (budgets.http_connect, budgets.http_read)
        self.retries = retries

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200,), **kwargs: Any) -> requests.Response:
        """Send one request; raise :class:`ApiError` unless the status is in ``ok``.

        Connection errors and 5xx on idempotent methods are retried (``retries`` attempts).
        """
        url = path if path.startswith("http") else self.base_url + path
        ok_set = set(ok)
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)

        def once() -> requests.Response:
            try:
                response = self.session.request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                self.transcript.record_error(method, url, kwargs.get("json"), f"{type(exc).__name__}: {exc}")
                raise TransientApiError(f"{method} {path}: {type(exc).__name__}: {exc}", url=url) from exc
            if response.status_code in ok_set:
                return response
            text = f"{method} {path} answered HTTP {response.status_code}: {_message(response)}"
            if response.status_code >= 500 or response.status_code == 429:
                raise TransientApiError(text, status=response.status_code, url=url)
            raise ApiError(text, status=response.status_code, url=url)

        if method.upper() not in IDEMPOTENT:
            return once()
        retrying = Retrying(
            retry=retry_if_exception_type(TransientApiError),
            stop=stop_after_attempt(self.retries),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        )
        return retrying(once)


class ForgejoClient(HttpBase):
    """Token-authenticated REST calls the suite needs."""

    def __init__(self, base_url: str, token: str | None, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        if token:
            self.session.headers["Authorization"] = f"token {token}"
        self._version: Version | None = None
        self._me: str | None = None

    # -- server -----------------------------------------------------------------
    def server_version(self) -> Version:
        """The server's version (``11.0.15+gitea-1.22.0`` → 11.0.15), cached."""
        if self._version is None:
            raw = ServerVersion.from_api(self.request("GET", "/api/v1/version").json()).raw
            try:
                self._version = Version.parse(raw)
            except ValueError as exc:
                raise ApiError(f"{self.base_url} reports version {raw!r}, which is not X.Y.Z") from exc
        return self._version

    def whoami(self) -> str:
        """The token's user name; a clear error for a bad or missing token."""
        try:
            return str(self.request("GET", "/api/v1/user").json()["login"])
        except ApiError as exc:
            if exc.status in (401, 403):
                raise ConfigError(
                    f"the Forgejo token was refused by {self.base_url} (HTTP {exc.status}); "
                    "give a valid token with --forgejo-token-file or FORGEJO_TOKEN"
                ) from None
            raise

    def check_scopes(self, owner: str) -> None:
        """Fail early when the token cannot create repos (``write:repository`` + ``write:user``)."""
        response = self.request("GET", "/api/v1/user/repos", params={"limit": 1}, ok=(200, 401, 403))
        if response.status_code != 200:
            raise ConfigError(
                f"the token cannot list repositories on {self.base_url} (HTTP {response.status_code}); "
                "it needs the scopes write:repository and write:user (or all)"
            )

    # -- safe retries of writes -------------------------------------------------------
    def _write(self, call: str, attempt: Callable[[bool], T], lookup: Callable[[], T | None] | None = None) -> T:
        """Run one write call, retrying transient failures (5xx, 429, reset, refused, timeout) within
        the ``api_write`` budget.

        Args:
            call: the call in words, for the log, the transcript and the error.
            attempt: one attempt; gets True when an earlier attempt may have happened on the server
                (its answer was lost), so it can accept "already exists" as its own.
            lookup: after such a lost answer and before the next attempt: the result of the earlier
                attempt when it did happen (found on the server), else None (then we attempt again).
                Without a lookup the call is simply attempted again.

        Raises:
            OurSideError: the budget ran out (after one last lookup).
        """
        t0 = time.monotonic()
        attempts: list[Attempt] = []
        unresolved = [False]  # an attempt reached the server and we do not know what it did

        def resolve() -> T | None:
            if lookup is None or not unresolved[0]:
                return None
            found = lookup()
            unresolved[0] = False
            self.transcript.note("write-lookup", call=call, found=found is not None)
            log.info("%s: lookup after a lost answer: %s", call,
                     "found, not retried" if found is not None else "nothing, retrying")
            if found is not None:
                self.transcript.note("write-recovered", call=call, attempts=len(attempts),
                                     elapsed=round(time.monotonic() - t0, 3))
            return found

        def probe() -> T:
            found = resolve()
            if found is not None:
                return found
            try:
                return attempt(any(a.reached for a in attempts))
            except TransientApiError as exc:
                failed = Attempt(len(attempts) + 1, round(time.monotonic() - t0, 3), exc.status, str(exc),
                                 reached_server(exc))
                attempts.append(failed)
                unresolved[0] = failed.reached and lookup is not None
                self.transcript.note("write-failed", call=call, attempt=failed.number, status=failed.status,
                                     error=failed.error, reached_server=failed.reached, elapsed=failed.elapsed)
                log.warning("%s: attempt %s failed (%s); %s", call, failed.number, failed.error,
                            "looking it up before retrying" if unresolved[0] else "retrying")
                raise

        budget = self.budgets.api_write
        backoff = wait_exponential(multiplier=0.5, max=4)

        def wait(state: RetryCallState) -> float:  # never sleep past the budget: the last attempt is at its end
            return max(0.0, min(backoff(state), budget - (time.monotonic() - t0)))

        try:
            return wait_for(f"{call} to succeed", "api_write", probe, lambda v: v is not None, budgets=self.budgets,
                            wait=wait, describe=lambda v: f"{len(attempts)} attempt(s)")
        except PollTimeout:
            try:
                found = resolve()
            except HarnessError as exc:
                log.warning("%s: the last lookup failed too: %s", call, exc)
                found = None
            if found is not None:
                return found
            error = OurSideError(call, attempts, budget_name="api_write", budget=budget)
            self.transcript.note("write-gave-up", call=call, attempts=len(attempts),
                                 elapsed=round(time.monotonic() - t0, 3), message=str(error))
            log.error("%s", error)
            raise error from None

    # -- repos --------------------------------------------------------------------
    def create_repo(self, name: str, *, owner: str | None = None, private: bool = False) -> Mapping[str, Any]:
        """Create an empty repo for the current user or an org; retried within ``api_write``.

        After a lost answer the retry may get 409: the name is ours (uuid-suffixed), so the repo an
        earlier attempt created is accepted once it is found (its payload is returned).
        """
        body = {"name": name, "private": private, "auto_init": False, "default_branch": "main"}
        path = f"/api/v1/orgs/{owner}/repos" if owner else "/api/v1/user/repos"
        call = f"create repo {owner + '/' if owner else ''}{name} (POST {path})"

        def attempt(lost: bool) -> Mapping[str, Any]:
            response = self.request("POST", path, json=body, ok=(201, 403, 409, 422))
            if response.status_code == 403:
                raise ConfigError(f"the token may not create repositories at {path} (HTTP 403: {_message(response)})")
            if response.status_code == 409 and lost:
                existing = self.get_repo(owner or self._login(), name)
                if existing is None:
                    raise ApiError(f"creating repo {name}: HTTP 409 after a lost answer, yet the repo is not "
                                   f"visible to the token: {_message(response)}", status=409)
                self.transcript.note("write-recovered", call=call, how="409 after a lost answer; the repo exists")
                log.info("%s: HTTP 409 after a lost answer: the repo exists, it is ours", call)
                return existing
            if response.status_code != 201:
                raise ApiError(f"creating repo {name}: HTTP {response.status_code}: {_message(response)}",
                               status=response.status_code)
            return dict(response.json())

        return self._write(call, attempt)

    def _login(self) -> str:
        """The token's user name, asked once."""
        if self._me is None:
            self._me = self.whoami()
        return self._me

    def get_repo(self, owner: str, name: str) -> Mapping[str, Any] | None:
        """The repo's payload, None when it does not exist or is not visible to the token."""
        response = self.request("GET", f"/api/v1/repos/{owner}/{name}", ok=(200, 404))
        return dict(response.json()) if response.status_code == 200 else None

    def delete_repo(self, owner: str, name: str) -> None:
        """Delete a repo; a missing one is fine."""
        self.request("DELETE", f"/api/v1/repos/{owner}/{name}", ok=(204, 404))

    def repo_exists(self, owner: str, name: str) -> bool:
        """True when the repo exists and is visible to the token."""
        return self.get_repo(owner, name) is not None

    def file_on_branch(self, owner: str, repo: str, path: str, branch: str = "main") -> RepoContent | None:
        """One file as the contents API has it on ``branch``; None when it is not there (or the repo is empty)."""
        response = self.request("GET", f"/api/v1/repos/{owner}/{repo}/contents/{quote(path)}",
                                params={"ref": branch}, ok=(200, 404))
        if response.status_code != 200:
            return None
        payload = response.json()
        return RepoContent.from_api(payload) if isinstance(payload, Mapping) else None

    def commit_files(self, owner: str, repo: str, files: Iterable[RepoFile], message: str) -> str:
        """Create all ``files`` in one commit on ``main`` (multi-file contents API); returns the sha.

        Retried within ``api_write``; after a lost answer the files are read back first and when
        they are all there as we meant them, the commit that wrote them is ours (its sha is returned).
        """
        wanted = {f.path: f.content for f in files}
        body = {
            "branch": "main",
            "message": message,
            "files": [
                {"operation": "create", "path": p, "content": base64.b64encode(c).decode()} for p, c in wanted.items()
            ],
        }
        path = f"/api/v1/repos/{owner}/{repo}/contents"
        call = f"commit {len(wanted)} file(s) to {owner}/{repo} (POST {path})"

        def read_back() -> str | None:
            return landed_commit(wanted, {p: self.file_on_branch(owner, repo, p) for p in wanted})

        def attempt(lost: bool) -> str:
            response = self.request("POST", path, json=body, ok=(201, 422) if lost else (201,))
            if response.status_code == 422:  # "already exists": the lost attempt landed after our read-back
                sha = read_back()
                if sha is None:
                    raise ApiError(f"{call}: HTTP 422 after a lost answer and the files on main are not the ones "
                                   f"we wrote: {_message(response)}", status=422)
                self.transcript.note("write-recovered", call=call, how="422 after a lost answer; read-back matched")
                return sha
            return str(response.json()["commit"]["sha"])

        return self._write(call, attempt, read_back)

    def dispatch(self, owner: str, repo: str, workflow_file: str, ref: str = "main") -> DispatchInfo:
        """Dispatch a workflow with ``return_run_info`` (v11+), never twice.

        A second dispatch starts a second run, so after a lost answer the run is looked up and the
        dispatch is only sent again when no dispatched run of ``workflow_file`` exists (our repos are
        throwaway and dispatch a workflow once, so such a run is ours). The lookup per server version:

        - Forgejo ≥ 12: the runs API (``GET …/actions/runs``), which lists a run as soon as it exists;
          the answer has the run id and number but no job names (``jobs`` is empty).
        - Forgejo 11 has no runs API: the tasks API (``GET …/actions/tasks``), polled for
          ``dispatch_lookup`` seconds, since a run shows there only once a runner picked one of its
          jobs (``run_id`` is 0, ``jobs`` are the picked ones). A run no runner picked within that
          time is missed, and the dispatch is sent again: a second run is then possible.
        """
        path = f"/api/v1/repos/{owner}/{repo}/actions/workflows/{workflow_file}/dispatches"
        call = f"dispatch {workflow_file} in {owner}/{repo} (POST {path})"

        def attempt(lost: bool) -> DispatchInfo:
            response = self.request("POST", path, json={"ref": ref, "return_run_info": True}, ok=(201,))
            return DispatchInfo.from_api(response.json())

        return self._write(call, attempt, lambda: self.find_dispatched_run(owner, repo, workflow_file))

    def find_dispatched_run(self, owner: str, repo: str, workflow_file: str) -> DispatchInfo | None:
        """The newest dispatched run of ``workflow_file``, or None (see :meth:`dispatch` for the APIs used)."""

        if has_runs_api(self.server_version()):
            return dispatch_from_runs(self.runs(owner, repo), workflow_file)
        try:
            tasks = wait_for(f"a task of the dispatched workflow {workflow_file} in {owner}/{repo}", "dispatch_lookup",
                             lambda: self.tasks(owner, repo),
                             lambda found: dispatch_from_tasks(found, workflow_file) is not None,
                             budgets=self.budgets, describe=lambda found: f"{len(found or ())} task(s), none of it")
        except PollTimeout:
            return None
        return dispatch_from_tasks(tasks, workflow_file)

    def runs(self, owner: str, repo: str) -> tuple[WorkflowRun, ...]:
        """The repo's runs (Forgejo ≥ 12; v11 answers 404)."""
        response = self.request("GET", f"/api/v1/repos/{owner}/{repo}/actions/runs", params={"limit": 50})
        return WorkflowRun.list_from_api(response.json())

    def tasks(self, owner: str, repo: str) -> tuple[Task, ...]:
        """The repo's tasks, newest first (v11+)."""
        response = self.request("GET", f"/api/v1/repos/{owner}/{repo}/actions/tasks", params={"limit": 50})
        return Task.list_from_api(response.json())

    def adopt_repo(self, owner: str, name: str) -> None:
        """Adopt a bare repository placed under the server's repository root (admin API).

        Forgejo records it, installs its hooks, syncs branches and tags and marks it non-empty,
        exactly as for a repository pushed to it. Adopted repositories start private.
        """
        self.request("POST", f"/api/v1/admin/unadopted/{owner}/{name}", ok=(204,))

    def set_private(self, owner: str, name: str, private: bool) -> None:
        """Change a repository's visibility."""
        self.request("PATCH", f"/api/v1/repos/{owner}/{name}", json={"private": private})

    def create_org(self, name: str) -> None:
        """Create a public org; an existing one is fine."""
        self.request("POST", "/api/v1/orgs", json={"username": name, "visibility": "public"}, ok=(201, 422))
