"""Observing an admin's own runner (``--runner-process``) like a lab runner, without touching it.

The lab observers that read a runner from outside (CPU from ``/proc``, the stores' sizes, Docker leftovers)
work on an :class:`harness.runners.existing.ExistingRunner` as they are; this module adds what differs:

- :class:`JournalRunnerLog`: the unit's journal for the job's window when no ``--runner-log-command`` is given;
- :class:`ExistingRunnerWatch`: the job must have been taken by this process (the job log's runner name is the
  one in its ``.runner`` file; the version is checked by :class:`~harness.observe.observers.RunnerIdentity`),
  else the cell is inconclusive; unless the runner's log shows only this cell's task during the cell, its CPU
  and store figures are report-only (``(shared runner)``: a production runner runs other jobs meanwhile);
  the process gone mid-cell is said; after the job, a ``diagnose`` of its stores (offline) goes into the bundle.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from harness import diagnose as diagnosis
from harness.diagnose.render import text as diagnosis_text
from harness.errors import ConfigError
from harness.forgejo.models import first_log_runner
from harness.observe.base import CellScope, Done, Findings, Quiet, write_text
from harness.observe.observers import PER_RUNNER_RULES, CommandRunnerLog
from harness.runners import existing

TASK = re.compile(r"\btask (\d+)\b|FORGEJO-ACTIONS-TASK-(\d+)")
STAMP = re.compile(r'time="([0-9T:.+-]+Z?)"')  # logrus's text format, as the runner writes it
SPAN_SLACK = (2.0, 10.0)  # seconds before the job's first log line and after its last (the runner's clean-up)


class JournalRunnerLog(CommandRunnerLog):
    """A systemd unit's runner log: its journal for the job's window (no ``--runner-log-command`` given)."""

    time_format = "%Y-%m-%d %H:%M:%S UTC"

    def __init__(self, unit: str) -> None:
        super().__init__(f"journalctl -u {unit} --since '{{start}}' --until '{{end}}' -o cat --no-pager")


def within(text: str, start: float, end: float) -> str:
    """The lines of a runner-log window stamped between ``start`` and ``end`` (unstamped lines kept): a command or
    journal window is wider than the job (it starts early, it ends now), and another job's lines just before or
    after ours are no sharing."""
    kept = []
    for line in text.splitlines():
        found = STAMP.search(line)
        if found:
            try:
                moment = datetime.fromisoformat(found[1].replace("Z", "+00:00")).timestamp()
            except ValueError:
                moment = None
            if moment is not None and not start <= moment <= end:
                continue
        kept.append(line)
    return "\n".join(kept)


def other_tasks(text: str, task_id: int | None) -> list[int]:
    """The task ids a runner-log window names besides ``task_id`` (sorted)."""
    ids = {int(a or b) for a, b in TASK.findall(text)}
    return sorted(i for i in ids if i != task_id)


class ExistingRunnerWatch(Quiet):
    """Identity, sharing, liveness and a diagnose summary of an admin's runner (see the module)."""

    name = "existing-runner"

    def __init__(self, runner: existing.ExistingRunner, log: CommandRunnerLog | None) -> None:
        self.runner, self.log = runner, log
        self.alive_at_start = True
        self.scope: CellScope | None = None

    def before(self, cell: CellScope) -> None:
        """Is the process still the runner it was?"""
        self.scope = cell
        self.alive_at_start = existing.alive(self.runner)

    def after(self, done: Done) -> Findings:
        """The checks of the module docstring, as observations, demotions and an inconclusive reason."""
        runner = self.runner
        observations: dict[str, Any] = {"existing_runner": {
            "name": runner.name, "pid": runner.pid, "source": runner.source, "config": str(runner.config or ""),
            "workdir": str(runner.workdir), "cache_dir": str(runner.cache_dir), "home": str(runner.home),
            "docker_host": runner.docker_host, "cache_server_pid": runner.cache_pid}}
        notes = []
        if not (self.alive_at_start and existing.alive(runner)):
            notes.append(f"the runner process ({runner.source}) is gone: its CPU and store figures stop there")
        who = first_log_runner((done.raw_log or "").splitlines())
        if who is not None and runner.name and who[0] != runner.name:
            return Findings(observations=observations, inconclusive=(
                f"runner {who[0]} took the job, not {runner.describe()} (its .runner names {runner.name!r}): this "
                "cell says nothing about that process"))
        raw = self.log.raw if self.log is not None else None
        stamps = [line.timestamp for view in done.views for line in view.log_lines()]
        if raw is not None and stamps:
            raw = within(raw, min(stamps) - SPAN_SLACK[0], max(stamps) + SPAN_SLACK[1])
        others = other_tasks(raw, done.task_id) if raw is not None else None
        demote: tuple[str, ...] = ()
        note = ""
        if others is None or others:
            why = (f"its log names other tasks during the cell: {others[:10]}" if others else
                   "its log could not be read for the cell's window, so other jobs cannot be ruled out")
            observations["shared_runner_with"] = [f"task {t}" for t in others] if others else ["unknown (no log)"]
            demote = PER_RUNNER_RULES
            note = f"(shared runner: {why}; its CPU and store figures are report-only)"
        evidence = ()
        try:
            found = diagnosis.diagnose(runner.layout)
            observations["diagnose"] = {"findings": [f"[{f.kind}] {f.what}" for f in found.findings][:20],
                                        "bytes_to_reclaim": sum(f.bytes for f in found.findings if f.cleanable),
                                        "stores": {k: {"bytes": v.bytes, "entries": v.entries, "exists": v.exists}
                                                   for k, v in found.stores.items()},
                                        "taken_at": round(time.time(), 3)}
            evidence = (write_text("diagnose.txt", diagnosis_text(found)),)
        except (ConfigError, OSError) as exc:
            observations["diagnose"] = {"unavailable": str(exc).splitlines()[0]}
        if notes:
            observations["existing_runner"]["notes"] = notes
        return Findings(observations=observations, demote=demote, note=note, evidence=evidence)
