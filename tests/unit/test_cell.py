"""harness.cell: a known bug is reproduced only by a failure of its own class; why a cell cannot run here;
the class that decides a fault cell."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.budgets import BUDGETS
from harness.cell import CellResult, CellRun, NotRunnable, check_runnable
from harness.classify import Classification
from harness.forgejo.models import Status
from harness.observe.base import CellScope
from harness.outcome import Outcome
from harness.scenarios import Expect, KnownBug, Phase, Scenario
from harness.target import RunnerHandle
from harness.verdict import Verdict, Violation
from tests.unit.lab_fakes import V12

BUG = KnownBug("<12.0.0", "stale-action", "L")


def result(*rules: str, bug: KnownBug | None = BUG, error: str | None = None, cls: str | None = None) -> CellResult:
    verdict = Verdict(tuple(Violation(r, "m") for r in rules), Status.SUCCESS, (), (), None, None, None)
    classification = Classification(cls, "the classifier's why") if cls is not None else None
    return CellResult("moved-tag", "11.3.1", "11.3.1", "l", verdict=verdict, error=error, known_bug=bug,
                      classification=classification)


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


# --- check_runnable: every reason a cell cannot run here names the missing thing -------------------------------

def _scenario(**expect: object) -> Scenario:
    exp = dataclasses.replace(Expect.parse({"kind": "docker"}, "expect.yml"), **expect)  # type: ignore[arg-type]
    return Scenario("s", Path("s"), "runs-on: @@LABEL@@\n", exp, "")


def _target(*, lab: bool = True, engine: object = "engine", prepared: object = None,
            actions_url: str = "self") -> Any:
    fake_lab = SimpleNamespace(engine=engine, prepared=prepared, forgejo=SimpleNamespace(actions_url=actions_url))
    return SimpleNamespace(url="http://127.0.0.1:3000/", lab=fake_lab if lab else None)


def _handle(*, lab_runner: object = "lab-runner", labels: dict[str, str] | None = None) -> RunnerHandle:
    return RunnerHandle("12.1.2", V12, {"docker": "docker:docker://img"} if labels is None else labels,
                        lab_runner)  # type: ignore[arg-type]


NOT_PREPARED = SimpleNamespace(buildx=False, buildx_error="go build failed", buildkit_image="",
                               buildkit_error="pull refused")
PHASE = (Phase("A"),)


@pytest.mark.parametrize(("target", "scenario", "handle", "says"), [
    (_target(), _scenario(), _handle(labels={}), "has no 'docker' label (the lab has no Docker engine)"),
    (_target(lab=False), _scenario(), _handle(labels={}), "(give --runner-label)"),
    (_target(lab=False), _scenario(requires=("lab",)), _handle(), "runner-side observation"),
    (_target(), _scenario(requires=("lab",)), _handle(lab_runner=None), "runner-side observation"),
    (_target(engine=None), _scenario(requires=("docker",)), _handle(), "needs a Docker engine"),
    (_target(), _scenario(requires=("buildx",)), _handle(), "buildx plugin, which lab prepare could not build: "
                                                            "lab not prepared"),
    (_target(prepared=NOT_PREPARED), _scenario(requires=("buildx",)), _handle(), "could not build: go build failed"),
    (_target(), _scenario(requires=("buildkit",)), _handle(), "buildkit image"),
    (_target(prepared=NOT_PREPARED), _scenario(requires=("buildkit",)), _handle(), "could not build: pull refused"),
    (_target(lab=False), _scenario(control="signal"), _handle(lab_runner=None), "needs runner control"),
    (_target(lab=False), _scenario(phases=PHASE), _handle(lab_runner=None), "runs in phases"),
    (_target(actions_url="http://127.0.0.1:9/"), _scenario(phases=PHASE), _handle(), "--actions-url"),
    (_target(lab=False), _scenario(fault="f"), _handle(lab_runner=None), "needs the fault proxy"),
    (_target(lab=False), _scenario(slow_actions=1.0), _handle(lab_runner=None), "slow action server"),
    (_target(lab=False), _scenario(heavy="h"), _handle(lab_runner=None), "heavy stand-in actions"),
])
def test_check_runnable_names_what_is_missing(target, scenario, handle, says):
    with pytest.raises(NotRunnable) as caught:
        check_runnable(target, scenario, handle)
    assert says in str(caught.value)


def test_check_runnable_gives_the_runs_on_label_when_everything_is_there():
    ready = SimpleNamespace(buildx=True, buildx_error="", buildkit_image="img", buildkit_error="")
    scenario = _scenario(requires=("lab", "docker", "buildx", "buildkit"), phases=PHASE, fault="f", control="c",
                         slow_actions=1.0, heavy="h")
    assert check_runnable(_target(prepared=ready), scenario, _handle()) == "docker"
    assert check_runnable(_target(lab=False), _scenario(), _handle(lab_runner=None)) == "docker"


# --- expect_fault_class: the class decides a fault cell -----------------------------------------------------------

FAULT = Expect.parse({"kind": "native", "marker": "faults", "fault": {
    "mode": "reset", "at": {"first_report": True}, "expect": {"12.1.2": ["finalization-lost", "unexplained"]},
    "rests_on": {"12.1.2": "reporter.go:42"}}}, "expect.yml")


def fault_run(*, fired: bool, cls: str | None, version: str = "12.1.2", verdict: bool = True,
              expect: Expect = FAULT) -> CellRun:
    scenario = Scenario("f", Path("f"), "", expect, "")
    cell = CellScope(SimpleNamespace(), scenario, _handle(), "l", BUDGETS, lambda s: None, contextlib.ExitStack(),
                     contextlib.ExitStack())  # type: ignore[arg-type]
    res = CellResult("f", version, version, "l", verdict=(
        Verdict((Violation("unexpected-job-result", "m"),), Status.FAILURE, (), (), None, None, None)
        if verdict else None))
    res.classification = Classification(cls, "why") if cls else None
    if fired:
        res.observations["fault"] = {"fired": True}
    return CellRun(cell, res, 0)


def test_a_fault_cell_with_its_expected_class_holds():
    run = fault_run(fired=True, cls="unexplained")
    run.expect_fault_class()
    assert run.result.observations["fault"] == {"fired": True, "class": "unexplained",
                                                "expected_class": "finalization-lost or unexplained",
                                                "rests_on": "reporter.go:42"}
    assert run.result.observations["fault_expected"] is True
    assert run.result.selfcheck_problem is None
    assert run.result.passed  # a failing verdict, but the expected class: the fault cell holds


@pytest.mark.parametrize(("fired", "cls", "version", "problem"), [
    (False, "unexplained", "12.1.2", "fault: the trigger (first UpdateLog of the task ('Set up job')) never came, "
                                     "nothing was injected"),
    (True, "unexplained", "11.3.1", "fault: expect.yml names no expected class for runner 11.3.1 (got unexplained)"),
    (True, "stale-action", "12.1.2", "fault: expected class finalization-lost or unexplained on 12.1.2, got "
                                     "stale-action"),
    (True, None, "12.1.2", "got none"),
])
def test_a_fault_cell_without_its_expected_class_says_why(fired, cls, version, problem):
    run = fault_run(fired=fired, cls=cls, version=version)
    run.expect_fault_class()
    assert problem in (run.result.selfcheck_problem or "")
    assert "fault_expected" not in run.result.observations
    assert not run.result.passed


def test_expect_fault_class_leaves_cells_without_a_fault_or_a_verdict_alone():
    for run in (fault_run(fired=True, cls="unexplained", verdict=False),
                fault_run(fired=True, cls="unexplained", expect=Expect.parse({"kind": "native"}, "e"))):
        run.expect_fault_class()
        assert run.result.selfcheck_problem is None
        assert "fault_expected" not in run.result.observations
        assert run.result.observations.get("fault") == {"fired": True}


CONDITION = Expect.parse({"kind": "native", "marker": "faults", "fault": {
    "mode": "abort-upstream", "delay": 12, "at": {"log": "⭐ Run Post"}}}, "e")


@pytest.mark.parametrize(("observed", "says"), [
    ({}, "never came: nothing was injected"),
    ({"fired": True, "affected_requests": 0}, "came after the runner's last report: no request was held, dropped "
                                              "or answered"),
])
def test_a_condition_whose_fault_touched_nothing_is_inconclusive(observed, says):
    run = fault_run(fired=False, cls="unexplained", expect=CONDITION)
    run.result.observations["fault"] = dict(observed)
    run.expect_fault_class()
    assert run.result.outcome is Outcome.INCONCLUSIVE and says in (run.result.error or "")
    assert "says nothing about runner 12.1.2 under abort-upstream 12s" in (run.result.error or "")
    assert run.result.classification is not None and run.result.classification.name == "inconclusive"


def test_a_condition_whose_fault_held_reports_is_judged_on_the_scenario_s_expectation():
    run = fault_run(fired=True, cls="finalization-lost", expect=CONDITION)
    run.result.observations["fault"]["affected_requests"] = 6
    run.expect_fault_class()
    assert run.result.error is None and run.result.outcome is Outcome.FAIL  # the failing verdict decides
    assert run.result.observations["fault"]["expected_class"] is None
    assert "fault_expected" not in run.result.observations
