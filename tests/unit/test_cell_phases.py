"""harness.cell: a phased cell's own copies of the actions, the changes between phases and each phase's verdict;
a disruptive cell's private runner (behind the fault proxy for a fault cell)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from harness import cell as cells
from harness.budgets import BUDGETS
from harness.cell import CellResult, CellRun
from harness.forgejo.models import Status
from harness.observe.base import CellScope, Done, Findings
from harness.scenarios import ActionChange, Expect, Phase, Scenario, parse_fault
from harness.target import RunnerHandle
from harness.verdict import ActionVersion, Verdict, Violation
from tests.unit.lab_fakes import V12

MOVE = ActionChange("descendant", "regress/movetag", ("v1",))
PHASES = (Phase("A"), Phase("B", (MOVE,)))
TEMPLATE = "jobs:\n  t:\n    runs-on: @@LABEL@@\n    steps:\n      - uses: regress/movetag@v1\n      - uses: x/y@v2\n"


class FakeCopy:
    """Stands in for harness.faults.action_repo.ActionCopy: a copy whose tag moves to a phase's marker."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, action: str, copy: str, tags: tuple[str, ...]) -> None:
        self.action, self.copy, self.tags, self.marker, self.closed = action, copy, tags, "seed", False

    @classmethod
    def create(cls, client: object, **kw: Any) -> FakeCopy:
        cls.made.append(kw)
        return cls(kw["action"], f"{kw['owner']}/{kw['name']}", kw["tags"])

    def head(self) -> str:
        return f"{self.marker:0<40}"

    def versions(self) -> tuple[ActionVersion, ...]:
        return tuple(ActionVersion(self.action, t, self.head(), self.marker) for t in self.tags)

    def apply(self, change: ActionChange, phase: str) -> str:
        self.marker = phase
        return f"{', '.join(change.tags)} → {change.kind} {phase}"

    def close(self) -> None:
        self.closed = True


def phased_run(monkeypatch: pytest.MonkeyPatch, *, token: str = "token abc") -> tuple[CellRun, list[str]]:
    monkeypatch.setattr(cells, "ActionCopy", FakeCopy)
    FakeCopy.made = []
    client = SimpleNamespace(session=SimpleNamespace(headers={"Authorization": token} if token else {}),
                             whoami=lambda: "regress")
    target = SimpleNamespace(url="http://127.0.0.1:3000", client=client, owner="regress", org=None)
    exp = dataclasses.replace(Expect.parse({"kind": "native"}, "expect.yml"), phases=PHASES)
    notes: list[str] = []
    scope = CellScope(target, Scenario("moved-tag", Path("m"), TEMPLATE, exp, ""),  # type: ignore[arg-type]
                      RunnerHandle("12.1.2", V12, {"native": "n:host"}), "n", BUDGETS, notes.append,
                      contextlib.ExitStack(), contextlib.ExitStack())
    return CellRun(scope, CellResult("moved-tag", "12.1.2", "12.1.2", "n"), 0), notes


def test_the_first_phase_makes_the_cells_own_copy_of_each_changed_action(monkeypatch):
    run, notes = phased_run(monkeypatch)
    hooked: list[str] = []
    run.begin_phase(PHASES[0], False, lambda phase, handle: hooked.append(f"{phase.name} {handle.key}"))
    assert hooked == ["A 12.1.2"]
    assert [m["action"] for m in FakeCopy.made] == ["regress/movetag"]  # x/y is not changed by any phase
    made = FakeCopy.made[0]
    assert (made["user"], made["token"], made["tags"]) == ("regress", "abc", ("v1",))
    assert made["name"].startswith("movetag-12-1-2-")
    copy = f"regress/{made['name']}"
    assert run.cell.actions == {"regress/movetag": copy} == run.result.observations["action_copies"]
    assert run.action_names() == {"regress/movetag": copy}
    assert run.cell.uses() == (f"{copy}@v1", "x/y@v2")
    assert run.expected == (ActionVersion("regress/movetag", "v1", "seed" + "0" * 36, "seed"),)
    assert notes == [f"regress/movetag: this cell's copy is {copy} (v1 at seed00000000)"]
    assert "action_changes" not in run.result.observations


def test_the_copy_is_made_without_a_user_when_the_client_has_no_token(monkeypatch):
    run, _ = phased_run(monkeypatch, token="")
    run.begin_phase(PHASES[0], False, None)
    assert (FakeCopy.made[0]["user"], FakeCopy.made[0]["token"]) == ("", "")


def test_a_later_phase_clears_the_last_phases_state_and_pushes_its_changes(monkeypatch):
    run, notes = phased_run(monkeypatch)
    run.begin_phase(PHASES[0], False, None)
    run.workflow, run.extra, run.requests_at_done = "old", [Violation("x", "y")], 3
    run.findings = Findings(violations=(Violation("z", "w"),))
    run.cell.wake.set()
    run.begin_phase(PHASES[1], False, None)
    assert len(FakeCopy.made) == 1  # no second copy
    assert (run.workflow, run.extra, run.requests_at_done, run.findings) == ("", [], None, Findings())
    assert not run.cell.wake.is_set()
    assert run.phase == PHASES[1]
    assert run.result.observations["action_changes"] == ["B: v1 → descendant B"]
    assert notes[-1] == "phase B: v1 → descendant B"
    assert [v.marker for v in run.expected] == ["B"]


def test_a_cell_without_phases_begins_none():
    run = CellRun(SimpleNamespace(), CellResult("s", "k", "1", "l"), 0)  # type: ignore[arg-type]
    run.begin_phase(None, False, lambda *a: pytest.fail("no hook without phases"))
    assert run.phase is None and run.copies == {}


