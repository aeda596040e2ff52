"""Push a workflow to a lab and watch it (shared by the lab tests)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from harness.forgejo.client import ForgejoClient, RepoFile
from harness.forgejo.models import JobView
from harness.forgejo.web import JobRef, WebSession
from harness.lab.forgejo import ADMIN
from harness.lab.lab import Lab
from harness.watch import WatchResult, watch_job


@dataclass
class Pushed:
    """A pushed workflow: the sessions, where its run is, when it was pushed."""

    client: ForgejoClient
    web: WebSession
    ref: JobRef
    t0: float
    label: str

    def watch(self, on_poll: Callable[[JobView], None] = lambda v: None) -> WatchResult:
        return watch_job(self.web, self.ref, label=self.label, t_pushed=self.t0, on_poll=on_poll)


def push(lab: Lab, workflow: str, label: str, name: str) -> Pushed:
    client = lab.client()
    web = WebSession(lab.forgejo.url, client.server_version())
    web.login(ADMIN, lab.password())
    repo = f"labtest-{name}-{uuid.uuid4().hex[:8]}"
    client.create_repo(repo)
    t0 = time.monotonic()
    client.commit_files(ADMIN, repo, [RepoFile(f".forgejo/workflows/{name}.yml", workflow.encode())], "lab test")
    return Pushed(client, web, JobRef(ADMIN, repo, 1), t0, label)


def workflow(job: str, runs_on: str, steps: str) -> str:
    return f"name: {job}\non: [push]\njobs:\n  {job}:\n    runs-on: {runs_on}\n    steps:\n{steps}"
