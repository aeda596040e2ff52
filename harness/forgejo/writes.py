"""Safe retries of the suite's write calls to Forgejo: the pure parts.

A write whose answer is lost (a 5xx from a proxy, a reset, a read timeout) may or may not have
happened on the server. :mod:`harness.forgejo.client` retries ``create_repo``, ``commit_files`` and
``dispatch`` only after finding out; this module holds what that needs without any I/O: the record
of each attempt, whether a failure proves the request never left, the error raised when the budget
runs out, and the payloads read to find a lost write (contents API, runs API, tasks API).

The two payload classes would sit in :mod:`harness.forgejo.models` (the module that knows JSON
keys); they are here because that file has another owner.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError

from harness.errors import ApiError
from harness.forgejo.models import DispatchInfo, Status, Task

DISPATCH_EVENT = "workflow_dispatch"


@dataclass(frozen=True)
class Attempt:
    """One failed attempt of a write call.

    Attributes:
        number: 1-based.
        elapsed: seconds from the first attempt's start to this failure.
        status: the HTTP status, None when no answer came (reset, refused, timeout).
        error: the error text, for a human.
        reached: False only when the request provably never reached the server (connection not made).
    """

    number: int
    elapsed: float
    status: int | None
    error: str
    reached: bool

    def describe(self) -> str:
        """``#2 at 0.51s: HTTP 502`` or ``#1 at 0.00s: connection refused (not sent)``."""
        what = f"HTTP {self.status}" if self.status is not None else self.error
        return f"#{self.number} at {self.elapsed:.2f}s: {what}{'' if self.reached else ' (not sent)'}"


def _chain(error: BaseException) -> list[BaseException]:
    """The error and everything it wraps (``__cause__``, ``__context__``, urllib3's ``reason``, args)."""
    seen: list[BaseException] = []
    todo: list[Any] = [error]
    while todo and len(seen) < 32:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([getattr(item, "reason", None), item.__cause__, item.__context__, *item.args])
    return seen


def reached_server(error: BaseException) -> bool:
    """Whether the request may have reached the server (so the write may have happened).

    False only for a connection that was never made (refused, connect timeout, no route): then a
    retry is blind-safe. Everything else (an HTTP answer, a reset or a read timeout after sending)
    counts as reached.
    """
    return not any(isinstance(item, requests.ConnectTimeout | ConnectTimeoutError) for item in _chain(error))


class OurSideError(ApiError):
    """A write call of the suite to Forgejo failed for its whole budget: our side, not the runner.

    Attributes:
        call: the call in words (``create repo regress/x``).
        attempts: every failed attempt, in order.
    """

    def __init__(self, call: str, attempts: Sequence[Attempt], *, budget_name: str, budget: float,
                 url: str = "") -> None:
        self.call = call
        self.attempts = tuple(attempts)
        last = self.attempts[-1] if self.attempts else None
        super().__init__(our_side_message(call, self.attempts, budget_name, budget),
                         status=last.status if last else None, url=url)


def our_side_message(call: str, attempts: Sequence[Attempt], budget_name: str, budget: float) -> str:
    """The message of :class:`OurSideError`: the call, the attempts, the last status, whose fault it is."""
    last = attempts[-1] if attempts else None
    last_text = "none" if last is None else (f"HTTP {last.status}" if last.status is not None else "no answer")
    elapsed = last.elapsed if last else 0.0
    return (
        f"the suite's own call to Forgejo failed: {call} did not succeed in {len(attempts)} attempt(s) over "
        f"{elapsed:.1f}s (budget {budget_name}={budget:g}s); last status: {last_text}"
        f"{f'; last error: {last.error}' if last else ''}; "
        f"attempts: {'; '.join(a.describe() for a in attempts) or 'none'}. This is the test harness's write to "
        f"Forgejo failing, not the runner under test: the cell is inconclusive. Raise "
        f"REGRESS_BUDGET_{budget_name.upper()} if the server is only slow."
    )


@dataclass(frozen=True)
class RepoContent:
    """One file of ``GET /repos/{o}/{r}/contents/{path}?ref=``."""

    path: str
    content: bytes | None  # None: not a file, or not base64
    last_commit_sha: str

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> RepoContent:
        """Parse a ``ContentsResponse`` (v11–v13 share it)."""
        content: bytes | None = None
        if payload.get("type") == "file" and payload.get("encoding") == "base64":
            try:
                content = base64.b64decode(str(payload.get("content") or ""), validate=False)
            except (binascii.Error, ValueError):
                content = None
        return cls(str(payload.get("path", "")), content, str(payload.get("last_commit_sha") or ""))


def landed_commit(wanted: Mapping[str, bytes], found: Mapping[str, RepoContent | None]) -> str | None:
    """The sha of the commit that wrote ``wanted`` when every file is there as we meant it, else None.

    Every path must be present with the same path and bytes, all last changed by one commit (a
    multi-file commit writes them together).
    """
    shas = set()
    for path, content in wanted.items():
        file = found.get(path)
        if file is None or file.path != path or file.content != content or not file.last_commit_sha:
            return None
        shas.add(file.last_commit_sha)
    return shas.pop() if len(shas) == 1 else None


@dataclass(frozen=True)
class WorkflowRun:
    """One run of ``GET /repos/{o}/{r}/actions/runs`` (Forgejo ≥ 12)."""

    id: int
    index: int  # the run number of web URLs (``index_in_repo``)
    workflow_id: str
    event: str
    status: Status
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> WorkflowRun:
        """Parse an ``ActionRun``; the event is ``trigger_event`` (v13 leaves ``event`` empty on dispatch)."""
        return cls(
            id=int(payload.get("id", 0)),
            index=int(payload.get("index_in_repo", 0)),
            workflow_id=str(payload.get("workflow_id", "")),
            event=str(payload.get("trigger_event") or payload.get("event") or ""),
            status=Status.parse(payload.get("status")),
            raw=payload,
        )

    @classmethod
    def list_from_api(cls, payload: Mapping[str, Any]) -> tuple[WorkflowRun, ...]:
        """Parse ``{"workflow_runs": [...], "total_count": n}``."""
        return tuple(cls.from_api(r) for r in payload.get("workflow_runs") or [])


def dispatch_from_runs(runs: Iterable[WorkflowRun], workflow_file: str) -> DispatchInfo | None:
    """The newest dispatched run of ``workflow_file`` as a :class:`DispatchInfo` (no job names: the
    runs API has none), or None."""
    mine = [r for r in runs if r.workflow_id == workflow_file and r.event == DISPATCH_EVENT]
    if not mine:
        return None
    run = max(mine, key=lambda r: r.index)
    return DispatchInfo(run.id, run.index, ())


def dispatch_from_tasks(tasks: Iterable[Task], workflow_file: str) -> DispatchInfo | None:
    """The newest dispatched run of ``workflow_file`` seen in the tasks API, or None.

    A task exists only once a runner picked a job, so None does not prove that no run exists. The
    run's database id is not in a task: ``run_id`` is 0; the job names are those of picked jobs.
    """
    mine = [t for t in tasks if t.workflow_id == workflow_file and str(t.raw.get("event", "")) == DISPATCH_EVENT]
    if not mine:
        return None
    number = max(t.run_number for t in mine)
    return DispatchInfo(0, number, tuple(sorted({t.job_name for t in mine if t.run_number == number})))
