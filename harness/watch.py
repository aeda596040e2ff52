"""Watching one run from push to done through the web job view."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.budgets import BUDGETS, Budgets
from harness.errors import HarnessError, PollTimeout
from harness.forgejo.models import JobView, Status, Task
from harness.forgejo.web import JobRef, WebSession
from harness.waiting import Sleep, adaptive_wait, wait_for

Notify = Callable[[str], None]


class PickupTimeout(HarnessError):
    """No runner picked the job within its pickup budget; the run was cancelled."""


@dataclass(frozen=True)
class WatchResult:
    """What a finished watch saw: the final view (with logs) and timings (monotonic seconds)."""

    view: JobView
    t_pushed: float
    t_appeared: float
    t_picked: float
    t_done_seen: float


def watch_job(
    web: WebSession,
    ref: JobRef,
    *,
    label: str,
    t_pushed: float,
    budgets: Budgets = BUDGETS,
    notify: Notify = lambda s: None,
    on_poll: Callable[[JobView], None] = lambda v: None,
    evidence: str = "",
    sleep: Sleep = time.sleep,
) -> WatchResult:
    """Watch a run from push to every job done, then read the full view with logs.

    Args:
        label: the ``runs-on`` label, named when no runner picks the job.
        t_pushed: monotonic time of the push.
        notify: receives a short live status line at each change.
        on_poll: called with every view (observers: stall detection, runner control).

    Raises:
        PollTimeout: a budget ran out (run never appeared, job never done).
        PickupTimeout: no runner picked the job; the run has been cancelled.
    """
    where = f"{ref.owner}/{ref.repo} run {ref.run_index}"
    seen: list[str] = []

    def probe() -> JobView | None:
        view = web.job_view(ref, with_logs=False)
        if view is not None:
            on_poll(view)
            text = view.summary()
            if not seen or seen[-1] != text:
                seen.append(text)
                notify(f"{where}: {text}")
        return view

    def describe(view: JobView | None) -> str:
        return view.summary() if view is not None else "the job view answered 404 (no run yet)"

    notify(f"{where}: waiting for the run to appear")
    wait_for(f"the run {where} to appear after the push", "run_appears", probe, lambda v: v is not None,
             describe=describe, budgets=budgets, sleep=sleep, evidence=evidence)
    t_appeared = time.monotonic()

    def picked(view: JobView | None) -> bool:
        return view is not None and (view.job_status(ref.job_index) not in (Status.WAITING, Status.BLOCKED)
                                     or bool(view.steps))

    try:
        wait_for(f"a runner with label {label!r} to pick the job of {where}", "pickup", probe, picked,
                 describe=describe, budgets=budgets, sleep=sleep, evidence=evidence)
    except PollTimeout as exc:
        cancelled = cancel(web, ref)
        raise PickupTimeout(
            f"no runner with label {label!r} picked the job of {where} within "
            f"pickup={exc.budget:g}s ({cancelled}); last state: {exc.last}"
            + (f"; evidence: {evidence}" if evidence else "")
        ) from None
    t_picked = time.monotonic()
    wait_for(f"every job of {where} to be done", "job_done", probe, lambda v: v is not None and v.done,
             describe=describe, budgets=budgets, sleep=sleep, evidence=evidence,
             wait=adaptive_wait(fast=0.2, slow=0.5))
    t_done = time.monotonic()
    final = wait_for(f"the final job view of {where}", "run_appears", lambda: web.full_job_view(ref),
                     lambda v: v is not None, describe=describe, budgets=budgets, sleep=sleep, evidence=evidence)
    assert final is not None
    return WatchResult(final, t_pushed, t_appeared, t_picked, t_done)


@dataclass
class RunWatch:
    """Watch one run cheaply: the task list every ``interval`` (its status and ``updated_at`` move while a runner
    works), the job view only when the tasks say something changed, and at once when ``wake`` is set.

    What it saw stays on the object when a budget runs out (``last_view``, ``last_tasks``), so the evidence of a
    hung job has them.
    """

    web: WebSession
    tasks: Callable[[], tuple[Task, ...]]
    ref: JobRef
    label: str
    budgets: Budgets = BUDGETS
    notify: Notify = lambda s: None
    on_poll: Callable[[tuple[Task, ...], JobView | None], None] = lambda t, v: None
    wake: threading.Event = field(default_factory=threading.Event)
    interval: float = 1.0
    evidence: str = ""
    last_view: JobView | None = None
    last_tasks: tuple[Task, ...] = ()
    t_appeared: float | None = None
    t_picked: float | None = None
    t_done_seen: float | None = None
    _seen: str = ""
    _fast_until: float = 0.0

    @property
    def where(self) -> str:
        """The run, in words."""
        return f"{self.ref.owner}/{self.ref.repo} run {self.ref.run_index}"

    def _view(self) -> JobView | None:
        view = self.web.job_view(self.ref, with_logs=False)
        if view is not None:
            self.last_view = view
            text = view.summary()
            if text != self._seen:
                self._seen = text
                self.notify(f"{self.where}: {text}")
        return view

    def _tasks(self) -> tuple[Task, ...]:
        tasks = tuple(t for t in self.tasks() if t.run_number == self.ref.run_index)
        self.last_tasks = tasks
        self.on_poll(tasks, self.last_view)
        return tasks

    def _sleep(self, seconds: float) -> None:
        if self.wake.wait(seconds):  # something happened (the job's last line, a stall): poll fast for a moment
            self.wake.clear()
            self._fast_until = time.monotonic() + 2.0

    def _pace(self, _: object) -> float:
        return 0.3 if time.monotonic() < self._fast_until else self.interval

    def _describe(self, _: object) -> str:
        tasks = ", ".join(f"task {t.id} {t.job_name}: {t.status} (updated {t.updated_at})" for t in self.last_tasks)
        view = self.last_view.summary() if self.last_view is not None else "the job view answered 404 (no run yet)"
        return f"{view}; tasks [{tasks or 'none'}]"

    def appear(self) -> None:
        """Until the run exists (the job view stops answering 404)."""
        self.notify(f"{self.where}: waiting for the run to appear")
        wait_for(f"the run {self.where} to appear after the push", "run_appears", self._view, lambda v: v is not None,
                 describe=self._describe, budgets=self.budgets, evidence=self.evidence)
        self.t_appeared = time.monotonic()

    def picked(self) -> None:
        """Until any job of the run is picked (a task exists) or the run ended without one (e.g. rejected).

        Raises:
            PollTimeout: nobody picked any job within ``pickup``.
        """
        polls = [0]

        def probe() -> bool:
            polls[0] += 1
            if self._tasks():
                return True
            if polls[0] % 4 == 0:  # a run can end without a task (invalid workflow, cancelled): look now and then
                view = self._view()
                return view is not None and (view.done or any(j.status not in (Status.WAITING, Status.BLOCKED)
                                                               for j in view.jobs))
            return False

        wait_for(f"a runner with label {self.label!r} to pick a job of {self.where}", "pickup", probe, bool,
                 describe=self._describe, budgets=self.budgets, evidence=self.evidence,
                 wait=adaptive_wait(fast=0.25, slow=self.interval), sleep=self._sleep)
        self.t_picked = time.monotonic()

    def done(self) -> JobView:
        """Until every job of the run is done; the view is fetched when a task's status changed or all are done.

        Raises:
            PollTimeout: not done within ``job_done``.
        """
        state = {"key": None}

        def probe() -> JobView | None:
            tasks = self._tasks()
            key = tuple((t.id, str(t.status)) for t in tasks)
            finished = bool(tasks) and all(t.status.done for t in tasks)
            if key != state["key"] or finished or self.last_view is None:
                state["key"] = key
                return self._view()
            return self.last_view

        view = wait_for(f"every job of {self.where} to be done", "job_done", probe,
                        lambda v: v is not None and v.done, describe=self._describe, budgets=self.budgets,
                        evidence=self.evidence, wait=self._pace, sleep=self._sleep)
        self.t_done_seen = time.monotonic()
        assert view is not None
        return view

    def final_views(self) -> list[JobView]:
        """The full view (rows and logs) of every job of the run, job 0 first."""
        jobs = len(self.last_view.jobs) if self.last_view is not None else 1
        views = []
        for index in range(max(1, jobs)):
            ref = JobRef(self.ref.owner, self.ref.repo, self.ref.run_index, index, self.ref.attempt)
            view = wait_for(f"the final job view of {self.where} job {index}", "run_appears",
                            lambda r=ref: self.web.full_job_view(r), lambda v: v is not None, describe=self._describe,
                            budgets=self.budgets, evidence=self.evidence)
            assert view is not None
            views.append(view)
        return views

    def cancel(self) -> str:
        """Cancel the run (a budget ran out); what happened, in words."""
        return cancel(self.web, self.ref)


def cancel(web: WebSession, ref: JobRef) -> str:
    """Cancel a run a budget gave up on (a job no runner picks would otherwise wait 24 h); what happened, in words."""
    try:
        web.cancel_run(ref)
        return "the run was cancelled"
    except HarnessError as exc:
        return f"cancelling the run failed too: {exc}"
