"""The judge: invariants over every job of an observed run → every violation, never only the first.

Facts from real recordings: "Set up job" and "Complete job" are synthetic rows; "Complete job"
carries the job's own status (never evidence); post steps have no rows: they run inside
"Complete job" and their outcome is in its log (``⭐ Run Post X`` then ``✅  Success - Post X`` or
``❌  Failure - Post X``). The ``⭐ Run Main`` line of the first workflow step is logged in the
"Set up job" row, and for a docker job or a JavaScript action further lines of that first step
follow it there (``🐳  docker exec``, ``❓ add-matcher``): setup ends at ``⭐ Run``, not at the row's end.

Forgejo's zombie check (``stop_zombie_tasks``) fails a task whose runner stopped reporting: every step
not yet done becomes ``failure`` (those not started server-side with 0 s and no log line of their
own), and "Set up job" runs until the first step's (stop) time. The runner's own end of a job never
looks like that: it logs ``🏁  Job …`` with a result, or closes with last words and cancels the
unfinished steps. :func:`zombie_stop` recognises it; such steps are no legitimate failure and such a
"Set up job" is not over budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.forgejo.models import COMPLETE_STEP, SETUP_STEP, JobView, LogLine, Status, Step
from harness.scenarios import Expect

_POST_START = re.compile(r"⭐\s+Run Post (.+?)\s*$")
_POST_END = re.compile(r"(✅|❌)\s+(Success|Failure) - Post (.+?)\s*(?:\[[^\]]*\])?\s*$")
_FIRST_RUN = re.compile(r"⭐\s+Run (?:Pre|Main) ")  # the first workflow code the runner starts
JOB_RESULT_LINE = re.compile(r"🏁\s+Job (succeeded|failed|cancelled|skipped)")  # the runner's own job result
LAST_WORDS = ("Cancelled", "Early termination")  # the reporter's Close without a job result (runner reporter.go)

StepRow = tuple[str, Status, float | None]


@dataclass(frozen=True)
class Violation:
    """One broken rule; ``severity`` is ``fail`` (fails the test) or ``report`` (shown only)."""

    rule: str
    message: str
    severity: str = "fail"

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}" + (" (report only)" if self.severity == "report" else "")


@dataclass(frozen=True)
class PostStep:
    """A post step as seen in the "Complete job" log (one per ``⭐ Run Post`` line, duplicates kept)."""

    name: str
    outcome: Status | None  # None: started, no outcome line (cut off)


@dataclass(frozen=True)
class ZombieStop:
    """A task failed by Forgejo's stop (zombie check) rather than by the runner's own result.

    ``running``: the row that was running when the runner went silent (``Set up job`` when no
    workflow step had started server-side, ``Complete job`` when every workflow step had finished);
    ``stopped_steps``: the workflow steps the stop failed; ``silent_steps``: those of them with 0 s
    and no log line of their own; ``last_line``/``stopped``: epoch seconds of the job's last log
    line and of the stop (the silent steps' start, or "Complete job"'s start + duration: whole
    seconds), None when not shown.
    """

    running: str
    stopped_steps: tuple[str, ...]
    silent_steps: tuple[str, ...]
    last_line: float | None
    stopped: float | None

    @property
    def setup_stretched(self) -> bool:
        """"Set up job" carries the time until the stop, not a setup time."""
        return self.running == SETUP_STEP

    @property
    def silence(self) -> float | None:
        """Seconds from the last log line to the stop (None when either is unknown)."""
        if self.last_line is None or self.stopped is None:
            return None
        return round(max(0.0, self.stopped - self.last_line), 1)

    def describe(self) -> str:
        """One line: what was running, which steps the stop failed."""
        failed = f"; steps failed by the stop: {list(self.stopped_steps)}" if self.stopped_steps else ""
        silence = f"; {self.silence:g}s from the last log line to the stop" if self.silence is not None else ""
        return f"no job result from the runner: Forgejo stopped the task while {self.running!r} ran{failed}{silence}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``JobVerdict.to_json()["zombie_stop"]``)."""
        return {"running": self.running, "stopped_steps": list(self.stopped_steps),
                "silent_steps": list(self.silent_steps), "last_line": self.last_line, "stopped": self.stopped,
                "silence_seconds": self.silence}


