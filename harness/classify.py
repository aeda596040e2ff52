"""Failure classes: every cell that is not a pass is named by ONE mechanism, with the evidence that decided it.

Pure: the inputs are what Forgejo shows (the judge's verdict, the job views, the raw log, the tasks
API) and the cell's own timings, never the runner's side, so the class is the same on an existing
instance the suite cannot look into (``--forgejo-url``). The runner's sources name three ways a job
with green steps ends failed without the runner process dying (issue 12):

- ``finalization-lost``: the runner stopped reporting and Forgejo's zombie check failed the task:
  no ``🏁  Job …`` line and no last words; the failure lands ≈ ``ZOMBIE_TASK_TIMEOUT`` + the cron
  period after the last log line; steps still open are failed with 0 s and no line of their own.
- ``report-gave-up``: the runner's reporter closed without a job result: the job is failed, its
  unfinished steps cancelled, the last log line is ``Cancelled`` / ``Early termination`` or the
  run error (runner ``internal/pkg/report/reporter.go``, ``Close``).
- ``context-cancelled``: the job's context was cancelled: ``🏁  Job failed`` after green steps
  (runner ``act/runner/job_executor.go``; the reporter cancels when the server answers
  FAILURE/CANCELLED), or ``🏁  Job failed`` with the running step killed by the cancel: its line
  ``this step has been cancelled: ctx: context canceled`` (``act/container/host_environment.go``; 12.x
  shows it in the step's log) or the steps after it cancelled, never started (a step failing on its own
  leaves them skipped). Measured: a graceful stop of the runner (``runner.shutdown_timeout: 0s``,
  ``term-during-main``).

Precedence (the first that holds wins; :data:`PRECEDENCE` is this order):

1. ``inconclusive`` — our own side failed (API, lab, evidence): never a runner's class.
2. ``workflow-rejected`` — Forgejo did not run the workflow (rule of that name).
3. ``never-picked`` — no runner picked the job while the runner was up.
4. ``gave-up-waiting`` — still running when the suite's budget ran out (or not done when judged).
5. ``stale-action`` — the action's code is not the commit its ref points at now (rule ``stale-action``,
   the ``some refs were not updated`` line in the job log or the runner log): the root cause even
   when a step then failed.
6. ``finalization-lost``, 7. ``report-gave-up``, 8. ``context-cancelled`` — see above.
9. ``hidden-post-failure`` — a post step failed and the job is marked successful.
10. ``final-log-lost`` — the job is marked successful but its last log lines never arrived: no ``🏁  Job …``
    line, and nothing failed but what that loss explains (the line itself, a post step left without an
    outcome). The runner's result reached Forgejo in a periodic report while its final log upload failed
    (measured: Forgejo answering 500 to UpdateLog from "Complete job" on, ``500-updatelog-complete``).
11. ``step-failed`` — a legitimate failure: the runner logged the job failed and a step (a post step, or
    "Set up job": its error line quoted) failed.
12. ``setup-slow`` — "Set up job" over its budget (never a "Set up job" stretched by the zombie stop).
13. ``unexplained`` — a disagreement none of the above explains; the class says so plainly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.forgejo.models import COMPLETE_STEP, SETUP_STEP, JobView, Status, Task
from harness.verdict import JOB_RESULT_LINE, LAST_WORDS, Verdict, zombie_stop

INCONCLUSIVE = "inconclusive"
WORKFLOW_REJECTED = "workflow-rejected"
NEVER_PICKED = "never-picked"
GAVE_UP_WAITING = "gave-up-waiting"
STALE_ACTION = "stale-action"
FINALIZATION_LOST = "finalization-lost"
REPORT_GAVE_UP = "report-gave-up"
CONTEXT_CANCELLED = "context-cancelled"
HIDDEN_POST_FAILURE = "hidden-post-failure"
FINAL_LOG_LOST = "final-log-lost"
STEP_FAILED = "step-failed"
SETUP_SLOW = "setup-slow"
UNEXPLAINED = "unexplained"

PRECEDENCE: tuple[str, ...] = (
    INCONCLUSIVE, WORKFLOW_REJECTED, NEVER_PICKED, GAVE_UP_WAITING, STALE_ACTION, FINALIZATION_LOST,
    REPORT_GAVE_UP, CONTEXT_CANCELLED, HIDDEN_POST_FAILURE, FINAL_LOG_LOST, STEP_FAILED, SETUP_SLOW, UNEXPLAINED,
)
CLASSES = frozenset(PRECEDENCE)
FAIL_CLASSES = frozenset(PRECEDENCE) - {INCONCLUSIVE}  # the outcome of every one of these is ``fail``

LOST_LOG_RULES = frozenset({"marker-missing", "post-step-cut-off"})  # what a lost final log fails, and no more
STALE_LINE = re.compile(r"some refs were not updated")  # go-git's fetch without force (runner 11.x), issue 12
STALE_RULES = (STALE_ACTION, "signature:git-refs-not-updated")
CANCELLED_STEP = re.compile(r"this step has been cancelled: ctx: context canceled")  # a step killed by the job's cancel
RUNNER_ERROR = re.compile(r"^⚙️ \[runner\]: |^Error: ")  # the runner's own error lines in the job log (12.x)
ZOMBIE_SLACK = 2.0  # seconds: whole-second stop times vs sub-second log stamps
ZOMBIE_FLOOR = 10.0  # seconds of silence before a stop that only the zombie check explains (timeout unknown)
_QUOTE = 200


@dataclass(frozen=True)
class Inputs:
    """What the classifier reads; everything is optional except the verdict (None: no verdict).

    ``zombie_timeout``: Forgejo's ``ZOMBIE_TASK_TIMEOUT`` in seconds when known (the lab's); on an
    existing instance None, and the silence before the stop is reported without that check.
    """

    verdict: Verdict | None
    views: Sequence[JobView] = ()
    raw_log: str | None = None
    tasks: Sequence[Task] = ()
    error: str | None = None
    selfcheck_problem: str | None = None
    runner_log: str | None = None  # read for a stale-action line only (the job log carries the same line)
    zombie_timeout: float | None = None
    timings: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Classification:
    """One cell's class, why, the lines that decided it and the timings it rests on."""

    name: str
    why: str
    evidence: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in CLASSES:
            raise ValueError(f"unknown failure class {self.name!r}; known: {', '.join(PRECEDENCE)}")

    def line(self) -> str:
        """``class: <name> — <why>`` (the first line of repro.md)."""
        return f"class: {self.name} — {self.why}"

    def to_json(self) -> dict[str, Any]:
        """``class_evidence`` of report.json (the class itself is the record's ``class``)."""
        return {"why": self.why, "lines": list(self.evidence), "timings": dict(self.timings)}


