"""What one cell produced (:class:`CellResult`): its verdict or why it is inconclusive, its observations, its class,
and the four-word outcome every report reads. Plain data with the few rules that read it; filled by
:mod:`harness.cell`, written by :mod:`harness.cell_bundle` and the reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.classify import STALE_ACTION, STALE_RULES, Classification
from harness.outcome import Outcome
from harness.scenarios import KnownBug
from harness.verdict import Verdict

# The judge's rules that make up a failure class a scenario may declare as its known bug, for a record without the
# classifier's class (a rule of the class's own name always does).
KNOWN_BUG_RULES = {STALE_ACTION: STALE_RULES}


@dataclass
class CellResult:
    """What one cell produced."""

    scenario: str
    runner_key: str
    version: str
    label: str
    verdict: Verdict | None = None
    error: str | None = None  # our own side failed: the cell is inconclusive, and this says why
    selfcheck_problem: str | None = None
    repo: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    observations: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None
    classification: Classification | None = None  # the failure class (harness.classify); None for a clean pass
    known_bug: KnownBug | None = None  # the scenario's known bug, when it applies to this runner's version
    condition: str = ""  # the --condition the cell ran under ("" for none): a field of its own in every record

    @property
    def outcome(self) -> Outcome:
        """pass / fail / inconclusive (our own side failed: ``error`` says how)."""
        if self.error:
            return Outcome.INCONCLUSIVE
        return Outcome.PASS if self.passed else Outcome.FAIL

    @property
    def reason(self) -> str:
        """Why the cell is not a pass, in one line ("" for a pass)."""
        if self.error:
            return self.error.splitlines()[0]
        if self.selfcheck_problem:
            return self.selfcheck_problem
        if self.verdict is not None and not self.passed:
            return "; ".join(str(v) for v in self.verdict.failing)[:300]
        return ""

    @property
    def passed(self) -> bool:
        """True when the cell's expectation holds (selfchecks: exactly the expected violations)."""
        if self.error or self.verdict is None or self.selfcheck_problem is not None:
            return False
        return self.verdict.ok or self.observations.get("selfcheck", False) or self.observations.get(
            "fault_expected", False)

    def to_json(self) -> dict[str, Any]:
        """The cell as report.json holds it."""
        return {
            "scenario": self.scenario, "runner": self.runner_key, "condition": self.condition, "version": self.version,
            "label": self.label,
            "outcome": str(self.outcome), "reason": self.reason, "passed": self.passed, "error": self.error,
            "selfcheck_problem": self.selfcheck_problem, "verdict": self.verdict.to_json() if self.verdict else None,
            "timings": self.timings, "observations": self.observations,
            "bundle": str(self.bundle) if self.bundle else None,
            "class": self.classification.name if self.classification else None,
            "class_evidence": self.classification.to_json() if self.classification else None,
            "known_bug": self.known_bug.describe() if self.known_bug else None,
            "known_bug_reproduced": self.known_bug_reproduced(),
        }

    def known_bug_reproduced(self) -> bool:
        """True when the cell failed with its known bug's class: the classifier's class where the record has one,
        else every failing rule belongs to that class (:data:`KNOWN_BUG_RULES`)."""
        if self.known_bug is None or self.outcome is not Outcome.FAIL or self.verdict is None:
            return False
        wanted = self.known_bug.failure_class
        if self.classification is not None:
            return self.classification.name == wanted
        rules = {v.rule for v in self.verdict.failing}
        return bool(rules) and rules <= set(KNOWN_BUG_RULES.get(wanted, (wanted,)))