def zombie_stop(view: JobView, status: Status) -> ZombieStop | None:
    """The zombie stop of a failed job, from its view alone; None when the runner ended the job itself.

    Failed, with step rows, no ``🏁  Job …`` line, no cancelled workflow step and no last words
    (``Cancelled`` / ``Early termination``) as the last log line: only Forgejo's stop ends a task so.
    """
    if status is not Status.FAILURE or not view.steps:
        return None
    lines = view.log_lines()
    if any(JOB_RESULT_LINE.search(line.message) for line in lines):
        return None
    if lines and lines[-1].message.strip() in LAST_WORDS:
        return None
    rows = view.workflow_steps()
    if any(s.status is Status.CANCELLED for s in rows):
        return None
    failed = [s for s in rows if s.status is Status.FAILURE]
    silent = [s for s in failed if not s.lines and not s.duration]
    if rows and rows[0] in silent:
        running = SETUP_STEP
    else:
        running = next((s.name for s in failed if s not in silent), failed[0].name if failed else COMPLETE_STEP)
    complete = view.step(COMPLETE_STEP)  # it runs from the last step's end to the task's stop
    starts = [s.started for s in silent if s.started]
    if complete is not None and complete.started:
        starts.append(complete.started + (complete.duration or 0.0))
    return ZombieStop(running, tuple(s.name for s in failed), tuple(s.name for s in silent),
                      lines[-1].timestamp if lines else None, max(starts) if starts else None)


@dataclass(frozen=True)
class JobVerdict:
    """One job of the run as the judge saw it."""

    index: int
    name: str
    status: Status
    steps: tuple[StepRow, ...]
    post_steps: tuple[PostStep, ...]
    setup_seconds: float | None
    viewed: bool = True  # False: no job view of this job; judged on its status (``state.run.jobs``) only
    zombie: ZombieStop | None = None  # the task was failed by Forgejo's stop, not by the runner

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one entry of ``Verdict.to_json()["jobs"]``)."""
        return {
            "index": self.index,
            "name": self.name,
            "status": str(self.status),
            "steps": [{"name": n, "status": str(s), "duration": d} for n, s, d in self.steps],
            "post_steps": [{"name": p.name, "outcome": str(p.outcome) if p.outcome else None} for p in self.post_steps],
            "setup_seconds": self.setup_seconds,
            "viewed": self.viewed,
            "zombie_stop": self.zombie.to_json() if self.zombie else None,
        }


@dataclass(frozen=True)
class ActionVersion:
    """An action a phased cell changed: the commit its ref points at now, and the version it prints there
    (``<name>-version: <marker>``, see :mod:`harness.faults.action_repo`)."""

    action: str  # owner/name as the workflow's ``uses:`` names it
    ref: str
    commit: str
    marker: str

    @property
    def prefix(self) -> str:
        """The start of the line the action prints: ``movetag-version:``."""
        return f"{self.action.split('/')[-1]}-version:"


@dataclass(frozen=True)
class Observation:
    """What the judge needs beyond the job views (all optional; missing means "not observed")."""

    setup_seconds: float | None = None  # measured by the caller: replaces the log-based figure of every job
    cold: bool | None = None  # None: unknown → the cold budget applies
    runner_log: str | None = None
    extra: Sequence[Violation] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)
    actions: Sequence[ActionVersion] = ()  # a phased cell's changed actions: the version each must print now


@dataclass(frozen=True)
class Verdict:
    """The judge's answer. ``job_status``, ``steps`` and ``post_steps`` are the first job's; ``jobs`` has all."""

    violations: tuple[Violation, ...]
    job_status: Status
    steps: tuple[StepRow, ...]
    post_steps: tuple[PostStep, ...]
    setup_seconds: float | None  # the slowest job's
    setup_budget: float | None
    cold: bool | None
    jobs: tuple[JobVerdict, ...] = ()

    @property
    def failing(self) -> tuple[Violation, ...]:
        """Violations with severity ``fail``."""
        return tuple(v for v in self.violations if v.severity == "fail")

    @property
    def ok(self) -> bool:
        """No failing violation."""
        return not self.failing

    @property
    def all_jobs(self) -> tuple[JobVerdict, ...]:
        """Every job; a verdict built without ``jobs`` yields one job from the first job's fields."""
        if self.jobs:
            return self.jobs
        return (JobVerdict(0, "", self.job_status, self.steps, self.post_steps, self.setup_seconds),)

    @property
    def job_statuses(self) -> tuple[Status, ...]:
        """The status of every job, by job index."""
        return tuple(j.status for j in self.all_jobs)

    def rules(self) -> tuple[str, ...]:
        """The distinct rule names, in order."""
        return tuple(dict.fromkeys(v.rule for v in self.violations))

    def table(self) -> str:
        """The step table(s) and the violations, for a failed test's message and repro.md."""
        jobs = self.all_jobs
        lines: list[str] = []
        if len(jobs) == 1:
            lines.append(f"job: {self.job_status}")
            lines.extend(_rows_table(jobs[0], "  "))
        else:
            lines.append(f"run: {len(jobs)} jobs")
            for job in jobs:
                seen = "" if job.viewed else " (no job view: status only)"
                lines.append(f"job {job.index} {job.name!r}: {job.status}{seen}")
                lines.extend(_rows_table(job, "    "))
                if job.setup_seconds is not None:
                    lines.append(f"    setup: {job.setup_seconds:.1f}s")
        for job in jobs:
            if job.zombie is not None:
                who = f"job {job.name!r}: " if len(jobs) > 1 else ""
                lines.append(f"{who}{job.zombie.describe()}")
        if self.setup_seconds is not None:
            temp = {True: "cold", False: "warm", None: "cache state unknown"}[self.cold]
            budget = f" / budget {self.setup_budget:g}s" if self.setup_budget else ""
            slowest = " (slowest job)" if len(jobs) > 1 else ""
            lines.append(f"setup: {self.setup_seconds:.1f}s{slowest} ({temp}){budget}")
        if self.violations:
            lines.append("violations:")
            lines.extend(f"  - {v}" for v in self.violations)
        else:
            lines.append("violations: none")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (evidence, report.json, JUnit properties); ``job``/``steps``/``post_steps``: job 0's."""
        first = self.all_jobs[0].to_json()
        return {
            "ok": self.ok,
            "job": str(self.job_status),
            "steps": first["steps"],
            "post_steps": first["post_steps"],
            "jobs": [j.to_json() for j in self.all_jobs],
            "setup_seconds": self.setup_seconds,
            "setup_budget": self.setup_budget,
            "cold": self.cold,
            "violations": [{"rule": v.rule, "message": v.message, "severity": v.severity} for v in self.violations],
        }