Check = Callable[[Inputs, set[str]], Classification | None]


def classify(inputs: Inputs) -> Classification | None:
    """The class of a cell; None for a clean pass (no error, no failing violation, no selfcheck problem).

    A selfcheck that passed because exactly the expected violations fired is classified too: its
    class is the mechanism the selfcheck reproduces.
    """
    if inputs.error:
        return Classification(INCONCLUSIVE, f"our own side failed: {inputs.error.splitlines()[0][:_QUOTE]}")
    verdict = inputs.verdict
    if verdict is None:
        return Classification(INCONCLUSIVE, "no verdict was reached (no job view could be judged)")
    failing = verdict.failing
    if not failing and inputs.selfcheck_problem is None:
        return None
    rules = {v.rule for v in failing}
    for _name, check in _CHECKS:
        found = check(inputs, rules)
        if found is not None:
            return found
    return _unexplained(inputs)


# -- one check per class, in precedence order --------------------------------------------------------------


def _by_rule(name: str, rule: str, why: str) -> Check:
    def check(inputs: Inputs, rules: set[str]) -> Classification | None:
        if rule not in rules:
            return None
        assert inputs.verdict is not None
        hits = tuple(v.message[:_QUOTE] for v in inputs.verdict.failing if v.rule == rule)
        return Classification(name, why, hits, _cell_timings(inputs))
    return check


def _gave_up(inputs: Inputs, rules: set[str]) -> Classification | None:
    if not rules & {GAVE_UP_WAITING, "job-not-done"}:
        return None
    assert inputs.verdict is not None
    hits = tuple(v.message[:_QUOTE] for v in inputs.verdict.failing if v.rule in (GAVE_UP_WAITING, "job-not-done"))
    return Classification(GAVE_UP_WAITING, "the job was still running when the suite's budget ran out", hits,
                          _cell_timings(inputs))


