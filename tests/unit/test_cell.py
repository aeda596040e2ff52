"""harness.cell: a known bug is reproduced only by a failure of its own class."""

from __future__ import annotations

import pytest

from harness.cell import CellResult
from harness.forgejo.models import Status
from harness.scenarios import KnownBug
from harness.verdict import Verdict, Violation

BUG = KnownBug("<12.0.0", "stale-action", "L")


def result(*rules: str, bug: KnownBug | None = BUG, error: str | None = None, cls: str | None = None) -> CellResult:
    verdict = Verdict(tuple(Violation(r, "m") for r in rules), Status.SUCCESS, (), (), None, None, None)
    cell = CellResult("moved-tag", "11.3.1", "11.3.1", "l", verdict=verdict, error=error, known_bug=bug)
    if cls is not None:  # a record with the classifier's class
        base = cell.to_json
        cell.to_json = lambda: {**base(), "class": cls}  # type: ignore[method-assign]
    return cell


@pytest.mark.parametrize(("rules", "expected"), [
    (("stale-action",), True),
    (("stale-action", "signature:git-refs-not-updated"), True),
    (("signature:git-refs-not-updated",), True),
    (("stale-action", "unexpected-job-result"), False),  # something else failed too: not (only) the known bug
    ((), False),  # a pass reproduces nothing
])
def test_known_bug_reproduced_by_its_class_rules_only(rules, expected):
    assert result(*rules).known_bug_reproduced() is expected


def test_known_bug_is_never_reproduced_without_a_bug_or_by_an_inconclusive_cell():
    assert not result("stale-action", bug=None).known_bug_reproduced()
    assert not result("stale-action", error="push failed: HTTP 502").known_bug_reproduced()


def test_the_classifiers_class_decides_where_the_record_has_one():
    assert result("unexpected-job-result", cls="stale-action").known_bug_reproduced()
    assert not result("stale-action", cls="finalization-lost").known_bug_reproduced()


def test_the_record_names_the_known_bug():
    assert result("stale-action").to_json()["known_bug"] == "known bug on runner <12.0.0: stale-action (L)"
    assert result(bug=None).to_json()["known_bug"] is None
