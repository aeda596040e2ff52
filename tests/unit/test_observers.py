"""Each observer alone: before / on_poll / after on small real-shaped inputs."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from harness.budgets import BUDGETS, Budgets
from harness.forgejo.models import JobView, LogLine, Status, Step, Task
from harness.observe import observers as obs
from harness.observe.base import CellScope, Done, Findings, Poll, merge
from harness.observe.leaks import Inventory
from harness.observe.stall import capture_lab_runner
from harness.scenarios import load
from harness.verdict import Violation

FAST = Budgets(**{**BUDGETS.__dict__, "runner_settle": 0.3, "runner_stalled": 0.2})


def _scope(scenario: str = "native-checkout", **kw) -> CellScope:
    notes: list[str] = []
    scope = CellScope(target=SimpleNamespace(url="http://127.0.0.1:1", lab=None), scenario=load(scenario),
                      handle=SimpleNamespace(key="12.1.2", version="12.1.2", lab_runner=None), label="native",
                      budgets=FAST, notify=notes.append, observing=contextlib.ExitStack(),
                      teardown=contextlib.ExitStack(), **kw)
    scope.notes = notes  # type: ignore[attr-defined]
    return scope


def _view(lines: list[tuple[str, float]]) -> JobView:
    steps = (Step(0, "Set up job", Status.SUCCESS, 1.0, lines=tuple(LogLine(i, m, t) for i, (m, t) in
                                                                      enumerate(lines[:2]))),
             Step(1, "echo", Status.SUCCESS, 1.0, lines=tuple(LogLine(i, m, t) for i, (m, t) in enumerate(lines[2:]))),
             Step(2, "Complete job", Status.SUCCESS, 0.0, lines=()))
    return JobView(Status.SUCCESS, True, "t", (), "job", "", steps, None, {})


def _task(status: str = "running", updated: str = "2026-11-27T19:55:00Z", job: str = "native-checkout") -> Task:
    return Task.from_api({"id": 7, "name": job, "run_number": 1, "status": status, "updated_at": updated})


def _done(raw_log: str = "", views=()) -> Done:
    return Done(tuple(views), raw_log, (), (7,), True)


def test_merge_demotes_per_runner_rules_with_the_note_and_keeps_the_rest():
    merged = merge([Findings((Violation("cpu-over-budget", "90%"), Violation("marker-missing", "x"))),
                    Findings(observations={"a": 1}, demote=("cpu-over-budget",), note="(shared)"),
                    Findings(cold=True, runner_log="log", inconclusive="wrong runner")])
    assert [(v.rule, v.severity) for v in merged.violations] == [("cpu-over-budget", "report"), ("marker-missing", "fail")]
    assert merged.violations[0].message.endswith("(shared)") and merged.observations == {"a": 1}
    assert (merged.cold, merged.runner_log, merged.inconclusive) == (True, "log", "wrong runner")


def test_phase_bounds_end_setup_at_the_first_steps_first_line():
    view = _view([("received task", 10.0), ("❓ add-matcher", 11.5), ("⭐ Run Main echo", 10.4), ("done", 12.0)])
    bounds = obs.phase_bounds(view)
    assert bounds["setup"][0] == 10.0 and bounds["setup"][1] < 11.5
    assert bounds["steps"] == (10.4, 12.0) and "complete" not in bounds
    assert obs.phase_bounds(None) == {}


def test_log_tail_sees_lines_appended_after_it_started(tmp_path):
    log = tmp_path / "runner.log"
    log.write_text("old line 🏁\n")
    seen: list[str] = []
    tail = obs.LogTail(log, log.stat().st_size, seen.append, interval=0.01).start()
    with log.open("a") as f:
        f.write("first\nsecond (no newline yet)")
    time.sleep(0.1)
    with log.open("a") as f:
        f.write(" done\n")
    tail.stop()
    assert seen == ["first", "second (no newline yet) done"]


def test_command_runner_log_feeds_signatures_and_says_why_when_the_command_fails():
    scope = _scope()
    good = obs.CommandRunnerLog("printf 'level=error msg=\"git worktree add error\"\\n'")
    good.before(scope)
    found = good.after(_done())
    assert [v.rule for v in found.violations] == ["signature:worktree-error"] and "worktree" in found.runner_log
    bad = obs.CommandRunnerLog("exit 3")
    bad.before(scope)
    assert "exited 3" in bad.after(_done()).unavailable["runner_log"]
    assert "--runner-log-command" in obs.NoRunnerLog().after(_done()).unavailable["runner_log"]


def test_command_stall_capture_fills_in_the_runner():
    assert obs.command_stall_capture("echo stalled {runner}", "12.1.2")() == {"stall_command": "stalled 12.1.2\n"}
    assert "unavailable" in obs.command_stall_capture("false", "x")()["stall_command"]


def test_stall_fires_once_captures_and_writes_the_command_output():
    scope = _scope(run_index=1)
    calls: list[int] = []
    stall = obs.Stall(lambda: calls.append(1) or {"stall_command": "threads: 3"})
    stall.before(scope)
    view = _view([("a", 1.0), ("b", 2.0)])
    for _ in range(3):
        stall.on_poll(Poll((_task(),), view))
        time.sleep(0.15)
    found = stall.after(_done())
    assert calls == [1] and [v.rule for v in found.violations] == ["runner-stalled"]
    assert found.observations["stall"]["task"] == 7 and len(found.evidence) == 1
    assert obs.Stall(None).after(_done()) == Findings()


def test_runner_identity_checks_only_runners_the_suite_did_not_start():
    log = "regress-x(version:v12.1.2) received task 7 of job test\n"
    assert obs.RunnerIdentity("12.1.2", check=True).after(_done(log)).inconclusive == ""
    mismatch = obs.RunnerIdentity("11.3.1", check=True).after(_done(log))
    assert "claims version 11.3.1" in mismatch.inconclusive
    assert obs.RunnerIdentity("11.3.1", check=False).after(_done(log)).inconclusive == ""
    assert obs.RunnerIdentity("11.3.1", check=True).after(_done("")) == Findings()


@dataclass
class _Named:
    name: str


class _FakeDocker:
    """The three lists the inventory reads; ``containers`` changes between calls."""

    def __init__(self, rounds: list[list[str]]) -> None:
        self.rounds = rounds
        self.containers = SimpleNamespace(list=self._containers)
        self.networks = SimpleNamespace(list=lambda: [])
        self.volumes = SimpleNamespace(list=lambda: [])

    def _containers(self, all: bool = False) -> list[_Named]:
        names = self.rounds[0] if len(self.rounds) == 1 else self.rounds.pop(0)
        return [_Named(n) for n in names]


def test_leftovers_waits_for_the_runners_clean_up_then_names_what_stayed():
    scope = _scope()
    cleaned = obs.Leftovers(_FakeDocker([[], ["FORGEJO-ACTIONS-TASK-7_JOB"], []]))
    cleaned.before(scope)
    assert cleaned.after(_done()).violations == ()
    stuck = obs.Leftovers(_FakeDocker([[], ["FORGEJO-ACTIONS-TASK-7_JOB", "other-job"]]))
    stuck.before(scope)
    found = stuck.after(_done())
    assert [v.rule for v in found.violations] == ["docker-leftover"]
    assert found.observations["leftovers"] == ["container FORGEJO-ACTIONS-TASK-7_JOB"]


def test_leftovers_without_an_inventory_says_why():
    class Broken:
        @property
        def containers(self):
            import docker

            raise docker.errors.DockerException("engine gone")

    observer = obs.Leftovers(Broken())
    observer.before(_scope())
    assert "engine gone" in observer.after(_done()).unavailable["docker"]


def test_leftover_attribution_is_by_task_id_not_time():
    from harness.observe.leaks import leftovers

    before = Inventory(frozenset(), frozenset(), frozenset())
    after = Inventory(frozenset({"FORGEJO-ACTIONS-TASK-70_X", "FORGEJO-ACTIONS-TASK-7_X"}), frozenset(),
                      frozenset({"FORGEJO-ACTIONS-TASK-7-env"}))
    assert leftovers(before, after, 7) == ["container FORGEJO-ACTIONS-TASK-7_X", "volume FORGEJO-ACTIONS-TASK-7-env"]


def test_stall_capture_of_a_stopped_process_that_prints_no_goroutines(tmp_path):
    log = tmp_path / "runner.log"
    log.write_text("")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stderr=log.open("ab"))
    try:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.1)
        found = capture_lab_runner(proc.pid, log, cpu_seconds=0.1)
        assert found["state"] == "stopped" and "thread_cpu_pct" in found and isinstance(found["connections"], list)
        assert found["goroutine_dump"].startswith("(no dump printed")
    finally:
        proc.kill()
        proc.wait()
    assert capture_lab_runner(proc.pid, log)["state"].startswith("gone")


def test_workflow_name_comes_from_the_template():
    scope = _scope()
    assert obs.workflow_name(scope.scenario) == "native-checkout"


@pytest.mark.parametrize("when", ["before", "after"])
def test_overlap_demotes_per_runner_rules_of_cells_that_shared_the_runner(tmp_path, when):
    first, second = obs.Overlap(tmp_path, "a"), obs.Overlap(tmp_path, "b")
    scope = _scope()
    first.before(scope)
    second.before(scope)
    found = first.after(_done()) if when == "after" else second.after(_done())
    assert found.demote == obs.PER_RUNNER_RULES and found.observations["shared_runner_with"]
    scope.observing.close()


def test_threads_of_the_tail_stop_with_the_scope(tmp_path):
    log = tmp_path / "log"
    log.write_text("")
    scope = _scope()
    runner = SimpleNamespace(log_file=log, name="r")
    observer = obs.RunnerControl(runner, "⭐ Run Post", "STOP")
    observer.before(scope)
    before = threading.active_count()
    scope.observing.close()
    assert threading.active_count() <= before
    assert observer.after(_done()) == Findings()



def test_runner_step_is_the_runners_own_last_star_line_of_this_workflow(tmp_path):
    log = tmp_path / "runner.log"
    log.write_text("[native-checkout/native-checkout] ⭐ Run Main old\n")
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write("[native-checkout/native-checkout] ⭐ Run Main actions/checkout@v4\n"
                "[other/job] ⭐ Run Post elsewhere\n"
                "[native-checkout/native-checkout] ⭐ Run Post actions/checkout@v4\n")
    scope = _scope()
    assert obs.runner_step(log, offset, scope) == "Post actions/checkout@v4 (the runner's last ⭐ line)"
    assert obs.runner_step(log, log.stat().st_size, scope) is None
    stall = obs.Stall(None, lambda: "Post x (the runner's last ⭐ line)")
    stall.before(_scope(run_index=1))
    for _ in range(3):
        stall.on_poll(Poll((_task(),), _view([("a", 1.0), ("b", 2.0)])))
        time.sleep(0.15)
    assert "while step Post x (the runner's last ⭐ line) ran" in stall.after(_done()).violations[0].message


def test_the_git_refs_signature_is_found_in_the_job_log_too():
    refs = "Non-terminating error while running 'git clone': some refs were not updated"
    found = obs.JobLogSignatures().after(_done(views=[_view([("received task", 1.0), (refs, 2.0), ("ran", 3.0)])]))
    (violation,) = found.violations
    assert violation.rule == "signature:git-refs-not-updated" and violation.message.endswith(f"the job log says: {refs}")
    assert found.observations == {"job_log_signatures": [{"name": "git-refs-not-updated", "line": refs}]}
    clean = obs.JobLogSignatures().after(_done(views=[_view([("a", 1.0), ("unable to send final job logs and status",
                                                                           2.0)])]))
    assert clean == Findings()  # only the signatures the runner writes into the job log are looked for there


def test_a_phased_cell_s_stores_look_for_its_own_copy_of_the_action():
    scope = _scope("moved-tag")
    assert scope.uses() == ("regress/movetag@v1",)
    scope.actions["regress/movetag"] = "admin/movetag-12-1-2-abc"
    assert scope.uses() == ("admin/movetag-12-1-2-abc@v1",)