def _stale(inputs: Inputs, rules: set[str]) -> Classification | None:
    assert inputs.verdict is not None
    hits = [v.message[:_QUOTE] for v in inputs.verdict.violations if v.rule in STALE_RULES]
    hits += [f"job log: {line.strip()[:_QUOTE]}" for line in _log_texts(inputs) if STALE_LINE.search(line)][:1]
    hits += [f"runner log: {line.strip()[:_QUOTE]}" for line in (inputs.runner_log or "").splitlines()
             if STALE_LINE.search(line)][:1]
    if not hits:
        return None
    return Classification(STALE_ACTION, "the action's code came from a stale clone: its ref was re-pointed or "
                          "force-pushed and the runner did not update its copy", tuple(hits), _cell_timings(inputs))


def _no_result(inputs: Inputs, rules: set[str]) -> Classification | None:
    """finalization-lost / report-gave-up: a failed job without the runner's ``🏁`` line."""
    for view, status in _failed_views(inputs):
        lines = view.log_lines()
        if any(JOB_RESULT_LINE.search(line.message) for line in lines):
            continue
        last = lines[-1].message.strip() if lines else ""
        cancelled = [s.name for s in view.workflow_steps() if s.status is Status.CANCELLED]
        evidence = [f"last log line: {last[:_QUOTE]!r}" if lines else "no log line at all",
                    "no '🏁  Job …' line: the runner's job result never reached Forgejo"]
        if last in LAST_WORDS or cancelled:
            evidence += [f"cancelled steps: {cancelled}"] if cancelled else []
            return Classification(REPORT_GAVE_UP, "the runner's reporter closed without a job result: Forgejo got "
                                  "FAILURE with the unfinished steps cancelled", tuple(evidence), _cell_timings(inputs))
        zombie = zombie_stop(view, status)
        if zombie is None:
            continue
        timings = {**_cell_timings(inputs), **_stop_timings(zombie.last_line, zombie.stopped, view, inputs.tasks)}
        silence = timings.get("silence_before_stop")
        evidence.append(zombie.describe())
        if zombie.silent_steps:
            evidence.append(f"steps failed with 0 s and no log line of their own: {list(zombie.silent_steps)}")
        timeout = inputs.zombie_timeout
        floor = timeout - ZOMBIE_SLACK if timeout is not None else ZOMBIE_FLOOR
        bound = f"ZOMBIE_TASK_TIMEOUT {timeout:g}s" if timeout is not None else f"the {ZOMBIE_FLOOR:g}s floor"
        if silence is None and zombie.silent_steps:  # only Forgejo's stop fails steps so
            return Classification(FINALIZATION_LOST, "Forgejo's zombie check failed the task after the runner "
                                  "stopped reporting (the stop's time is not shown)", tuple(evidence), timings)
        if silence is None:
            return Classification(UNEXPLAINED, "the job failed without the runner's result line, and neither the "
                                  "last log line nor the stop has a time to tell Forgejo's zombie check from the "
                                  "runner's own close", tuple(evidence), timings)
        if silence >= floor:
            return Classification(FINALIZATION_LOST, f"the runner stopped reporting while {zombie.running!r} ran "
                                  f"and Forgejo's zombie check failed the task {silence:g}s after the last log line "
                                  f"(at least {bound})", tuple(evidence), timings)
        if silence < ZOMBIE_FLOOR and not zombie.silent_steps:
            return Classification(REPORT_GAVE_UP, f"the runner reported FAILURE itself {silence:g}s after its last "
                                  "log line, without a job result line: its reporter closed with the run error "
                                  "as last words", tuple(evidence), timings)
        return Classification(UNEXPLAINED, f"the job failed without the runner's result line {silence:g}s after "
                              f"its last log line: sooner than {bound} (so not Forgejo's zombie check) and later than "
                              "the runner's own close would be", tuple(evidence), timings)
    return None


