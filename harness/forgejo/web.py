"""The web job view (steps and logs live only there before Forgejo v16) and the raw log.

Web routes ignore API tokens: a logged-in session (``--forgejo-user`` + password) or, for public
repos, the anonymous ``_csrf`` cookie. Every POST carries ``X-Csrf-Token``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from harness.errors import ApiError, ConfigError, TransientApiError
from harness.forgejo.client import HttpBase
from harness.forgejo.models import JobView
from harness.versions import Version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRef:
    """Where one job attempt lives in the web UI."""

    owner: str
    repo: str
    run_index: int
    job_index: int = 0
    attempt: int = 1


def job_view_path(server: Version, ref: JobRef) -> str:
    """The job-view URL: v13+ needs ``/attempt/N``; v11 and v12 have none."""
    base = f"/{ref.owner}/{ref.repo}/actions/runs/{ref.run_index}/jobs/{ref.job_index}"
    return f"{base}/attempt/{ref.attempt}" if server >= Version(13, 0, 0) else base


def raw_log_path(server: Version, ref: JobRef) -> str:
    """The raw log download URL for the job attempt."""
    return job_view_path(server, ref) + "/logs"


class WebSession(HttpBase):
    """A web session: anonymous (public repos) or logged in."""

    def __init__(self, base_url: str, server: Version, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.server = server
        self.logged_in = False

    def _csrf(self) -> str:
        token = self.session.cookies.get("_csrf")
        if not token:
            self.request("GET", "/", ok=(200, 303, 302))
            token = self.session.cookies.get("_csrf")
        if not token:
            raise ApiError(f"{self.base_url} set no _csrf cookie; is this a Forgejo web front end?")
        return str(token)

    def login(self, user: str, password: str) -> None:
        """Log in with the sign-in form; the CSRF cookie is regenerated for the user afterwards."""
        response = self.request(
            "POST", "/user/login", data={"user_name": user, "password": password}, ok=(200, 302, 303)
        )
        if response.status_code == 200 or "i_like_gitea" not in self.session.cookies:
            raise ConfigError(
                f"web login as {user!r} on {self.base_url} failed (the sign-in page came back); "
                "check --forgejo-user / --forgejo-password-file"
            )
        self.session.cookies.pop("_csrf", None)
        self.request("GET", "/", ok=(200,))
        self.logged_in = True

    def job_view(self, ref: JobRef, *, with_logs: bool = True, known_steps: int = 0) -> JobView | None:
        """One poll of the job view; None while the run does not exist yet (404).

        Args:
            ref: the job attempt.
            with_logs: ask for the full log of every step already seen.
            known_steps: how many step rows the previous answer had (indices past it make Forgejo 500).
        """
        cursors = [{"step": i, "cursor": 0, "expanded": True} for i in range(known_steps)] if with_logs else []
        path = job_view_path(self.server, ref)
        response = self.request(
            "POST",
            path,
            json={"logCursors": cursors},
            headers={"X-Csrf-Token": self._csrf()},
            ok=(200, 404, 400, 500, 502, 503),
        )
        if response.status_code == 404:
            text = response.text
            if "resource does not exist" in text:
                return None
            hint = "" if self.logged_in else "; a private repo needs --forgejo-user and --forgejo-password-file"
            raise ApiError(f"job view {path}: HTTP 404: {text.strip()[:200]}{hint}", status=404)
        if response.status_code == 400:
            self.session.cookies.pop("_csrf", None)
            raise TransientApiError(f"job view {path}: HTTP 400 (CSRF token refused); retrying", status=400)
        if response.status_code >= 500:
            raise TransientApiError(f"job view {path}: HTTP {response.status_code}", status=response.status_code)
        return JobView.from_view(response.json())

    def full_job_view(self, ref: JobRef) -> JobView | None:
        """The job view with the full log of every step (two calls: rows first, then their logs)."""
        first = self.job_view(ref, with_logs=False)
        if first is None or not first.steps:
            return first
        return self.job_view(ref, known_steps=len(first.steps))

    def raw_log(self, ref: JobRef) -> str | None:
        """The raw job log; None when the job has not started (404)."""
        response = self.request("GET", raw_log_path(self.server, ref), ok=(200, 404))
        return response.text if response.status_code == 200 else None

    def cancel_run(self, ref: JobRef) -> None:
        """Cancel the run (a job no runner picks would otherwise wait 24 h)."""
        self.request(
            "POST",
            f"/{ref.owner}/{ref.repo}/actions/runs/{ref.run_index}/cancel",
            headers={"X-Csrf-Token": self._csrf()},
            ok=(200, 303, 302),
        )
