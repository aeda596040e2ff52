"""Waiting, on tenacity: every wait has a named budget and a timeout says what it last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay

from harness.budgets import BUDGETS, Budgets
from harness.errors import PollTimeout, TransientApiError

T = TypeVar("T")
Sleep = Callable[[float], None]


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
