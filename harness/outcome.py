"""A cell's outcome: the four words the table, report.json, JUnit properties and the gate use.

- ``pass``: the cell's expectation holds.
- ``fail``: the runner or the server misbehaved (a rule fired).
- ``inconclusive``: only our own side failed (an API error on our calls after retries, a lab that
  did not boot, a runner version mismatch, evidence missing); never counted against a runner.
- ``skipped``: the cell could not run here; the reason says why.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What one cell ended as."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"

    @classmethod
    def parse(cls, value: object, *, passed: object = None) -> Outcome:
        """The outcome of a stored record; records from before outcomes existed fall back on ``passed``.

        Raises:
            ValueError: a value that is none of the four words.
        """
        if value is None:
            return cls.PASS if passed else cls.FAIL
        return cls(str(value))
