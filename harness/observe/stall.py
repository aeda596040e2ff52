"""Liveness: a running task whose ``updated_at`` stops advancing has a runner that stopped reporting.

A working runner sends UpdateTask about once a ``report_interval`` (1 s) whatever the step prints,
and Forgejo stamps the task's ``updated`` each time (REST ``updated_at``, whole seconds, server
local time). Silence longer than the ``runner_stalled`` budget is a stall, minutes before
Forgejo's zombie check fails the job.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from harness.forgejo.models import Status, Task


@dataclass
class StallWatch:
    """Feed it task lists; it reports the first stall of the task it follows."""

    budget: float
    clock: Callable[[], float] = time.monotonic
    task_id: int | None = None
    last_updated: datetime | None = None
    last_change: float | None = None
    stalled_at: float | None = None  # monotonic
    stalled_wall: float | None = None  # unix time
    silent_for: float = 0.0
    history: list[tuple[float, str]] = field(default_factory=list)
    stalled_updated: datetime | None = None  # the task's updated_at when the stall was seen
    resumed_updated: datetime | None = None  # its first updated_at after the stall: the reports resumed
    resumed_wall: float | None = None

    @property
    def late_seconds(self) -> float | None:
        """How long the task's updated_at stood still, as Forgejo stamped it (None: it never moved again)."""
        if self.resumed_updated is None or self.stalled_updated is None:
            return None
        return round((self.resumed_updated - self.stalled_updated).total_seconds(), 1)

    def feed(self, tasks: tuple[Task, ...], run_number: int, job_name: str) -> bool:
        """Update with a fresh task list; True exactly once, when the stall is first seen. Fed on after that,
        it notes when the task's updated_at moves again (the reports resumed, late)."""
        now = self.clock()
        task = next((t for t in tasks if t.run_number == run_number and t.job_name == job_name), None)
        if task is None:
            return False
        if self.task_id != task.id:
            self.task_id, self.last_updated, self.last_change = task.id, task.updated_at, now
            return False
        if task.updated_at != self.last_updated and self.stalled_at is not None and self.resumed_updated is None:
            self.resumed_updated, self.resumed_wall = task.updated_at, time.time()
        if task.status is not Status.RUNNING:
            return False
        if task.updated_at != self.last_updated:
            self.last_updated, self.last_change = task.updated_at, now
            self.history.append((time.time(), str(task.updated_at)))
            return False
        assert self.last_change is not None
        self.silent_for = now - self.last_change
        if self.stalled_at is None and self.silent_for > self.budget:
            self.stalled_at = now
            self.stalled_wall = time.time()
            self.stalled_updated = task.updated_at
            return True
        return False


def capture_lab_runner(pid: int | None, log_file: Path, *, cpu_seconds: float = 2.0) -> dict[str, Any]:
    """What a maintainer needs from a stalled lab runner, then a Go goroutine dump.

    Process state, per-thread CPU over ``cpu_seconds``, open connections; then SIGQUIT, queued
    *before* SIGCONT when the process is stopped (else it resumes and may still finish), which
    makes the Go runtime print every goroutine to stderr (the runner log) and exit.
    """
    found: dict[str, Any] = {"pid": pid}
    try:
        proc = psutil.Process(pid or 0)
        found["state"] = proc.status()
        before = {t.id: t.user_time + t.system_time for t in proc.threads()}
        paused = threading.Event()
        paused.wait(cpu_seconds)
        after = {t.id: t.user_time + t.system_time for t in proc.threads()}
        found["thread_cpu_pct"] = {
            str(tid): round(100 * (after[tid] - before.get(tid, after[tid])) / cpu_seconds, 1) for tid in after
        }
        found["connections"] = [f"{c.laddr.ip}:{c.laddr.port}->{c.raddr.ip if c.raddr else ''}:"
                                f"{c.raddr.port if c.raddr else ''} {c.status}" for c in proc.net_connections("tcp")]
    except psutil.Error as exc:
        found["state"] = f"gone ({type(exc).__name__})"
        return found
    offset = log_file.stat().st_size if log_file.exists() else 0
    stopped = found["state"] == psutil.STATUS_STOPPED
    try:
        os.kill(proc.pid, signal.SIGQUIT)
        if stopped:
            os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=10)
    except (OSError, psutil.Error):
        pass
    with log_file.open("rb") as f:
        f.seek(offset)
        dump = f.read().decode("utf-8", "replace")
    found["goroutine_dump"] = dump if "goroutine" in dump else f"(no dump printed: {dump[-300:]!r})"
    return found
