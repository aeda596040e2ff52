"""Which other cells ran on the same lab runner at the same time (``pytest -n N`` shares runners).

A runner's CPU and its cache store are measured per runner, not per job: when two jobs overlap on
one runner, each job's figures include the other's. Every cell therefore records its window in the
runner's dir (a marker while it runs, a line in ``windows.jsonl`` when it is done; pytest-xdist
workers share the lab dir), and at its end learns which other cells overlapped it, so the judge
and the gate do not blame one job for another's growth.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import procs


@dataclass(frozen=True)
class Window:
    """One cell's time on a runner (wall clock; ``end`` None while it runs)."""

    cell: str
    start: float
    end: float | None
    pid: int | None = None  # the pytest process running it (a marker of a dead process is stale)

    def overlaps(self, start: float, end: float) -> bool:
        """True when this window shares any moment with ``[start, end]``."""
        return self.start <= end and (self.end is None or self.end >= start)


class Activity:
    """The ledger of one runner: ``<runner dir>/activity/``."""

    def __init__(self, runner_dir: Path) -> None:
        self.root = runner_dir / "activity"

    def begin(self, cell: str, *, now: float | None = None) -> Window:
        """Mark ``cell`` as running on this runner from now on."""
        self.root.mkdir(parents=True, exist_ok=True)
        window = Window(f"{cell}#{uuid.uuid4().hex[:6]}", time.time() if now is None else now, None, os.getpid())
        (self.root / f"running-{window.cell.rsplit('#', 1)[1]}.json").write_text(json.dumps(window.__dict__))
        return window

    def end(self, window: Window, *, now: float | None = None) -> list[str]:
        """Close ``window``; the other cells whose windows overlapped it (running or done), sorted."""
        end = time.time() if now is None else now
        others = [w for w in self._windows() if w.cell != window.cell and w.overlaps(window.start, end)]
        done = Window(window.cell, window.start, end, window.pid)
        line = json.dumps(done.__dict__) + "\n"
        fd = os.open(self.root / "windows.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())  # one short write with O_APPEND: whole lines under concurrency
        finally:
            os.close(fd)
        (self.root / f"running-{window.cell.rsplit('#', 1)[1]}.json").unlink(missing_ok=True)
        return sorted({w.cell.rsplit("#", 1)[0] for w in others})

    def _windows(self) -> list[Window]:
        found = []
        for path in self.root.glob("running-*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                window = Window(**json.loads(path.read_text()))
                if window.pid is None or procs.alive(window.pid):
                    found.append(window)
        with contextlib.suppress(OSError):
            for line in (self.root / "windows.jsonl").read_text().splitlines():
                with contextlib.suppress(ValueError, TypeError):
                    found.append(Window(**json.loads(line)))
        return found

