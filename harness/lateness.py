"""Late is not stopped: a runner whose reports stopped arriving for a while, then resumed, from what Forgejo shows.

A slow Forgejo (or a reverse proxy in front of it) holds a runner's ``UpdateLog`` / ``UpdateTask`` for a
while: the task's ``updated_at`` (tasks API) stops advancing, then moves again when the held reports land.
Whether that is a failure depends on what happened next, and only Forgejo's side tells it:

- the runner **delivered**: the job ended with the runner's own result (no zombie stop). Its reports were
  late, not lost: the finding ``report-late`` is report-only (how long, during which step); the job's result
  and steps are judged as always, so a late job that ends as its workflow says passes.
- the runner **never delivered**: Forgejo's zombie check stopped the task, or the job never ended. That is
  ``runner-stalled``, a failure (its class is decided by :mod:`harness.classify`: ``finalization-lost`` …).

Pure: the same decision for a lab cell, an existing instance (``--forgejo-url``) and an old bundle
(``python -m harness classify BUNDLE``, whose verdict may still carry a failing ``runner-stalled``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.forgejo.models import JobView, Status
from harness.verdict import JOB_RESULT_LINE, LAST_WORDS, Verdict, Violation, zombie_stop

STALLED = "runner-stalled"
LATE = "report-late"
FINAL_STEP = "Complete job"  # where the final log lines are: the post steps and the 🏁 line


@dataclass(frozen=True)
class Silence:
    """One silence of a task's ``updated_at`` longer than the stall budget (times are Forgejo's, whole seconds).

    ``seconds``: from the last ``updated_at`` before it to the first after it (None: it never ended);
    ``step``: what ran (the runner's own ``⭐`` line, else the step Forgejo showed running).
    """

    task: int | None
    seconds: float | None
    step: str
    budget: float
    last_updated: str

    @property
    def resumed(self) -> bool:
        """The reports arrived again after the silence."""
        return self.seconds is not None

    def to_json(self) -> dict[str, Any]:
        """For ``report.json`` (``observations.report_late`` / ``observations.stall``)."""
        return {"task": self.task, "seconds": self.seconds, "step": self.step, "budget": self.budget,
                "last_updated_at": self.last_updated, "resumed": self.resumed}


def delivered(views: Sequence[JobView], statuses: Sequence[Status]) -> bool:
    """True when every job ended with the runner's own result: done, and no job failed by Forgejo's zombie stop.

    ``statuses[i]`` is job ``i``'s final status (the verdict's ``job_statuses``); a view without one is judged
    by its own job list.
    """
    if not views:
        return False
    for i, view in enumerate(views):
        status = statuses[i] if i < len(statuses) else view.job_status(i)
        if not status.done or zombie_stop(view, status) is not None:
            return False
    return True


def awaiting_final_log(views: Sequence[JobView], statuses: Sequence[Status]) -> list[int]:
    """The jobs whose result reached Forgejo while their final log lines (the runner's ``🏁  Job …`` line) have
    not yet: done as success or failure, with log lines, no ``🏁`` line, no zombie stop, no last words. A slow
    Forgejo shows this for as long as it holds the runner's last ``UpdateLog``; the judge waits for it."""
    waiting = []
    for i, view in enumerate(views):
        status = statuses[i] if i < len(statuses) else view.job_status(i)
        lines = view.log_lines()
        if status not in (Status.SUCCESS, Status.FAILURE) or not lines:
            continue
        if any(JOB_RESULT_LINE.search(line.message) for line in lines) or lines[-1].message.strip() in LAST_WORDS:
            continue
        if zombie_stop(view, status) is None:
            waiting.append(i)
    return waiting


def final_log_late(seconds: float, jobs: Sequence[int]) -> Violation:
    """``report-late`` (report-only): the final log lines arrived ``seconds`` after the job's result."""
    which = "" if list(jobs) == [0] else f" (jobs {', '.join(str(j) for j in jobs)})"
    return Violation(LATE, f"reports late: the job's final log lines arrived {seconds:.1f}s after its result"
                     f"{which} (during '{FINAL_STEP}'); judged on the complete log", "report")


def finding(silence: Silence, views: Sequence[JobView], statuses: Sequence[Status]) -> Violation:
    """``report-late`` (report-only) when the runner delivered after the silence, else ``runner-stalled``."""
    what = f"task {silence.task}'s updated_at stopped advancing for more than {silence.budget:g}s while step " \
           f"{silence.step} ran"
    if delivered(views, statuses):
        late = f"{silence.seconds:g}s" if silence.seconds is not None else f"more than {silence.budget:g}s"
        return Violation(LATE, f"reports late: {late} without one while step {silence.step} ran; they resumed and "
                         "the runner's own result reached Forgejo (not a stall)", "report")
    if silence.resumed:
        return Violation(STALLED, f"{what}; reports late ({silence.seconds:g}s), then the runner's result never "
                         "reached Forgejo")
    return Violation(STALLED, what)


def settle(verdict: Verdict, views: Sequence[JobView]) -> Verdict:
    """A verdict whose failing ``runner-stalled`` is turned into report-only ``report-late`` when the job views
    show the runner delivered (for verdicts written before this distinction: old bundles)."""
    if not any(v.rule == STALLED and v.severity == "fail" for v in verdict.violations) \
            or not delivered(views, verdict.job_statuses):
        return verdict
    settled = tuple(Violation(LATE, f"reports late: {v.message}; they resumed and the runner's own result reached "
                              "Forgejo (not a stall)", "report") if v.rule == STALLED else v
                    for v in verdict.violations)
    return dataclasses.replace(verdict, violations=settled)
