"""Waiting, on tenacity: every wait has a named budget and a timeout says what it last saw."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay

from harness.budgets import BUDGETS, Budgets
from harness.errors import HarnessError, PollTimeout, TransientApiError
from harness.forgejo.models import JobView, Status
from harness.forgejo.web import JobRef, WebSession

log = logging.getLogger(__name__)
T = TypeVar("T")

Sleep = Callable[[float], None]
Notify = Callable[[str], None]


def adaptive_wait(fast: float = 0.25, slow: float = 2.0) -> Callable[[RetryCallState], float]:
    """Fast polls at first and while something changes; back off towards ``slow`` while nothing does."""

    def wait(state: RetryCallState) -> float:
        n = state.attempt_number
        return min(slow, fast * (1.25 ** max(0, n - 4)))

    return wait


def wait_for(
    what: str,
    budget_name: str,
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    describe: Callable[[T | None], str] = lambda v: repr(v),
    budgets: Budgets = BUDGETS,
    wait: Callable[[RetryCallState], float] | None = None,
    sleep: Sleep = time.sleep,
    evidence: str = "",
    budget: float | None = None,
) -> T:
    """Poll ``probe`` until ``done(result)``; transient API errors are retried within the budget.

    Raises:
        PollTimeout: the budget ran out; carries ``describe(last result)``.
    """
    seconds = budget if budget is not None else float(getattr(budgets, budget_name))
    last: list[T | None] = [None]
    last_error: list[str] = [""]

    def attempt() -> T:
        try:
            value = probe()
        except TransientApiError as exc:
            last_error[0] = str(exc)
            raise
        last[0] = value
        return value

    retrying = Retrying(
        retry=retry_if_result(lambda v: not done(v)) | retry_if_exception_type(TransientApiError),
        stop=stop_after_delay(seconds),
        wait=wait or adaptive_wait(),
        sleep=sleep,
        retry_error_callback=lambda state: _timeout(what, budget_name, seconds, describe(last[0]), last_error[0], evidence),
    )
    result = retrying(attempt)
    return result


def _timeout(what: str, name: str, seconds: float, last: str, error: str, evidence: str) -> None:
    text = last if not error else f"{last}; last error: {error}"
    raise PollTimeout(what, name, seconds, text, evidence)


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
