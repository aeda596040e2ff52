"""The suite's error types: each carries a message a maintainer can act on without reading code."""

from __future__ import annotations

from dataclasses import dataclass


class HarnessError(Exception):
    """Base class: something the suite could not do, with a message fit for the terminal."""


class ConfigError(HarnessError):
    """Bad input found before anything ran (an option, a file, a version)."""


class BinaryNotFound(ConfigError):
    """No binary of the requested kind and version could be resolved."""


class LabError(HarnessError):
    """The lab could not be booted, reached or torn down."""


class ApiError(HarnessError):
    """Forgejo answered an API or web call with an error status."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class TransientApiError(ApiError):
    """An error worth retrying: a reset, a 5xx on an idempotent call, a not-yet-created resource."""


@dataclass
class PollTimeout(HarnessError):
    """A named wait ran out of budget.

    Attributes:
        what: what was awaited, in words.
        budget_name: the name of the budget in :mod:`harness.budgets`.
        budget: seconds.
        last: the last state seen, rendered for a human.
        evidence: where the evidence is (a path), when known.
    """

    what: str
    budget_name: str
    budget: float
    last: str
    evidence: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        text = (
            f"timed out waiting for {self.what} (budget {self.budget_name}={self.budget:g}s); "
            f"last state: {self.last}"
        )
        if self.evidence:
            text += f"; evidence: {self.evidence}"
        return text