def _cancelled_context(inputs: Inputs, rules: set[str]) -> Classification | None:
    verdict = inputs.verdict
    assert verdict is not None
    for view, _ in _failed_views(inputs):
        lines = view.log_lines()
        result = next((line.message.strip() for line in lines if JOB_RESULT_LINE.search(line.message)), None)
        posts_failed = any("Failure - Post" in line.message for line in lines)
        rows = view.workflow_steps()
        green = bool(rows) and all(s.status in (Status.SUCCESS, Status.SKIPPED) for s in rows)
        if result is not None and "failed" in result and green and not posts_failed:
            return Classification(CONTEXT_CANCELLED, "the job's context was cancelled: the runner logged the job "
                                  "failed after every step succeeded", (f"job log: {result!r}",
                                                                        "every workflow step green, no post step failed"),
                                  _cell_timings(inputs))
        if result is None or "failed" not in result:
            continue
        killed = [line.message.strip()[:_QUOTE] for line in lines if CANCELLED_STEP.search(line.message)]
        failed = [i for i, s in enumerate(rows) if s.status is Status.FAILURE]
        cancelled = [s.name for s in rows[failed[0] + 1:] if s.status is Status.CANCELLED] if failed else []
        if killed or cancelled:  # a step that fails on its own leaves the next ones skipped, not cancelled
            return Classification(CONTEXT_CANCELLED, "the job's context was cancelled while a step ran: the runner "
                                  "killed the step, never started the next ones and logged the job failed (not a "
                                  "failure of the step itself)",
                                  (f"job log: {result!r}", *(f"job log: {line}" for line in killed[:1]),
                                   f"failed step: {[rows[i].name for i in failed]}", f"cancelled steps: {cancelled}"),
                                  _cell_timings(inputs))
    return None


def _final_log_lost(inputs: Inputs, rules: set[str]) -> Classification | None:
    """A successful job whose log stops before the runner's ``🏁`` line, and nothing else failed."""
    verdict = inputs.verdict
    assert verdict is not None
    if not rules or not rules <= LOST_LOG_RULES or _failed_views(inputs) or not inputs.views:
        return None
    lacking = [v for v in inputs.views if not any(JOB_RESULT_LINE.search(line.message) for line in v.log_lines())]
    if not lacking:
        return None
    if not all("🏁" in v.message for v in verdict.failing if v.rule == "marker-missing"):
        return None  # another marker is missing: the loss of the last lines does not explain it
    lines = lacking[0].log_lines()
    last = lines[-1].message.strip() if lines else ""
    evidence = (f"last log line: {last[:_QUOTE]!r}" if lines else "no log line at all",
                "the job is marked successful, but no '🏁  Job …' line arrived: the runner's result reached Forgejo, "
                "its last log lines did not",
                *(v.message[:_QUOTE] for v in verdict.failing))
    return Classification(FINAL_LOG_LOST, "the job succeeded but its last log lines were lost: the result reached "
                          "Forgejo in a periodic report while the runner's final log upload failed", evidence,
                          _cell_timings(inputs))


def _step_failed(inputs: Inputs, rules: set[str]) -> Classification | None:
    """The runner reported the job failed and a step failed: a workflow step, a post step or "Set up job"."""
    verdict = inputs.verdict
    assert verdict is not None
    if not rules & {"unexpected-job-result", "unexpected-step-result"}:
        return None  # an expected failure is no explanation of another disagreement
    evidence: list[str] = []
    setup_failed = False
    for view, _ in _failed_views(inputs):
        lines = view.log_lines()
        result = next((line.message.strip() for line in lines if JOB_RESULT_LINE.search(line.message)), None)
        failed = [s.name for s in view.steps if s.status is Status.FAILURE and s.name != COMPLETE_STEP]
        posts = [line.message.strip() for line in lines if "Failure - Post" in line.message]
        if result is None or not (failed or posts):
            continue
        setup_failed = setup_failed or SETUP_STEP in failed
        errors = [line.message.strip()[:_QUOTE] for line in lines if RUNNER_ERROR.search(line.message)]
        evidence += [f"job log: {result!r}", *(f"failed step: {n!r}" for n in failed), *posts[:3], *errors[:2]]
    evidence += [v.message[:_QUOTE] for v in verdict.failing
                 if v.rule == "unexpected-step-result" and f" is {Status.FAILURE}," in v.message]
    if not evidence:
        return None
    why = ("'Set up job' failed and the runner reported it (its error line is quoted; the workflow steps were "
           "cancelled)" if setup_failed else "a step failed and the runner reported it: a legitimate failure")
    return Classification(STEP_FAILED, why, tuple(evidence), _cell_timings(inputs))


