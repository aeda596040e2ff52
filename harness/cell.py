"""Run one cell (scenario × runner): push, watch, observe, judge, and always write the evidence.

A cell is target + scenario + runner → push → watch → judge → evidence; the observers (chosen once
from what the runner allows, :mod:`harness.observe.observers`) see it before, during and after.
Clean-up is structural: what must be released when the watch ends goes on the cell's ``observing``
stack, what must happen after the evidence is written (the repo, the runner's restart) on ``teardown``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import lateness
from harness.budgets import BUDGETS, Budgets
from harness.cell_result import CellResult
from harness.classify import Inputs, classify
from harness.conditions import hold_budgets
from harness.errors import HarnessError, PollTimeout
from harness.faults.action_repo import ActionCopy
from harness.faults.proxy import FaultProxy
from harness.forgejo.client import RepoFile
from harness.forgejo.models import JobView, parse_go_duration
from harness.forgejo.web import JobRef
from harness.lab.prepare import BUILDKIT_TAG
from harness.observe.base import CellScope, Done, EvidenceWriter, Findings, Observer, Poll, merge, write_text
from harness.observe.choice import Commands, choose
from harness.observe.observers import SlowActions
from harness.outcome import Outcome
from harness.procs import alive
from harness.scenarios import ACTIONS_DIR, Phase, Scenario
from harness.target import RunnerHandle, Target, actions_base, private_handle
from harness.verdict import ActionVersion, Observation, Verdict, Violation, judge, selfcheck_mismatch
from harness.waiting import wait_for
from harness.watch import RunWatch

__all__ = ["CellResult", "CellRun", "NotRunnable", "cell_class", "check_runnable", "run_cell"]  # CellResult: cell_result

Notify = Callable[[str], None]
PhaseHook = Callable[[Phase, RunnerHandle], None]
LAB_WATCH_INTERVAL = 2.0  # a lab runner's log wakes the watch at the job's end: slow polls cost no latency
WATCH_INTERVAL = 1.0


class NotRunnable(HarnessError):
    """The cell cannot run here (no runner for its label kind, no Docker, no buildx); says why."""


def check_runnable(target: Target, scenario: Scenario, handle: RunnerHandle) -> str:
    """The ``runs-on`` label, or raise NotRunnable with the reason."""
    label = handle.runs_on(scenario.expect.kind)
    if label is None:
        raise NotRunnable(f"runner {handle.key} has no '{scenario.expect.kind}' label "
                          + ("(the lab has no Docker engine)" if target.lab else "(give --runner-label)"))
    needs = set(scenario.expect.requires)
    if "lab" in needs and (target.lab is None or handle.lab_runner is None):
        raise NotRunnable("needs the lab's runner-side observation (its Docker engine, its cache store), which a "
                          "runner the suite did not start does not expose")
    if target.lab is not None:
        if "docker" in needs and target.lab.engine is None:
            raise NotRunnable("needs a Docker engine; none answered and none could be started")
        if "buildx" in needs and (target.lab.prepared is None or not target.lab.prepared.buildx):
            why = target.lab.prepared.buildx_error if target.lab.prepared else "lab not prepared"
            raise NotRunnable(f"needs the buildx plugin, which lab prepare could not build: {why}")
        if "buildkit" in needs and (target.lab.prepared is None or not target.lab.prepared.buildkit_image):
            why = target.lab.prepared.buildkit_error if target.lab.prepared else "lab not prepared"
            raise NotRunnable(f"needs the buildkit image ({BUILDKIT_TAG}) for buildx's docker-container driver, "
                              f"which lab prepare could not build: {why}")
    if scenario.expect.control is not None and handle.lab_runner is None:
        raise NotRunnable("needs runner control, which only lab runners allow (runners the suite did not start "
                          "are never touched)")
    if scenario.expect.phases and handle.lab_runner is None:
        raise NotRunnable("runs in phases on one runner nobody else uses meanwhile (its action cache is what is "
                          "tested), which only a lab runner allows")
    if scenario.expect.phases and actions_base(target).rstrip("/") != target.url.rstrip("/"):
        raise NotRunnable("its phases move this cell's own copies of actions in the lab Forgejo, which --actions-url "
                          "replaces as the runners' source of actions")
    if scenario.expect.fault is not None and handle.lab_runner is None:
        raise NotRunnable("needs the fault proxy between the runner and Forgejo, which only a lab runner can be "
                          "pointed at (runners the suite did not start are never touched)")
    if scenario.expect.slow_actions is not None and handle.lab_runner is None:
        raise NotRunnable("needs the slow action server on this machine's loopback, which only a lab runner "
                          "reaches")
    if scenario.expect.heavy is not None and handle.lab_runner is None:
        raise NotRunnable("needs heavy stand-in actions seeded into the lab and a lab runner to measure")
    return label


def run_cell(
    target: Target,
    scenario: Scenario,
    handle: RunnerHandle,
    bundle_dir: Path,
    *,
    evidence: str = "on-failure",
    keep_repo: bool = False,
    setup_budget: tuple[float, float] | None = None,
    budgets: Budgets = BUDGETS,
    notify: Notify = lambda s: None,
    log_command: str | None = None,
    stall_command: str | None = None,
    own_runner: bool = False,
    before_phase: PhaseHook | None = None,
    condition: Mapping[str, Any] | None = None,
    kill_for_dump: bool = False,
) -> CellResult:
    """Run one cell; the result carries the verdict or why it is inconclusive, never raises for the cell itself.

    ``log_command`` / ``stall_command``: templates for runners the suite did not start (see
    :mod:`harness.observe.commands`); lab runners are observed directly. A scenario with ``phases`` runs
    once per phase on one runner (a private one, as for a disruptive cell), its action changes pushed before
    each phase after the first. ``own_runner``: the handle's runner is this cell's alone (used as it is).
    ``before_phase(phase, handle)`` is called before each phase's changes (e.g. to upgrade the runner in place).
    ``kill_for_dump``: an admin's runner (``--runner-process``) that stalls is sent SIGQUIT (it exits).
    ``condition``: the --condition the scenario was put under (:meth:`harness.conditions.Condition.to_json`; the
    scenario passed is already the conditioned one): recorded, and kept in the bundle so ``rerun`` repeats it.

    Raises:
        NotRunnable: before anything was pushed, when the cell cannot run here.
    """
    label = check_runnable(target, scenario, handle)
    budgets = hold_budgets(scenario.expect.fault, budgets)  # a timing fault's holds outlast no wait of ours
    result = CellResult(scenario.name, handle.key, str(handle.version), label, condition=scenario.condition)
    if condition is not None:
        result.observations["condition"] = dict(condition)
    bug = scenario.expect.known_bug
    axis_env = handle.lab_runner.env_overrides if handle.lab_runner is not None else {}  # the axis's env:
    result.known_bug = bug if bug is not None and bug.applies_to(handle.version, axis_env) else None
    try:
        with contextlib.ExitStack() as teardown:
            cell = CellScope(target, scenario, handle, label, budgets, notify, contextlib.ExitStack(), teardown,
                             job_ids=scenario.job_ids)
            run = CellRun(cell, result, target.transcript.mark())
            try:
                if not own_runner:
                    run.own_runner_if_disruptive()
                for phase in scenario.expect.phases or (None,):  # a scenario without phases runs once
                    run.begin_phase(phase, keep_repo, before_phase)
                    run.observed_job(Commands(log_command, stall_command, kill_for_dump), keep_repo, bundle_dir)
                    run.judge(setup_budget or (budgets.setup_cold, budgets.setup_warm))
            except HarnessError as exc:
                result.error = str(exc)
            except Exception as exc:
                result.error = f"internal error: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
            finally:
                run.classify()
                run.expect_fault_class()  # the class decides a fault cell
                run.write_evidence(bundle_dir, evidence)
    except HarnessError as exc:  # only the clean-up after the evidence can get here (e.g. the runner's restart)
        result.error = (result.error + "\n" if result.error else "") + f"clean-up after the cell failed: {exc}"
        result.classification = classify(Inputs(result.verdict, error=result.error))
    return result


def cell_class(result: CellResult) -> str | None:
    """The cell's failure class (``pass`` for a cell whose verdict holds)."""
    if result.verdict is not None and result.verdict.ok:
        return "pass"
    return result.classification.name if result.classification is not None else None


