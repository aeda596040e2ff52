"""Forgejo payloads as frozen dataclasses: the only module that knows JSON keys.

``from_view`` parses the web job view (``POST …/actions/runs/{i}/jobs/{j}[/attempt/{n}]``),
``from_api`` parses REST payloads. Unknown status strings become :attr:`Status.UNKNOWN`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

SETUP_STEP = "Set up job"
COMPLETE_STEP = "Complete job"


class Status(StrEnum):
    """Forgejo's action status enum (runs, jobs, tasks, steps)."""

    UNKNOWN = "unknown"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    WAITING = "waiting"
    RUNNING = "running"
    BLOCKED = "blocked"

    @classmethod
    def parse(cls, value: object) -> Status:
        """Map a payload value to a status; anything unexpected is UNKNOWN (logged, never raised)."""
        try:
            return cls(str(value).lower())
        except ValueError:
            log.warning("unknown Forgejo status %r mapped to UNKNOWN", value)
            return cls.UNKNOWN

    @property
    def done(self) -> bool:
        """True for the terminal statuses (Forgejo's ``IsDone``)."""
        return self in (Status.SUCCESS, Status.FAILURE, Status.CANCELLED, Status.SKIPPED)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|µs|us|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_go_duration(text: str) -> float | None:
    """Seconds from a Go ``time.Duration.String()`` such as ``1m5s``; None when unparseable."""
    text = (text or "").strip()
    if not text:
        return None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


@dataclass(frozen=True)
class LogLine:
    """One job-log line of the job view."""

    index: int
    message: str
    timestamp: float


@dataclass(frozen=True)
class Step:
    """One row of the job view (``Set up job``, workflow steps, ``Complete job``)."""

    index: int
    name: str
    status: Status
    duration: float | None
    started: float | None = None
    lines: tuple[LogLine, ...] = ()

    @property
    def synthetic(self) -> bool:
        """True for the two rows Forgejo adds around the workflow steps."""
        return self.name in (SETUP_STEP, COMPLETE_STEP)

    def __str__(self) -> str:
        return f"{self.name}={self.status}"


@dataclass(frozen=True)
class JobSummary:
    """A job as listed in ``state.run.jobs`` (every job of the run, picked or not)."""

    id: int
    name: str
    status: Status
    duration: float | None


def _run_error(run: Mapping[str, Any]) -> str:
    """The run-level error of the job view (v13 ``preExecutionError``), verbatim; "" when there is none."""
    value = run.get("preExecutionError")
    if value is None or value == "":
        return ""
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class JobView:
    """One answer of the web job view: the run's state plus the current job's steps and logs."""

    run_status: Status
    run_done: bool
    run_title: str
    jobs: tuple[JobSummary, ...]
    job_title: str
    job_detail: str
    steps: tuple[Step, ...]
    attempts: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    run_error: str = ""  # v13 ``state.run.preExecutionError``: why the run never started its jobs ("" = none)

    @classmethod
    def from_view(cls, payload: Mapping[str, Any]) -> JobView:
        """Parse the JSON of the job view (Forgejo v11–v13 share the shape; v13 adds fields)."""
        state = payload.get("state") or {}
        run = state.get("run") or {}
        current = state.get("currentJob") or {}
        logs_by_step: dict[int, Mapping[str, Any]] = {}
        for entry in (payload.get("logs") or {}).get("stepsLog") or []:
            logs_by_step[int(entry.get("step", -1))] = entry
        steps = []
        for i, raw_step in enumerate(current.get("steps") or []):
            entry = logs_by_step.get(i, {})
            lines = tuple(
                LogLine(int(line.get("index", 0)), str(line.get("message", "")), float(line.get("timestamp", 0)))
                for line in entry.get("lines") or []
            )
            started = entry.get("started")
            steps.append(
                Step(
                    index=i,
                    name=str(raw_step.get("summary", "")),
                    status=Status.parse(raw_step.get("status")),
                    duration=parse_go_duration(str(raw_step.get("duration", ""))),
                    started=float(started) if started else None,
                    lines=lines,
                )
            )
        jobs = tuple(
            JobSummary(
                id=int(j.get("id", 0)),
                name=str(j.get("name", "")),
                status=Status.parse(j.get("status")),
                duration=parse_go_duration(str(j.get("duration", ""))),
            )
            for j in run.get("jobs") or []
        )
        attempts = current.get("allAttempts")
        return cls(
            run_status=Status.parse(run.get("status")),
            run_done=bool(run.get("done")),
            run_title=str(run.get("title", "")),
            jobs=jobs,
            job_title=str(current.get("title", "")),
            job_detail=str(current.get("detail", "")),
            steps=tuple(steps),
            attempts=len(attempts) if isinstance(attempts, list) else None,
            raw=payload,
            run_error=_run_error(run),
        )

    @property
    def done(self) -> bool:
        """Every job of the run is done (v11's ``done`` flag only says the run is)."""
        return self.run_done and all(j.status.done for j in self.jobs)

    def job_status(self, index: int = 0) -> Status:
        """Status of job ``index`` of the run (UNKNOWN when out of range)."""
        return self.jobs[index].status if 0 <= index < len(self.jobs) else Status.UNKNOWN

    def workflow_steps(self) -> tuple[Step, ...]:
        """The rows between ``Set up job`` and ``Complete job``."""
        return tuple(s for s in self.steps if not s.synthetic)

    def step(self, name: str) -> Step | None:
        """The first row called ``name``."""
        return next((s for s in self.steps if s.name == name), None)

    def log_lines(self) -> tuple[LogLine, ...]:
        """Every log line of every step, in step order."""
        return tuple(line for s in self.steps for line in s.lines)

    def summary(self) -> str:
        """One line for a live status or a timeout message."""
        jobs = ", ".join(f"{j.name}: {j.status}" for j in self.jobs) or "no jobs"
        steps = ", ".join(str(s) for s in self.steps) or "no steps"
        error = f"; run error: {self.run_error}" if self.run_error else ""
        return f"run {self.run_status} (done={self.run_done}); jobs [{jobs}]; steps [{steps}]{error}"


