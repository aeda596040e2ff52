"""The judge: invariants over an observed job → every violation, never only the first.

Facts from real recordings: "Set up job" and "Complete job" are synthetic rows; "Complete job"
carries the job's own status (never evidence); post steps have no rows: they run inside
"Complete job" and their outcome is in its log (``⭐ Run Post X`` then ``✅  Success - Post X`` or
``❌  Failure - Post X``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.forgejo.models import COMPLETE_STEP, SETUP_STEP, JobView, LogLine, Status
from harness.scenarios import Expect

_POST_START = re.compile(r"⭐\s+Run Post (.+?)\s*$")
_POST_END = re.compile(r"(✅|❌)\s+(Success|Failure) - Post (.+?)\s*(?:\[[^\]]*\])?\s*$")


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
    """A post step as seen in the "Complete job" log."""

    name: str
    outcome: Status | None  # None: started, no outcome line (cut off)


@dataclass(frozen=True)
class Observation:
    """What the judge needs beyond the job view (all optional; missing means "not observed")."""

    setup_seconds: float | None = None
    cold: bool | None = None  # None: unknown → the cold budget applies
    runner_log: str | None = None
    extra: Sequence[Violation] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The judge's answer."""

    violations: tuple[Violation, ...]
    job_status: Status
    steps: tuple[tuple[str, Status, float | None], ...]
    post_steps: tuple[PostStep, ...]
    setup_seconds: float | None
    setup_budget: float | None
    cold: bool | None

    @property
    def failing(self) -> tuple[Violation, ...]:
        """Violations with severity ``fail``."""
        return tuple(v for v in self.violations if v.severity == "fail")

    @property
    def ok(self) -> bool:
        """No failing violation."""
        return not self.failing

    def rules(self) -> tuple[str, ...]:
        """The distinct rule names, in order."""
        return tuple(dict.fromkeys(v.rule for v in self.violations))

    def table(self) -> str:
        """The step table and the violations, for a failed test's message and repro.md."""
        lines = [f"job: {self.job_status}"]
        width = max([len(n) for n, _, _ in self.steps] + [10])
        for name, status, duration in self.steps:
            dur = "" if duration is None else f"{duration:g}s"
            lines.append(f"  {name[:60]:<{min(width, 60)}}  {status:<9} {dur}")
        for post in self.post_steps:
            outcome = post.outcome or "no outcome line (cut off)"
            lines.append(f"  (post) {post.name[:53]:<{min(width, 60) - 7}}  {outcome}")
        if self.setup_seconds is not None:
            temp = {True: "cold", False: "warm", None: "cache state unknown"}[self.cold]
            budget = f" / budget {self.setup_budget:g}s" if self.setup_budget else ""
            lines.append(f"setup: {self.setup_seconds:.1f}s ({temp}){budget}")
        if self.violations:
            lines.append("violations:")
            lines.extend(f"  - {v}" for v in self.violations)
        else:
            lines.append("violations: none")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (evidence, report.json, JUnit properties)."""
        return {
            "ok": self.ok,
            "job": str(self.job_status),
            "steps": [{"name": n, "status": str(s), "duration": d} for n, s, d in self.steps],
            "post_steps": [{"name": p.name, "outcome": str(p.outcome) if p.outcome else None} for p in self.post_steps],
            "setup_seconds": self.setup_seconds,
            "setup_budget": self.setup_budget,
            "cold": self.cold,
            "violations": [{"rule": v.rule, "message": v.message, "severity": v.severity} for v in self.violations],
        }


def post_steps(lines: Iterable[LogLine | str]) -> tuple[PostStep, ...]:
    """Post steps and their outcomes from log lines (the "Complete job" step's, or the raw log)."""
    found: dict[str, Status | None] = {}
    for line in lines:
        text = line.message if isinstance(line, LogLine) else line
        start = _POST_START.search(text)
        if start:
            found.setdefault(start[1], None)
            continue
        end = _POST_END.search(text)
        if end:
            found[end[3]] = Status.SUCCESS if end[2] == "Success" else Status.FAILURE
    return tuple(PostStep(name, outcome) for name, outcome in found.items())


def setup_seconds(view: JobView) -> float | None:
    """Seconds of "Set up job": its first log line to its last (``⭐ Run Main`` of the first step).

    Log timestamps have sub-second precision; the row's duration (whole seconds) is the fallback.
    """
    setup = view.step(SETUP_STEP)
    if setup is None:
        return None
    if len(setup.lines) >= 2:
        return max(0.0, setup.lines[-1].timestamp - setup.lines[0].timestamp)
    return setup.duration


def judge(view: JobView, expect: Expect, obs: Observation, *, default_setup: tuple[float, float]) -> Verdict:
    """Every violation of the scenario's expectations and of the step/job invariants.

    Args:
        view: the final job view with logs.
        expect: the scenario's expectations.
        obs: runner-side observations.
        default_setup: (cold, warm) setup budgets used where the scenario names none.
    """
    violations: list[Violation] = []
    job = view.job_status(0)
    rows = view.workflow_steps()
    complete = view.step(COMPLETE_STEP)
    posts = post_steps(complete.lines if complete and complete.lines else view.log_lines())

    if not view.done:
        violations.append(Violation("job-not-done", f"the run is not done: {view.summary()}"))

    # green steps, failed job
    def green(step_name: str, status: Status) -> bool:
        if status in (Status.SUCCESS, Status.SKIPPED):
            return True
        return status is Status.FAILURE and step_name in expect.continue_on_error

    failed_posts = [p for p in posts if p.outcome is Status.FAILURE]
    cut_off = [p for p in posts if p.outcome is None]
    all_green = bool(rows) and all(green(s.name, s.status) for s in rows)
    if job is Status.FAILURE and all_green and not failed_posts:
        violations.append(Violation(
            "green-steps-failed-job",
            "every workflow step succeeded and no post step failed, but the job is marked failed"
            + (f" (detail: {view.job_detail})" if view.job_detail else ""),
        ))
        violations.extend(
            Violation("post-step-cut-off", f"post step {p.name!r} started and never reported an outcome")
            for p in cut_off
        )
    if job is Status.SUCCESS:
        violations.extend(
            Violation("hidden-post-failure", f"post step {p.name!r} failed but the job is marked successful")
            for p in failed_posts
        )

    # expectations
    if job is not expect.job:
        legit = job is Status.FAILURE and any(s.status is Status.FAILURE and not green(s.name, s.status) for s in rows)
        why = " (a step failed: a legitimate failure, not a disagreement)" if legit else ""
        violations.append(Violation("unexpected-job-result", f"job is {job}, expected {expect.job}{why}"))
    by_name = {s.name: s for s in rows}
    for name, wanted in expect.steps.items():
        step = by_name.get(name)
        if step is None:
            violations.append(Violation("missing-step", f"no step row {name!r}; rows: {[s.name for s in rows]}"))
        elif step.status is not wanted:
            violations.append(Violation("unexpected-step-result", f"step {name!r} is {step.status}, expected {wanted}"))
    seen_posts = {p.name: p for p in posts}
    for name in expect.post_steps:
        post = seen_posts.get(name)
        if post is None:
            violations.append(Violation("missing-step", f"post step {name!r} never ran; post steps: {list(seen_posts)}"))
        elif post.outcome is not Status.SUCCESS and job is not Status.FAILURE:
            pass  # reported above as hidden-post-failure when the job succeeded

    # setup budget
    cold_budget = expect.setup_cold or default_setup[0]
    warm_budget = expect.setup_warm or default_setup[1]
    budget = warm_budget if obs.cold is False else cold_budget
    seconds = obs.setup_seconds if obs.setup_seconds is not None else setup_seconds(view)
    if seconds is not None and seconds > budget:
        temp = "warm" if obs.cold is False else ("cold" if obs.cold else "cache state unknown, cold budget")
        violations.append(Violation("setup-over-budget", f"'Set up job' took {seconds:.1f}s > {budget:g}s ({temp})"))

    # log markers
    job_log = "\n".join(line.message for line in view.log_lines())
    for marker in expect.job_log_must:
        if not marker_found(marker, job_log):
            violations.append(Violation("marker-missing", f"job log lacks {marker!r}"))
    for marker in expect.job_log_must_not:
        if marker_found(marker, job_log):
            violations.append(Violation("marker-present", f"job log contains {marker!r}"))
    if expect.runner_log_must or expect.runner_log_must_not:
        if obs.runner_log is None:
            reason = obs.unavailable.get("runner_log", "no runner log for this runner")
            violations.append(Violation("observation-unavailable", f"runner log markers not checked: {reason}",
                                        "report"))
        else:
            for marker in expect.runner_log_must:
                if not marker_found(marker, obs.runner_log):
                    violations.append(Violation("marker-missing", f"runner log lacks {marker!r}"))
            for marker in expect.runner_log_must_not:
                if marker_found(marker, obs.runner_log):
                    violations.append(Violation("marker-present", f"runner log contains {marker!r}"))
    violations.extend(obs.extra)
    return Verdict(
        violations=tuple(violations),
        job_status=job,
        steps=tuple((s.name, s.status, s.duration) for s in view.steps),
        post_steps=posts,
        setup_seconds=seconds,
        setup_budget=budget,
        cold=obs.cold,
    )


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
