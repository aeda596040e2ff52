"""Watching one run from push to done through the web job view."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.budgets import BUDGETS, Budgets
from harness.errors import HarnessError, PollTimeout
from harness.forgejo.models import JobView, Status
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
        try:
            web.cancel_run(ref)
            cancelled = "the run was cancelled"
        except HarnessError as cancel_error:
            cancelled = f"cancelling the run failed too: {cancel_error}"
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
