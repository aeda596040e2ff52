"""REST client for Forgejo's ``/api/v1`` on ``requests.Session``.

Every call has a timeout; idempotent calls (GET, HEAD, DELETE) are retried on connection resets
and 5xx with tenacity; POST/PUT/PATCH never are (a duplicate push would start a duplicate run).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from harness.budgets import BUDGETS
from harness.errors import ApiError, ConfigError, TransientApiError
from harness.forgejo.models import DispatchInfo, ServerVersion, Task
from harness.forgejo.transcript import Transcript
from harness.versions import Version

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


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


class HttpBase:
    """A ``requests.Session`` with timeouts, a transcript hook and retries for idempotent calls."""

    def __init__(self, base_url: str, *, transcript: Transcript | None = None, retries: int = 4,
                 trust_env: bool = True) -> None:
        """``trust_env=False`` for a lab's own server: no proxy from the environment applies to it."""
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"Forgejo URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = trust_env
        self.session.headers["User-Agent"] = "forgejo-runner-regress"
        self.transcript = transcript or Transcript()
        self.session.hooks["response"].append(lambda r, *a, **k: self.transcript.record(r))
        self.timeout = (BUDGETS.http_connect, BUDGETS.http_read)
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

    # -- repos --------------------------------------------------------------------
    def create_repo(self, name: str, *, owner: str | None = None, private: bool = False) -> Mapping[str, Any]:
        """Create an empty repo for the current user or an org."""
        body = {"name": name, "private": private, "auto_init": False, "default_branch": "main"}
        path = f"/api/v1/orgs/{owner}/repos" if owner else "/api/v1/user/repos"
        response = self.request("POST", path, json=body, ok=(201, 403, 409, 422))
        if response.status_code == 403:
            raise ConfigError(f"the token may not create repositories at {path} (HTTP 403: {_message(response)})")
        if response.status_code != 201:
            raise ApiError(f"creating repo {name}: HTTP {response.status_code}: {_message(response)}")
        return dict(response.json())

    def delete_repo(self, owner: str, name: str) -> None:
        """Delete a repo; a missing one is fine."""
        self.request("DELETE", f"/api/v1/repos/{owner}/{name}", ok=(204, 404))

    def repo_exists(self, owner: str, name: str) -> bool:
        """True when the repo exists and is visible to the token."""
        return self.request("GET", f"/api/v1/repos/{owner}/{name}", ok=(200, 404)).status_code == 200

    def commit_files(self, owner: str, repo: str, files: Iterable[RepoFile], message: str) -> str:
        """Create all ``files`` in one commit on ``main`` (multi-file contents API); returns the sha."""
        body = {
            "branch": "main",
            "message": message,
            "files": [
                {"operation": "create", "path": f.path, "content": base64.b64encode(f.content).decode()}
                for f in files
            ],
        }
        response = self.request("POST", f"/api/v1/repos/{owner}/{repo}/contents", json=body, ok=(201,))
        return str(response.json()["commit"]["sha"])

    def dispatch(self, owner: str, repo: str, workflow_file: str, ref: str = "main") -> DispatchInfo:
        """Dispatch a workflow with ``return_run_info`` (v11+)."""
        response = self.request(
            "POST",
            f"/api/v1/repos/{owner}/{repo}/actions/workflows/{workflow_file}/dispatches",
            json={"ref": ref, "return_run_info": True},
            ok=(201,),
        )
        return DispatchInfo.from_api(response.json())

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