def _view(*messages: str) -> Any:
    return SimpleNamespace(log_lines=lambda: tuple(SimpleNamespace(message=m) for m in messages))


def _verdict(*rules: str) -> Verdict:
    return Verdict(tuple(Violation(r, "bad") for r in rules), Status.SUCCESS, (), (), 2.5, None, False)


def test_each_phase_names_its_violations_and_the_cell_keeps_every_phases(monkeypatch):
    run, _ = phased_run(monkeypatch)
    run.begin_phase(PHASES[0], False, None)
    run.cell.repo = "regress/r1"
    run.done = Done([_view("movetag-version: seed\n", "other")], "raw A", (), (), True)
    first = run._end_phase(_verdict())
    assert first.violations == ()
    run.begin_phase(PHASES[1], False, None)
    run.cell.repo = "regress/r2"
    run.done = Done([_view("movetag-version: seed")], None, (), (), True)
    second = run._end_phase(_verdict("stale-action"))
    assert [str(v.message) for v in second.violations] == ["phase B: bad"]
    assert [v.rule for v in second.failing] == ["stale-action"]
    phases = run.result.observations["phases"]
    assert [(p["phase"], p["repo"], p["rules"], p["setup_seconds"]) for p in phases] == [
        ("A", "regress/r1", [], 2.5), ("B", "regress/r2", ["stale-action"], 2.5)]
    assert phases[1]["actions"] == [{"action": "regress/movetag", "ref": "v1", "commit": "B" + "0" * 39,
                                     "expected": "B", "printed": ["movetag-version: seed"]}]  # the stale tag
    assert phases[0]["actions"][0]["printed"] == ["movetag-version: seed"]
    assert len(run.phase_evidence) == 1  # phase B's raw log was unreadable: only A's
    assert run.findings.evidence[-1] is run.phase_evidence[0]


def test_a_disruptive_cell_gets_a_private_runner_behind_the_fault_proxy(monkeypatch):
    events: list[str] = []

    class Proxy:
        url = "http://127.0.0.1:4444"

        def __init__(self, upstream: str, host: str) -> None:
            events.append(f"proxy to {upstream} ({host})")

        def start(self) -> Proxy:
            return self

        def stop(self) -> None:
            events.append("proxy stopped")

    private = RunnerHandle("12.1.2", V12, {"native": "priv:host"}, SimpleNamespace(name="regress-12.1.2-p1"))

    def handle(target: object, stack: contextlib.ExitStack, key: str, notify: object, via: str | None,
               env: dict[str, str]) -> RunnerHandle:
        events.append(f"private {key} via {via} env {env}")
        stack.callback(events.append, "runner stopped")
        return private

    monkeypatch.setattr(cells, "FaultProxy", Proxy)
    monkeypatch.setattr(cells, "private_handle", handle)
    lab = SimpleNamespace(forgejo=SimpleNamespace(url="http://127.0.0.1:3000", host="127.0.0.1:3000"))
    shared = RunnerHandle("12.1.2", V12, {"native": "n:host"}, SimpleNamespace(name="regress-12.1.2"))
    fault = parse_fault({"mode": "abort-upstream", "delay": 12, "at": {"log": "⭐ Run Post x"},
                         "runner_env": {"FORGEJO_CLIENT_TIMEOUT": 5}}, ValueError)
    exp = dataclasses.replace(Expect.parse({"kind": "native"}, "e"), fault=fault)
    scope = CellScope(SimpleNamespace(lab=lab), Scenario("f", Path("f"), "", exp, ""), shared,  # type: ignore[arg-type]
                      "n", BUDGETS, lambda s: None, contextlib.ExitStack(), contextlib.ExitStack())
    run = CellRun(scope, CellResult("f", "12.1.2", "12.1.2", "n"), 0)
    run.own_runner_if_disruptive()
    assert events == ["proxy to http://127.0.0.1:3000 (127.0.0.1:3000)",
                      "private 12.1.2 via http://127.0.0.1:4444 env {'FORGEJO_CLIENT_TIMEOUT': '5'}"]
    assert scope.handle is private and scope.label == run.result.label == "priv" and scope.disposable
    assert run.result.observations["private_runner"] == "regress-12.1.2-p1"
    scope.teardown.close()
    assert events[2:] == ["runner stopped", "proxy stopped"]  # the runner stops before its proxy


@pytest.mark.parametrize("disrupts", [{}, {"lab": False}, {"shared": False}])
def test_a_cell_that_disturbs_nothing_keeps_its_shared_runner(disrupts):
    lab = None if disrupts.get("lab") is False else SimpleNamespace()
    shared = RunnerHandle("12.1.2", V12, {"native": "n:host"},
                          None if disrupts.get("shared") is False else SimpleNamespace(name="r"))
    heavy = {} if not disrupts else {"control": "c"}
    exp = dataclasses.replace(Expect.parse({"kind": "native"}, "e"), **heavy)  # type: ignore[arg-type]
    scope = CellScope(SimpleNamespace(lab=lab), Scenario("s", Path("s"), "", exp, ""), shared,  # type: ignore[arg-type]
                      "n", BUDGETS, lambda s: None, contextlib.ExitStack(), contextlib.ExitStack())
    run = CellRun(scope, CellResult("s", "12.1.2", "12.1.2", "n"), 0)
    run.own_runner_if_disruptive()
    assert scope.handle is shared and not scope.disposable and "private_runner" not in run.result.observations