def repo_name(scenario: Scenario, runner_key: str) -> str:
    """A new repository name per cell (uuid-suffixed: a 409 on it after a lost answer is ours)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", f"{scenario.name}-{runner_key}-{uuid.uuid4().hex[:8]}")


@dataclass
class CellRun:
    """The state of one cell between its moments (see :func:`run_cell`)."""

    cell: CellScope
    result: CellResult
    mark: int
    observers: list[Observer] = field(default_factory=list)
    workflow: str = ""
    watcher: RunWatch | None = None
    done: Done | None = None
    findings: Findings = field(default_factory=Findings)
    extra: list[Violation] = field(default_factory=list)
    t_push: float = 0.0
    requests_at_done: int | None = None
    phase: Phase | None = None
    copies: dict[str, ActionCopy] = field(default_factory=dict)  # action (owner/name) → this cell's copy
    expected: tuple[ActionVersion, ...] = ()  # what the changed actions must print in this phase
    earlier: list[Violation] = field(default_factory=list)  # the violations of the phases before this one
    phase_evidence: list[EvidenceWriter] = field(default_factory=list)
    fault_proxy: FaultProxy | None = None

    def my_requests(self) -> list[dict[str, Any]]:
        """This cell's exchanges since its start (cells running at once share one transcript): those naming
        its repository, and its creation (whose body names it)."""
        name = self.cell.repo.split("/", 1)[-1]
        if not name:
            return []

        def mine(record: dict[str, Any]) -> bool:
            body = record.get("request_json")
            return (f"/{name}/" in f"{record.get('url') or record.get('repo') or ''}/"
                    or (isinstance(body, dict) and body.get("name") == name))

        return [r for r in self.cell.target.transcript.records(self.mark) if mine(r)]

    def own_runner_if_disruptive(self) -> None:
        """A cell that signals, restarts or slows its runner gets a private lab runner of that version (nobody
        else's job runs on it meanwhile, so parallel cells give the verdicts of a serial run)."""
        cell = self.cell
        expect, lab, shared = cell.scenario.expect, cell.target.lab, cell.handle.lab_runner
        if lab is None or shared is None or (expect.control is None and expect.slow_actions is None
                                             and expect.heavy is None  # heavy: measures its runner's concurrency
                                             and not expect.phases  # phases: its action cache is what is tested
                                             and expect.fault is None):
            return
        via = None
        if expect.fault is not None:  # the runner talks to Forgejo through the proxy from its registration on
            self.fault_proxy = FaultProxy(lab.forgejo.url, lab.forgejo.host).start()
            cell.teardown.callback(self.fault_proxy.stop)  # after the runner's stop (the stack unwinds backwards)
            via = self.fault_proxy.url
        env = expect.fault.runner_env if expect.fault is not None else {}
        cell.handle = private_handle(cell.target, cell.teardown, cell.handle.key, cell.notify, via, env)
        cell.label = self.result.label = cell.handle.runs_on(cell.scenario.expect.kind) or cell.label
        cell.disposable = True
        self.result.observations["private_runner"] = cell.handle.lab_runner.name

    def begin_phase(self, phase: Phase | None, keep_repo: bool, hook: PhaseHook | None) -> None:
        """Before a phase: the first makes this cell's copies of the actions the phases change; each later one
        clears the last phase's state and pushes its changes."""
        if phase is None:
            return
        cell = self.cell
        if hook is not None:
            hook(phase, cell.handle)
        if self.phase is None:
            self._copy_actions(keep_repo)
        else:
            self.observers, self.workflow, self.watcher, self.done = [], "", None, None
            self.findings, self.extra, self.requests_at_done = Findings(), [], None
            cell.wake.clear()
            moved = [self.copies[c.action].apply(c, phase.name) for c in phase.changes]
            cell.notify(f"phase {phase.name}: " + "; ".join(moved))
            self.result.observations.setdefault("action_changes", []).extend(f"{phase.name}: {m}" for m in moved)
        self.phase = phase
        self.expected = tuple(v for copy in self.copies.values() for v in copy.versions())

    def _copy_actions(self, keep_repo: bool) -> None:
        cell, target = self.cell, self.cell.target
        token = target.client.session.headers.get("Authorization", "").removeprefix("token ")
        user = target.client.whoami() if token else ""
        refs = {u.split("@")[0]: u.split("@")[1] for u in cell.scenario.uses() if "@" in u}
        for action in cell.scenario.changed_actions():
            name = repo_name(cell.scenario, cell.handle.key).replace(cell.scenario.name, action.split("/")[1], 1)
            copy = ActionCopy.create(target.client, base_url=target.url, user=user, token=str(token),
                                     owner=target.owner, org=target.org, action=action, source=ACTIONS_DIR / action,
                                     name=name, tags=(refs[action],))
            self.copies[action] = copy
            cell.teardown.callback(copy.close)
            cell.teardown.callback(self._delete_repo, name, keep_repo)
            cell.notify(f"{action}: this cell's copy is {copy.copy} ({', '.join(copy.tags)} at {copy.head()[:12]})")
        cell.actions = {a: c.copy for a, c in self.copies.items()}
        self.result.observations["action_copies"] = dict(cell.actions)

    def observed_job(self, commands: Commands, keep_repo: bool, bundle_dir: Path) -> None:
        """One job with the observers around it: chosen, ``before``, push, watch, their findings; what they
        hold is released when the watch ends (the ``observing`` stack)."""
        cell, expect = self.cell, self.cell.scenario.expect
        with cell.observing:
            slow = SlowActions(cell.target.url, expect.slow_actions, expect.slow_bandwidth) \
                if expect.slow_actions else None
            self.observers = choose(cell, commands, slow, self.fault_proxy)
            for observer in self.observers:
                observer.before(cell)
            self.push(cell.scenario.render(cell.label, slow.url if slow else None, self.action_names()), keep_repo)
            self.watch(bundle_dir)
            self.observe()

    def action_names(self) -> dict[str, str]:
        """Action → the repository this cell's workflow uses instead (its own copy)."""
        return dict(self.cell.actions)

    def push(self, workflow: str, keep_repo: bool) -> None:
        """A new repository with the workflow: the push starts the run (or a dispatch, where the scenario asks)."""
        cell, target = self.cell, self.cell.target
        self.workflow = workflow
        name = repo_name(cell.scenario, cell.handle.key)
        self.result.repo = cell.repo = f"{target.owner}/{name}"
        target.client.create_repo(name, owner=target.org)
        cell.teardown.callback(self._delete_repo, name, keep_repo)
        self.t_push = time.monotonic()
        target.client.commit_files(target.owner, name, [RepoFile(f".forgejo/workflows/{cell.scenario.workflow_file}",
                                                                 workflow.encode())], f"regress: {cell.scenario.name}")
        cell.run_index = 1
        if cell.scenario.expect.dispatch:
            cell.run_index = target.client.dispatch(target.owner, name, cell.scenario.workflow_file).run_number

    def _delete_repo(self, name: str, keep: bool) -> None:
        if keep or self.result.outcome is Outcome.INCONCLUSIVE:  # kept so a person can look
            self.result.observations["repo_kept"] = self.result.repo
            return
        with contextlib.suppress(HarnessError):
            self.cell.target.client.delete_repo(self.cell.target.owner, name)

    def watch(self, bundle_dir: Path) -> None:
        """Push → picked → done; a budget that runs out is judged on the last state seen, never lost."""
        cell, target = self.cell, self.cell.target
        ref = JobRef(target.owner, cell.repo.split("/", 1)[1], cell.run_index)
        interval = LAB_WATCH_INTERVAL if cell.handle.lab_runner is not None else WATCH_INTERVAL
        self.watcher = watcher = RunWatch(
            target.web, lambda: target.client.tasks(ref.owner, ref.repo), ref, cell.label, cell.budgets, cell.notify,
            self._on_poll, cell.wake, interval, str(bundle_dir))
        try:
            watcher.appear()
            watcher.picked()
            watcher.done()
            self.requests_at_done = len(self.my_requests())
        except PollTimeout as exc:
            if watcher.t_appeared is None:
                raise
            self._timed_out(exc)
        self.done = self._final(finished=not self.extra)
        if self.done.finished:
            self.done = self._await_final_log(self.done)
        self._timings()

    def _await_final_log(self, done: Done) -> Done:
        """A job whose result reached Forgejo before its final log lines (a slow Forgejo holding the runner's last
        UpdateLog) is judged on its complete log: watched up to ``final_log`` for the ``🏁`` line; a late arrival is
        the report-only ``report-late``, one that never comes is judged as it is (``final-log-lost``)."""
        statuses = tuple(v.job_status(i) for i, v in enumerate(done.views))
        waiting = lateness.awaiting_final_log(done.views, statuses)
        if not waiting:
            return done
        t0 = time.monotonic()
        self.cell.notify(f"{self.cell.repo}: the job's result is in, its final log lines not yet: waiting up to "
                         f"final_log={self.cell.budgets.final_log:g}s")

        def look() -> Done:
            return self._final(finished=True)

        def complete(found: Done) -> bool:
            return not lateness.awaiting_final_log(found.views, tuple(v.job_status(i)
                                                                      for i, v in enumerate(found.views)))

        try:
            found = wait_for(f"the final log lines of {self.cell.repo}", "final_log", look, complete,
                             budgets=self.cell.budgets, describe=lambda d: f"{len(d.views)} job views, no 🏁 line",
                             wait=lambda _: 1.0)
        except PollTimeout:
            self.result.observations["final_log"] = {"waited": round(time.monotonic() - t0, 1), "arrived": False}
            return look()
        late = round(time.monotonic() - t0, 1)
        self.result.observations["final_log"] = {"waited": late, "arrived": True}
        self.result.observations["report_late"] = {"seconds": late, "step": lateness.FINAL_STEP, "final_log": True}
        self.extra.append(lateness.final_log_late(late, waiting))
        return found

    def _on_poll(self, tasks: tuple[Any, ...], view: JobView | None) -> None:
        poll = Poll(tasks, view)
        for observer in self.observers:
            observer.on_poll(poll)

    def _timed_out(self, exc: PollTimeout) -> None:
        """A budget ran out: cancel the run, say who is to blame (the runner, or unknown: inconclusive)."""
        assert self.watcher is not None
        cancelled = self.watcher.cancel()
        self.result.observations["timeout"] = {"budget": exc.budget_name, "seconds": exc.budget, "last": exc.last}
        if self.watcher.t_picked is not None:  # picked, never done: the runner (or the server) hung
            self.extra.append(Violation("gave-up-waiting", f"still not done after {exc.budget_name}={exc.budget:g}s "
                                        f"({cancelled}); last state: {exc.last}"))
            return
        runner = self.cell.handle.lab_runner
        message = (f"no runner with label {self.cell.label!r} picked the job of {self.cell.repo} within "
                   f"pickup={exc.budget:g}s ({cancelled}); last state: {exc.last}")
        if runner is not None and runner.pid and alive(runner.pid):
            self.extra.append(Violation("never-picked", message + f"; runner {runner.name} was running"))
            return
        self.result.error = message + ("; the runner was not running" if runner is not None else
                                       "; the suite cannot see whether that runner is online")

    def _final(self, *, finished: bool) -> Done:
        """Every job's full view, the raw log (so far) and the tasks."""
        assert self.watcher is not None
        watcher, web = self.watcher, self.cell.target.web
        views = watcher.final_views() if watcher.last_view is not None else []
        try:
            raw_log = web.raw_log(watcher.ref)
        except HarnessError as exc:  # e.g. a zombie-stopped task whose log never reached storage (HTTP 500)
            raw_log = None
            self.result.observations["raw_log_unavailable"] = str(exc)
        tasks = self.cell.target.client.tasks(watcher.ref.owner, watcher.ref.repo)
        mine = tuple(t for t in tasks if t.run_number == self.cell.run_index)
        return Done(views, raw_log, mine, tuple(t.id for t in reversed(mine)), finished)

    def _timings(self) -> None:
        assert self.watcher is not None
        w, t0 = self.watcher, self.t_push
        for key, moment in (("appear", w.t_appeared), ("pickup", w.t_picked), ("done_seen", w.t_done_seen)):
            if moment is not None:
                self.result.timings[key] = round(moment - t0, 3)
        total = len(self.my_requests())
        watch = self.requests_at_done if self.requests_at_done is not None else total
        seconds = (w.t_done_seen or time.monotonic()) - t0
        self.result.observations["requests"] = {
            "push_to_done_seen": watch, "total": total, "watch_seconds": round(seconds, 2),
            "per_second": round(watch / seconds, 2) if seconds > 0 else None}

    def observe(self) -> None:
        """Every observer's findings, merged."""
        assert self.done is not None
        self.findings = merge([observer.after(self.done) for observer in self.observers])
        self.result.observations.update(self.findings.observations)
        if self.findings.inconclusive:
            raise HarnessError(self.findings.inconclusive)

    def judge(self, default_setup: tuple[float, float]) -> None:
        """The verdict over every job's final view and the observers' findings."""
        assert self.done is not None
        t0 = time.monotonic()
        if not self.done.views:
            raise HarnessError(f"no job view of {self.cell.repo} could be read")
        f = self.findings
        obs = Observation(cold=f.cold, runner_log=f.runner_log, extra=(*self.extra, *f.violations),
                          unavailable=f.unavailable, actions=self.expected)
        verdict = judge(self.done.views, self.cell.scenario.expect, obs, default_setup=default_setup,
                        job_ids=self.cell.job_ids)
        if self.phase is not None:
            verdict = self._end_phase(verdict)
        self.result.verdict = verdict
        if self.cell.scenario.expect.marker == "selfcheck":
            self.result.observations["selfcheck"] = True
            self.result.selfcheck_problem = selfcheck_mismatch(verdict, self.cell.scenario.expect.expected_violations)
        seen = self.watcher.t_done_seen if self.watcher else None
        self.result.timings["verdict_latency"] = round(time.monotonic() - (seen or t0), 3)
        stamps = [line.timestamp for view in self.done.views for line in view.log_lines()]
        if stamps and self.done.finished:  # the runner's last job-log line ≈ its final report (lab: same clock)
            self.result.timings["job_end_to_verdict"] = round(time.time() - max(stamps), 3)
        self.result.timings["setup_seconds"] = verdict.setup_seconds or 0.0

    def classify(self) -> None:
        """The cell's failure class from what Forgejo showed (views, raw log, tasks) and the timings."""
        done, result = self.done, self.result
        timeout = (self.cell.target.info.get("actions") or {}).get("ZOMBIE_TASK_TIMEOUT")
        result.classification = classify(Inputs(
            result.verdict, views=tuple(done.views) if done else (), raw_log=done.raw_log if done else None,
            tasks=done.tasks if done else (), error=result.error, selfcheck_problem=result.selfcheck_problem,
            runner_log=self.findings.runner_log, timings=result.timings,
            zombie_timeout=parse_go_duration(str(timeout)) if timeout else None))
        self.cell.failure_class = result.classification.name if result.classification else None

    def _end_phase(self, verdict: Verdict) -> Verdict:
        """A phase judged: its violations named by phase and kept; the cell's verdict holds every phase's."""
        assert self.phase is not None and self.done is not None
        name = self.phase.name
        own = tuple(Violation(v.rule, f"phase {name}: {v.message}", v.severity) for v in verdict.violations)
        printed = {v.action: [line.message.strip() for view in self.done.views for line in view.log_lines()
                              if v.prefix in line.message] for v in self.expected}
        self.result.observations.setdefault("phases", []).append({
            "phase": name, "repo": self.cell.repo, "runner_from_log": self.result.observations.get("runner_from_log"),
            "job": str(verdict.job_status), "setup_seconds": verdict.setup_seconds,
            "cold": verdict.cold, "rules": list(dict.fromkeys(v.rule for v in verdict.failing)),
            "actions": [{"action": v.action, "ref": v.ref, "commit": v.commit, "expected": v.marker,
                         "printed": printed.get(v.action, [])} for v in self.expected],
            "timings": dict(self.result.timings)})
        if self.done.raw_log is not None:
            self.phase_evidence.append(write_text(f"phase-{name}.job.log", self.done.raw_log))
        self.findings = dataclasses.replace(self.findings,
                                            evidence=(*self.findings.evidence, *self.phase_evidence))
        verdict = dataclasses.replace(verdict, violations=(*self.earlier, *own))
        self.earlier.extend(own)
        return verdict

    def expect_fault_class(self) -> None:
        """A fault cell holds when its class is the one its ``fault.expect`` names for this runner (an unexpected
        class, or none, is said as the cell's problem)."""
        spec, result = self.cell.scenario.expect.fault, self.result
        if spec is None or result.verdict is None:
            return
        if not spec.decides_class:  # a condition: the scenario's own expectation decides, if the fault came
            observed = result.observations.setdefault("fault", {})
            observed.update({"class": cell_class(result), "expected_class": None,
                             "rests_on": spec.rests_on.get(result.version) or spec.rests_on.get(result.runner_key)})
            why = ("never came: nothing was injected" if not observed.get("fired") else
                   "came after the runner's last report: no request was held, dropped or answered"
                   if observed.get("affected_requests") == 0 else "")
            if why and not result.error:
                result.error = (f"the fault's trigger ({spec.trigger.describe()}) {why}, so this cell says nothing "
                                f"about runner {result.runner_key} under {spec.fault.describe()}")
                result.classification = classify(Inputs(result.verdict, error=result.error))
            return
        expected = spec.expected_for(result.runner_key, result.version)
        actual = cell_class(result)
        fault = result.observations.setdefault("fault", {})
        fault.update({"class": actual, "expected_class": " or ".join(expected) or None,
                      "rests_on": spec.rests_on.get(result.version) or spec.rests_on.get(result.runner_key)})
        if not fault.get("fired"):
            result.selfcheck_problem = f"fault: the trigger ({spec.trigger.describe()}) never came, nothing was injected"
        elif not expected:
            result.selfcheck_problem = (f"fault: expect.yml names no expected class for runner {result.runner_key} "
                                        f"(got {actual})")
        elif actual not in expected:
            result.selfcheck_problem = (f"fault: expected class {' or '.join(expected)} on {result.runner_key}, got "
                                        f"{actual or 'none'}")
        else:
            result.observations["fault_expected"] = True

    def write_evidence(self, bundle_dir: Path, evidence: str) -> None:
        """The bundle, when asked for; a failure to write it is said, and never stops the clean-up."""
        if self.done is None and self.watcher is not None:  # an error mid-watch: keep what was seen
            with contextlib.suppress(Exception):
                self.done = self._final(finished=False)
        want = evidence == "always" or (evidence == "on-failure" and not self.result.passed)
        if not want:
            return
        from harness.cell_bundle import write_bundle

        try:
            self.result.bundle = write_bundle(bundle_dir, self)
        except Exception as exc:
            self.result.error = (self.result.error or "") + (
                f"\n(evidence could not be written to {bundle_dir}: {type(exc).__name__}: {exc})")
