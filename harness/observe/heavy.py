"""Heavy stand-in actions for one cell: seeded when the cell runs, a one-job cold baseline first, and
"Set up job" of every job against ``factor`` × that baseline (``setup_budget_relative``).

The baseline runs on the cell's own (private) runner before the cell's push, with a heavy action of its
own (cold too), so the budget is relative to what one cold job costs on that runner, that day, at that
load: two jobs at once on one runner that clone in parallel stay near 1×, a runner that clones one
action at a time behind a global lock (v11) makes the second job wait ≈ one more clone.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.budgets import BUDGETS, Budgets
from harness.errors import HarnessError
from harness.forgejo.client import RepoFile
from harness.forgejo.models import JobView, Status
from harness.forgejo.web import JobRef
from harness.lab.seed import Seeded, seed_heavy
from harness.observe import cpu as cpu_obs
from harness.observe.base import CellScope, Done, Findings, Quiet
from harness.scenarios import HeavyActions as HeavyExpect
from harness.verdict import Violation, setup_window
from harness.watch import RunWatch

if TYPE_CHECKING:
    from harness.target import Target

Notify = Callable[[str], None]


@dataclass(frozen=True)
class SetupFigure:
    """One job's "Set up job": seconds, and the runner's CPU (with its children) in that window."""

    job: str
    seconds: float | None
    cpu_pct: float | None
    window: tuple[float, float] | None

    def to_json(self) -> dict[str, Any]:
        """For the cell's observations."""
        return {"job": self.job, "seconds": self.seconds, "cpu_pct": self.cpu_pct}


def setup_figures(views: list[JobView] | tuple[JobView, ...], samples: list[cpu_obs.Sample],
                  job_ids: tuple[str, ...] = (), interval: float = 0.1) -> list[SetupFigure]:
    """Each job's setup seconds (:func:`harness.verdict.setup_window`) and mean tree CPU in its window."""
    figures = []
    for index, view in enumerate(views):
        window = setup_window(view)
        name = job_ids[index] if index < len(job_ids) else f"job {index}"
        cpu = None
        if window is not None:
            cpu = cpu_obs.phase_means(samples, {"setup": window}, interval)["setup"]["tree_pct"]
        figures.append(SetupFigure(name, round(window[1] - window[0], 2) if window else None,
                                   cpu if isinstance(cpu, float | int) else None, window))
    return figures


def relative_violations(figures: list[SetupFigure], baseline: float, factor: float) -> list[Violation]:
    """``setup-over-budget`` for every job whose "Set up job" exceeds ``factor`` × the baseline."""
    limit = factor * baseline
    return [Violation("setup-over-budget", f"{f.job}: 'Set up job' took {f.seconds:.1f}s > {factor:g} × {baseline:.1f}s "
                      f"(one cold job alone on this runner, measured first) = {limit:.1f}s")
            for f in figures if f.seconds is not None and f.seconds > limit]


