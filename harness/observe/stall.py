"""Liveness: a running task whose ``updated_at`` stops advancing has a runner that stopped reporting.

A working runner sends UpdateTask about once a ``report_interval`` (1 s) whatever the step prints,
and Forgejo stamps the task's ``updated`` each time (REST ``updated_at``, whole seconds, server
local time). Silence longer than the ``runner_stalled`` budget is a stall, minutes before
Forgejo's zombie check fails the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

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

    def feed(self, tasks: tuple[Task, ...], run_number: int, job_name: str) -> bool:
        """Update with a fresh task list; True exactly once, when the stall is first seen."""
        now = self.clock()
        task = next((t for t in tasks if t.run_number == run_number and t.job_name == job_name), None)
        if task is None:
            return False
        if self.task_id != task.id:
            self.task_id, self.last_updated, self.last_change = task.id, task.updated_at, now
            return False
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
            return True
        return False