def verdict_from_json(data: Mapping[str, Any]) -> Verdict:
    """A verdict back from its ``to_json()`` (a bundle's verdict.json): what the classifier reads of it.

    Raises:
        ValueError: not a verdict's JSON (a status or severity that is none of the known words).
    """
    def rows(job: Mapping[str, Any]) -> tuple[StepRow, ...]:
        return tuple((str(s["name"]), Status(str(s["status"])), s.get("duration")) for s in job.get("steps") or [])

    def posts(job: Mapping[str, Any]) -> tuple[PostStep, ...]:
        return tuple(PostStep(str(p["name"]), Status(str(p["outcome"])) if p.get("outcome") else None)
                     for p in job.get("post_steps") or [])

    try:
        jobs = tuple(JobVerdict(int(j.get("index", i)), str(j.get("name", "")), Status(str(j.get("status"))), rows(j),
                                posts(j), j.get("setup_seconds"), bool(j.get("viewed", True)))
                     for i, j in enumerate(data.get("jobs") or []))
        violations = tuple(Violation(str(v["rule"]), str(v.get("message", "")), str(v.get("severity", "fail")))
                           for v in data.get("violations") or [])
        first = jobs[0] if jobs else JobVerdict(0, "", Status(str(data.get("job", "unknown"))), (), (), None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a verdict: {exc!r}") from None
    if any(v.severity not in ("fail", "report") for v in violations):
        raise ValueError("not a verdict: a violation's severity is neither 'fail' nor 'report'")
    return Verdict(violations, first.status, first.steps, first.post_steps, data.get("setup_seconds"),
                   data.get("setup_budget"), data.get("cold"), jobs)


def _rows_table(job: JobVerdict, indent: str) -> list[str]:
    width = min(max([len(n) for n, _, _ in job.steps] + [10]), 60)
    lines = []
    for name, status, duration in job.steps:
        dur = "" if duration is None else f"{duration:g}s"
        lines.append(f"{indent}{name[:60]:<{width}}  {status:<9} {dur}")
    for post in job.post_steps:
        outcome = post.outcome or "no outcome line (cut off)"
        lines.append(f"{indent}(post) {post.name[:53]:<{width - 7}}  {outcome}")
    return lines


def post_steps(lines: Iterable[LogLine | str]) -> tuple[PostStep, ...]:
    """Post steps and their outcomes from log lines (the "Complete job" step's, or the raw log).

    Each ``⭐ Run Post X`` is paired with the next outcome line for X, in order, so a post step
    that runs twice is two entries (a failed first run is not hidden by a successful second one).
    An outcome line without a pending start is kept as its own entry.
    """
    found: list[PostStep] = []
    pending: dict[str, list[int]] = {}
    for line in lines:
        text = line.message if isinstance(line, LogLine) else line
        start = _POST_START.search(text)
        if start:
            pending.setdefault(start[1], []).append(len(found))
            found.append(PostStep(start[1], None))
            continue
        end = _POST_END.search(text)
        if end:
            outcome = Status.SUCCESS if end[2] == "Success" else Status.FAILURE
            waiting = pending.get(end[3])
            if waiting:
                found[waiting.pop(0)] = PostStep(end[3], outcome)
            else:
                found.append(PostStep(end[3], outcome))
    return tuple(found)


def setup_window(view: JobView) -> tuple[float, float] | None:
    """Start and end (epoch seconds) of "Set up job": its first log line to the first ``⭐ Run`` line.

    The end is the first ``⭐ Run Pre``/``⭐ Run Main`` line of the setup row or of the first workflow
    step that has lines; else the first line of that step; else the setup row's own last line; else its
    start plus the row's duration (whole seconds). None when the job has no "Set up job" row or no time.
    """
    setup = view.step(SETUP_STEP)
    if setup is None:
        return None
    start = setup.lines[0].timestamp if setup.lines else setup.started
    if start is None:
        return None
    first = next((s for s in view.workflow_steps() if s.lines), None)
    candidates = setup.lines[1:] + (first.lines if first else ())
    marked = next((line.timestamp for line in candidates if _FIRST_RUN.search(line.message)), None)
    if marked is not None:
        end = marked
    elif first is not None:
        end = first.lines[0].timestamp
    elif len(setup.lines) >= 2:
        end = setup.lines[-1].timestamp
    elif setup.duration is not None:
        end = start + setup.duration
    else:
        return None
    return start, max(start, end)


def setup_seconds(view: JobView) -> float | None:
    """Seconds of "Set up job" (see :func:`setup_window`); the row's duration when it has no timestamps."""
    window = setup_window(view)
    if window is not None:
        return window[1] - window[0]
    setup = view.step(SETUP_STEP)
    return setup.duration if setup is not None else None


# -- the judge ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """A job under judgement: what the verdict shows plus the view it came from (None: status only)."""

    verdict: JobVerdict
    view: JobView | None
    key: str  # the workflow job id when known, else the job's name
    label: str  # "" for a single-job run, else "job 'name': " for messages

    @property
    def rows(self) -> tuple[Step, ...]:
        return self.view.workflow_steps() if self.view is not None else ()


def judge(views: Sequence[JobView] | JobView, expect: Expect, obs: Observation, *,
          default_setup: tuple[float, float], job_ids: Sequence[str] = ()) -> Verdict:
    """Every violation of the scenario's expectations and of the step/job invariants, over every job.

    Args:
        views: the final job view of each job index of the run (``views[i]`` shows job ``i``); a single
            JobView is taken as ``[view]``. Jobs of the run beyond the views are judged on status only.
        expect: the scenario's expectations (``expect.jobs`` overrides ``expect.job`` per job id).
        obs: runner-side observations.
        default_setup: (cold, warm) setup budgets used where the scenario names none.
        job_ids: the workflow's job ids in order (``Scenario.job_ids``), to match ``expect.jobs`` keys
            when a job's name differs from its id; without them a key matches the job's name.
    """
    all_views = (views,) if isinstance(views, JobView) else tuple(views)
    if not all_views:
        raise ValueError("judge needs at least one job view")
    jobs = _jobs(all_views, expect, job_ids)
    violations = _run_level(all_views, jobs)
    for job in jobs:
        violations.extend(_invariants(job, expect))
    rejected = any(v.rule == "workflow-rejected" for v in violations)
    violations.extend(_job_results(jobs, expect, rejected=rejected))
    violations.extend(_step_expectations(jobs, expect))
    budget, seconds, over = _setup_budget(jobs, expect, obs, default_setup)
    violations.extend(over)
    violations.extend(_job_markers(jobs, expect))
    violations.extend(_runner_markers(expect, obs))
    violations.extend(stale_actions(jobs, obs.actions))
    violations.extend(obs.extra)
    first = jobs[0].verdict
    return Verdict(
        violations=tuple(violations),
        job_status=first.status,
        steps=first.steps,
        post_steps=first.post_steps,
        setup_seconds=seconds,
        setup_budget=budget,
        cold=obs.cold,
        jobs=tuple(j.verdict for j in jobs),
    )


def _jobs(views: tuple[JobView, ...], expect: Expect, job_ids: Sequence[str]) -> list[_Job]:
    summaries = views[-1].jobs
    count = max(len(views), len(summaries))
    jobs = []
    for i in range(count):
        view = views[i] if i < len(views) else None
        known = view.jobs if view is not None and view.jobs else summaries
        name = known[i].name if i < len(known) else (view.job_title if view is not None else "") or f"job {i}"
        status = known[i].status if i < len(known) else Status.UNKNOWN
        posts: tuple[PostStep, ...] = ()
        if view is not None:
            complete = view.step(COMPLETE_STEP)
            posts = post_steps(complete.lines if complete and complete.lines else view.log_lines())
        verdict = JobVerdict(
            index=i, name=name, status=status,
            steps=tuple((s.name, s.status, s.duration) for s in view.steps) if view is not None else (),
            post_steps=posts, setup_seconds=setup_seconds(view) if view is not None else None,
            viewed=view is not None, zombie=zombie_stop(view, status) if view is not None else None,
        )
        key = job_ids[i] if len(job_ids) == count else name
        jobs.append(_Job(verdict, view, key, f"job {name!r}: " if count > 1 else ""))
    return jobs


def _run_level(views: tuple[JobView, ...], jobs: list[_Job]) -> list[Violation]:
    """Not done, the run's own error, views that show another job, jobs without a view."""
    violations = []
    not_done = next((v for v in views if not v.done), None)
    if not_done is not None:
        violations.append(Violation("job-not-done", f"the run is not done: {not_done.summary()}"))
    for error in dict.fromkeys(v.run_error for v in views if v.run_error):
        violations.append(Violation("workflow-rejected", f"Forgejo did not run the workflow; its error: {error}"))
    last = views[-1]
    if last.run_done and not last.jobs and not last.run_error:
        violations.append(Violation("workflow-rejected", f"the run ended {last.run_status} without a single job "
                                    "(Forgejo gave no error text)"))
    for i, view in enumerate(views):
        shown = view.jobs[i].name if i < len(view.jobs) else ""
        if view.job_title and shown and view.job_title != shown:
            violations.append(Violation("job-view-mismatch", f"the view passed for job index {i} shows job "
                                        f"{view.job_title!r}, not {shown!r} (Forgejo answers an out-of-range "
                                        "job index with job 0): that job was not judged"))
    blind = [j.verdict.name for j in jobs if not j.verdict.viewed]
    if blind:
        violations.append(Violation("observation-unavailable", f"no job view of {blind}: their steps, post steps "
                                    "and logs were not checked, only their status", "report"))
    return violations


def _green(step: Step, expect: Expect) -> bool:
    if step.status in (Status.SUCCESS, Status.SKIPPED):
        return True
    return step.status is Status.FAILURE and step.name in expect.continue_on_error


def _invariants(job: _Job, expect: Expect) -> list[Violation]:
    """Green steps in a failed job, cut-off post steps (whatever the job status), hidden post failures."""
    violations = []
    status, posts = job.verdict.status, job.verdict.post_steps
    failed_posts = [p for p in posts if p.outcome is Status.FAILURE]
    rows = job.rows
    if status is Status.FAILURE and rows and all(_green(s, expect) for s in rows) and not failed_posts:
        detail = job.view.job_detail if job.view is not None else ""
        violations.append(Violation(
            "green-steps-failed-job",
            f"{job.label}every workflow step succeeded and no post step failed, but the job is marked failed"
            + (f" (detail: {detail})" if detail else ""),
        ))
    if status.done:
        violations.extend(
            Violation("post-step-cut-off", f"{job.label}post step {p.name!r} started and never reported an outcome "
                      f"(job {status})")
            for p in posts if p.outcome is None
        )
    if status is Status.SUCCESS:
        violations.extend(
            Violation("hidden-post-failure", f"{job.label}post step {p.name!r} failed but the job is marked successful")
            for p in failed_posts
        )
    return violations


def _job_results(jobs: list[_Job], expect: Expect, *, rejected: bool) -> list[Violation]:
    """Each job's status against ``expect.jobs[id]`` or ``expect.job``; ``expect.jobs`` keys that match no job."""
    violations = []
    for job in jobs:
        status = job.verdict.status
        wanted = next((s for k, s in expect.jobs.items() if _matches(k, job)), expect.job)
        if status is wanted or (rejected and status is Status.UNKNOWN):
            continue  # a rejected run has no job to disagree: workflow-rejected says why
        zombie = job.verdict.zombie
        legit = status is Status.FAILURE and zombie is None and any(
            s.status is Status.FAILURE and not _green(s, expect) for s in job.rows)
        why = " (a step failed: a legitimate failure, not a disagreement)" if legit else ""
        if zombie is not None:
            why = f" ({zombie.describe()}: not a legitimate failure)"
        subject = f"job {job.verdict.name!r}" if job.label else "job"
        violations.append(Violation("unexpected-job-result", f"{subject} is {status}, expected {wanted}{why}"))
    for key in expect.jobs:
        if not any(_matches(key, job) for job in jobs):
            violations.append(Violation("missing-job", f"expect.yml names job {key!r}; the run's jobs: "
                                        f"{[j.verdict.name for j in jobs]}"))
    return violations


def _matches(key: str, job: _Job) -> bool:
    """An ``expect.jobs`` key names this job: its id, its name, or its name with a matrix suffix ``id (…)``."""
    return key in (job.key, job.verdict.name) or job.verdict.name.startswith(f"{key} (")


def _step_expectations(jobs: list[_Job], expect: Expect) -> list[Violation]:
    """Expected step rows and post steps, matched in every job that has them."""
    violations = []
    several = len(jobs) > 1
    for name, wanted in expect.steps.items():
        having = [(j, s) for j in jobs for s in j.rows if s.name == name]
        if not having:
            rows = {j.verdict.name: [s.name for s in j.rows] for j in jobs} if several else [s.name for s in jobs[0].rows]
            violations.append(Violation("missing-step", f"no step row {name!r}; rows: {rows}"))
        violations.extend(
            Violation("unexpected-step-result", f"{job.label}step {name!r} is {step.status}, expected {wanted}")
            for job, step in having if step.status is not wanted
        )
    for name in expect.post_steps:
        having_posts = [(j, p) for j in jobs for p in j.verdict.post_steps if p.name == name]
        if not having_posts:
            seen = list(dict.fromkeys(p.name for j in jobs for p in j.verdict.post_steps))
            violations.append(Violation("missing-step", f"post step {name!r} never ran; post steps: {seen}"))
        violations.extend(  # in a successful job this is hidden-post-failure; cut-off posts are reported above
            Violation("unexpected-step-result", f"{job.label}post step {name!r} failed")
            for job, post in having_posts if post.outcome is Status.FAILURE and job.verdict.status is not Status.SUCCESS
        )
    return violations


def _setup_budget(jobs: list[_Job], expect: Expect, obs: Observation,
                  default_setup: tuple[float, float]) -> tuple[float, float | None, list[Violation]]:
    """(budget, slowest setup seconds, violations): every job's "Set up job" against the budget."""
    cold_budget = expect.setup_cold or default_setup[0]
    warm_budget = expect.setup_warm or default_setup[1]
    budget = warm_budget if obs.cold is False else cold_budget
    temp = "warm" if obs.cold is False else ("cold" if obs.cold else "cache state unknown, cold budget")
    def stretched(job: _Job) -> bool:  # "Set up job" ran until Forgejo's zombie stop: no setup time
        return job.verdict.zombie is not None and job.verdict.zombie.setup_stretched

    if obs.setup_seconds is not None:
        measured = [] if all(stretched(j) for j in jobs) else [("", obs.setup_seconds)]
    else:
        measured = [(j.label, j.verdict.setup_seconds) for j in jobs
                    if j.verdict.setup_seconds is not None and not stretched(j)]
    violations = [Violation("setup-over-budget", f"{label}'Set up job' took {seconds:.1f}s > {budget:g}s ({temp})")
                  for label, seconds in measured if seconds > budget]
    slowest = max((seconds for _, seconds in measured), default=None)
    return budget, slowest, violations


def _job_markers(jobs: list[_Job], expect: Expect) -> list[Violation]:
    """Job-log markers: a ``must`` marker in some job's log, a ``must_not`` marker in none."""
    logs = [(j, "\n".join(line.message for line in j.view.log_lines())) for j in jobs if j.view is not None]
    several = len(logs) > 1
    violations = []
    for marker in expect.job_log_must:
        if not any(marker_found(marker, text) for _, text in logs):
            violations.append(Violation("marker-missing", f"{'no job log has' if several else 'job log lacks'} "
                                        f"{marker!r}"))
    for marker in expect.job_log_must_not:
        violations.extend(Violation("marker-present", f"{job.label}job log contains {marker!r}")
                          for job, text in logs if marker_found(marker, text))
    return violations


STALE_ACTION = "stale-action"  # the rule, and the failure class it names (with the job log's git-refs signature)
REFS_NOT_UPDATED = "some refs were not updated"  # runner 11.x's go-git fetch of a re-pointed tag (quoted as the cause)


def stale_actions(jobs: Sequence[_Job], actions: Sequence[ActionVersion]) -> list[Violation]:
    """``stale-action``: a changed action printed another version than the one its ref points at now (the
    runner ran an outdated copy); ``marker-missing`` when it printed none."""
    violations = []
    for want in actions:
        printed = [(job, line.message.strip()) for job in jobs if job.view is not None
                   for line in job.view.log_lines() if want.prefix in line.message]
        if not printed:
            violations.append(Violation("marker-missing", f"no job log line {want.prefix!r}: {want.action}@{want.ref} "
                                        f"(now {want.commit[:12]}, version {want.marker}) never said which version ran"))
        for job, line in printed:
            seen = line.split(want.prefix, 1)[1].strip()
            if seen == want.marker:
                continue
            assert job.view is not None
            why = next((f"job log {m.message.strip()!r}, then " for m in job.view.log_lines()
                        if REFS_NOT_UPDATED in m.message), "")
            violations.append(Violation(STALE_ACTION, f"{job.label}{why}{want.action}@{want.ref} printed {line!r} though "
                                        f"{want.ref} is at {want.commit[:12]} ({want.prefix} {want.marker}): outdated "
                                        "action code ran"))
    return violations


def _runner_markers(expect: Expect, obs: Observation) -> list[Violation]:
    """Runner-log markers; a report-only note when there is no runner log to read."""
    if not (expect.runner_log_must or expect.runner_log_must_not):
        return []
    if obs.runner_log is None:
        reason = obs.unavailable.get("runner_log", "no runner log for this runner")
        return [Violation("observation-unavailable", f"runner log markers not checked: {reason}", "report")]
    violations = [Violation("marker-missing", f"runner log lacks {marker!r}")
                  for marker in expect.runner_log_must if not marker_found(marker, obs.runner_log)]
    violations.extend(Violation("marker-present", f"runner log contains {marker!r}")
                      for marker in expect.runner_log_must_not if marker_found(marker, obs.runner_log))
    return violations


def marker_found(marker: str, text: str) -> bool:
    """A log marker: a plain substring, or a regular expression when written ``re:<pattern>``."""
    if marker.startswith("re:"):
        return re.search(marker[3:], text, re.M) is not None
    return marker in text


def selfcheck_mismatch(verdict: Verdict, expected: Sequence[str]) -> str | None:
    """For selfcheck scenarios: None when exactly the expected rules fired, else the difference."""
    got = set(verdict.rules()) - {"observation-unavailable"}
    want = set(expected)
    if got == want:
        return None
    return f"expected violations {sorted(want)}, the judge found {sorted(got)}"