@dataclass
class HeavyActionsObserver(Quiet):
    """Seeds the heavy stand-ins; runs the baseline workflow; judges each job against the relative budget."""

    spec: HeavyExpect
    slow_url: Callable[[], str | None] = lambda: None  # the slow action server's URL, once it listens
    name: str = "heavy-actions"
    seeded: list[Seeded] = field(default_factory=list)
    seed_seconds: float | None = None
    baseline: SetupFigure | None = None
    baseline_log: str = ""
    sampler: cpu_obs.CpuSampler | None = None
    scope: CellScope | None = None

    def before(self, cell: CellScope) -> None:
        """Seed (lab only), start the CPU sampler, and run the baseline to its end.

        Raises:
            HarnessError: not a lab, or the baseline run did not end in success (the cell is then
                inconclusive: no reference to judge against).
        """
        self.scope = cell
        lab, runner = cell.target.lab, cell.handle.lab_runner
        if lab is None or runner is None:
            raise HarnessError("heavy actions are seeded into the lab and measured on a lab runner")
        t0 = time.monotonic()
        self.seeded = seed_heavy(lab.client(), lab.forgejo.work / "data" / "repos", self.spec.repos, self.spec.shape,
                                 lab.dir / "heavy-seed.lock")
        self.seed_seconds = round(time.monotonic() - t0, 2)
        cell.notify(f"heavy actions {', '.join(self.spec.repos)} ready ({self.spec.shape.describe()}) in "
                    f"{self.seed_seconds:.1f}s")
        self.sampler = cpu_obs.CpuSampler(runner.pid, [runner.cache_pid]).start()
        cell.observing.callback(self.sampler.stop)
        workflow = cell.scenario.render_baseline(cell.label, self.slow_url())
        if workflow is not None:
            self._run_baseline(cell, workflow)

    def _run_baseline(self, cell: CellScope, workflow: str) -> None:
        assert self.sampler is not None
        run = run_once(cell.target, cell.label, workflow, f"{cell.scenario.name}-baseline-{cell.handle.key}",
                       self.sampler, budgets=cell.budgets, notify=cell.notify)
        cell.teardown.callback(_delete, cell.target, run.repo)
        self.baseline_log = run.log
        if run.status is not Status.SUCCESS:
            raise HarnessError(f"the baseline run {run.repo} (one cold job) ended {run.status}: the relative setup "
                               "budget has nothing to stand on")
        self.baseline = SetupFigure("baseline", run.figures[0].seconds, run.figures[0].cpu_pct, run.figures[0].window)
        if self.baseline.seconds is None:
            raise HarnessError(f"the baseline run {run.repo} has no 'Set up job' window in its job view")
        cell.notify(f"baseline (one cold job): 'Set up job' {self.baseline.seconds:.1f}s")

    def after(self, done: Done) -> Findings:
        """Each job's setup seconds and CPU, and the relative budget's violations."""
        samples = self.sampler.stop() if self.sampler else []
        job_ids = self.scope.job_ids if self.scope else ()
        t_first = self.baseline.window[1] if self.baseline and self.baseline.window else 0.0
        figures = setup_figures(list(done.views), [s for s in samples if s.t > t_first], job_ids)
        violations: list[Violation] = []
        observed: dict[str, Any] = {
            "shape": self.spec.shape.describe(), "repos": list(self.spec.repos),
            "commit": self.seeded[0].commit if self.seeded else None, "seed_seconds": self.seed_seconds,
            "jobs": [f.to_json() for f in figures],
        }
        if self.baseline is not None and self.baseline.seconds and self.spec.factor:
            observed.update(baseline=self.baseline.to_json(), factor=self.spec.factor,
                            budget=round(self.spec.factor * self.baseline.seconds, 2))
            violations = relative_violations(figures, self.baseline.seconds, self.spec.factor)
        evidence = ()
        if self.baseline_log:
            log = self.baseline_log

            def write(bundle: Any) -> None:
                bundle.text("heavy-baseline.log", log + "\n")

            evidence = (write,)
        return Findings(tuple(violations), {"heavy_actions": observed}, evidence=evidence)


@dataclass(frozen=True)
class OneRun:
    """One workflow pushed and watched to its end outside a cell (a baseline, a bench measurement)."""

    repo: str  # owner/name
    status: Status  # job 0's
    figures: tuple[SetupFigure, ...]  # per job
    log: str  # every job's log lines, with their timestamps


def run_once(target: Target, label: str, workflow: str, name: str, sampler: cpu_obs.CpuSampler, *,
             budgets: Budgets = BUDGETS, notify: Notify = lambda s: None) -> OneRun:
    """Push ``workflow`` (rendered) into a new repository, watch the run to its end, and return each job's
    "Set up job" seconds and CPU (from ``sampler``'s samples). The repository is left for the caller to delete.

    Raises:
        HarnessError: a push or a watch failed (PollTimeout: a named budget ran out).
    """
    repo = re.sub(r"[^A-Za-z0-9-]", "-", f"{name}-{uuid.uuid4().hex[:8]}")
    target.client.create_repo(repo, owner=target.org)
    target.client.commit_files(target.owner, repo, [RepoFile(".forgejo/workflows/run.yml", workflow.encode())],
                               f"regress: {name}")
    ref = JobRef(target.owner, repo, 1)
    watch = RunWatch(target.web, lambda: target.client.tasks(ref.owner, ref.repo), ref, label, budgets, notify,
                     interval=1.0)
    watch.appear()
    watch.picked()
    view = watch.done()
    views = watch.final_views()
    names = tuple(j.name for j in view.jobs)
    figures = tuple(setup_figures(views, list(sampler.samples), names))
    log = "\n".join(f"{line.timestamp:.3f} {line.message}" for v in views for line in v.log_lines())
    return OneRun(f"{target.owner}/{repo}", view.job_status(0), figures, log)


def _delete(target: Target, repo: str) -> None:
    with contextlib.suppress(HarnessError):
        target.client.delete_repo(*repo.split("/", 1))