def parse_api_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp of the REST API (any offset, whole seconds); None for unset/epoch."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return None if value.timestamp() <= 0 else value


@dataclass(frozen=True)
class Task:
    """A runner task (``GET /repos/{o}/{r}/actions/tasks``): one per picked job attempt."""

    id: int
    job_name: str
    run_number: int
    status: Status
    workflow_id: str
    created_at: datetime | None
    updated_at: datetime | None
    run_started_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> Task:
        """Parse one ``ActionTask``."""
        return cls(
            id=int(payload.get("id", 0)),
            job_name=str(payload.get("name", "")),
            run_number=int(payload.get("run_number", 0)),
            status=Status.parse(payload.get("status")),
            workflow_id=str(payload.get("workflow_id", "")),
            created_at=parse_api_time(payload.get("created_at")),
            updated_at=parse_api_time(payload.get("updated_at")),
            run_started_at=parse_api_time(payload.get("run_started_at")),
            raw=payload,
        )

    @classmethod
    def list_from_api(cls, payload: Mapping[str, Any]) -> tuple[Task, ...]:
        """Parse the task list (its key really is ``workflow_runs``)."""
        return tuple(cls.from_api(t) for t in payload.get("workflow_runs") or [])


@dataclass(frozen=True)
class DispatchInfo:
    """The answer of a dispatch with ``return_run_info``."""

    run_id: int
    run_number: int
    jobs: tuple[str, ...]

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> DispatchInfo:
        """Parse ``{"id", "run_number", "jobs"}``."""
        return cls(int(payload["id"]), int(payload["run_number"]), tuple(sorted(payload.get("jobs") or [])))


@dataclass(frozen=True)
class ServerVersion:
    """``GET /api/v1/version``."""

    raw: str

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> ServerVersion:
        """Parse ``{"version": "11.0.15+gitea-1.22.0"}``."""
        return cls(str(payload.get("version", "")))


def first_log_runner(lines: Sequence[str]) -> tuple[str, str] | None:
    """Runner name and version from the first job-log line ``<name>(version:v12.1.2) received task …``."""
    pattern = re.compile(r"^(?:\S+\s+)?(\S+)\(version:v?([^)]+)\) received task")
    for line in lines[:5]:
        match = pattern.match(line.strip())
        if match:
            return match[1], match[2]
    return None