def _setup_slow(inputs: Inputs, rules: set[str]) -> Classification | None:
    if "setup-over-budget" not in rules:
        return None
    verdict = inputs.verdict
    assert verdict is not None
    hits = tuple(v.message[:_QUOTE] for v in verdict.failing if v.rule == "setup-over-budget")
    timings = {**_cell_timings(inputs)}
    if verdict.setup_seconds is not None:
        timings["setup_seconds"] = round(verdict.setup_seconds, 1)
    if verdict.setup_budget is not None:
        timings["setup_budget"] = verdict.setup_budget
    return Classification(SETUP_SLOW, "'Set up job' took longer than its budget", hits, timings)


def _unexplained(inputs: Inputs) -> Classification:
    verdict = inputs.verdict
    assert verdict is not None
    hits = tuple(str(v)[:_QUOTE] for v in verdict.failing)
    if inputs.selfcheck_problem:
        hits += (f"selfcheck: {inputs.selfcheck_problem[:_QUOTE]}",)
    rules = ", ".join(dict.fromkeys(v.rule for v in verdict.failing)) or "none"
    return Classification(UNEXPLAINED, f"no failure class explains this disagreement (failing rules: {rules})",
                          hits, _cell_timings(inputs))


_CHECKS: tuple[tuple[str, Check], ...] = (
    (WORKFLOW_REJECTED, _by_rule(WORKFLOW_REJECTED, WORKFLOW_REJECTED, "Forgejo did not run the workflow")),
    (NEVER_PICKED, _by_rule(NEVER_PICKED, NEVER_PICKED, "no runner picked the job within the pickup budget "
                            "while the runner was up")),
    (GAVE_UP_WAITING, _gave_up),
    (STALE_ACTION, _stale),
    (FINALIZATION_LOST, _no_result),  # also decides report-gave-up: the same evidence tells them apart
    (CONTEXT_CANCELLED, _cancelled_context),
    (HIDDEN_POST_FAILURE, _by_rule(HIDDEN_POST_FAILURE, HIDDEN_POST_FAILURE,
                                   "a post step failed and the job is marked successful")),
    (FINAL_LOG_LOST, _final_log_lost),
    (STEP_FAILED, _step_failed),
    (SETUP_SLOW, _setup_slow),
)


# -- helpers -------------------------------------------------------------------------------------------------


def _failed_views(inputs: Inputs) -> list[tuple[JobView, Status]]:
    """(view, status) of every job view whose job failed (status from the verdict's jobs by index)."""
    verdict = inputs.verdict
    assert verdict is not None
    statuses = verdict.job_statuses
    found = []
    for i, view in enumerate(inputs.views):
        status = statuses[i] if i < len(statuses) else view.job_status(i)
        if status is Status.FAILURE:
            found.append((view, status))
    return found


def _log_texts(inputs: Inputs) -> list[str]:
    lines = [line.message for view in inputs.views for line in view.log_lines()]
    return lines or (inputs.raw_log or "").splitlines()


def _cell_timings(inputs: Inputs) -> dict[str, float]:
    return {k: v for k, v in inputs.timings.items() if k in ("pickup", "done_seen", "setup_seconds")}


def _stop_timings(last_line: float | None, stopped: float | None, view: JobView,
                  tasks: Sequence[Task]) -> dict[str, float]:
    """When the last log line was written, when the stop landed (view, or the task's ``updated_at``)."""
    task_end = max((t.updated_at.timestamp() for t in tasks if t.updated_at and t.status is Status.FAILURE),
                   default=None)
    complete = view.step(COMPLETE_STEP)
    complete_end = complete.started + (complete.duration or 0.0) if complete and complete.started else None
    candidates = [s for s in (stopped, task_end, complete_end) if s]
    end = max(candidates) if candidates else None
    timings: dict[str, float] = {}
    if last_line is not None:
        timings["last_log_line"] = round(last_line, 3)
    if end is not None:
        timings["stopped"] = round(end, 3)
    if last_line is not None and end is not None:
        timings["silence_before_stop"] = round(max(0.0, end - last_line), 1)
    return timings
