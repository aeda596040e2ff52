"""``--warm-up``: cold and warm in one session, and the cache growth per repository.

Every session boots a new lab, so without this a cell is as cold as the one before it; an admin's
runners are warm. With ``--warm-up`` a cell runs its workflow from K repositories (``--warm-up-repos``,
default 3) one after another on the same runner handle it was given (the lab's runner, a lane's or an
xdist worker's private runner): the first run gives the cold figures, the K-th is the measured run
(warm). Each run is a whole :func:`harness.cell.run_cell` (its own repository, verdict and evidence);
the warm-up runs' bundles go under the cell's bundle dir (``warm-up/repo-<i>``).

A warm-up run that does not pass makes the cell inconclusive with the reason (a measured run that fails
stays a failure: its own evidence says so). A cell that disturbs its runner (runner control, the slow
action server) is refused: its warm-up runs would be disturbed the same way, and its private runner is
started inside the cell, so no warm-up could share it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cache_growth import WARM_UP_KEY, RepoStores, growth_finding, per_repo_mb
from harness.cell import CellResult, NotRunnable
from harness.evidence import Bundle
from harness.outcome import Outcome
from harness.scenarios import Scenario
from harness.target import RunnerHandle

DEFAULT_REPOS = 3
WARM_UP_DIR = "warm-up"
WARM_UP_FILE = "warm-up.json"  # in the measured run's bundle: K (``repos``) and every run's figures; rerun reads it
_STORE_KEYS = ("stores_after", "store_growth_mb", "stores_measured_at", "runner_from_log", "private_runner")

RunOne = Callable[[RunnerHandle, Path, str], CellResult]  # run_cell with the session's options: handle, bundle, evidence


def refusal(scenario: Scenario) -> str | None:
    """Why ``--warm-up`` does not apply to a scenario (None when it does)."""
    expect = scenario.expect
    what = ("runner control (a signal to its runner)" if expect.control is not None else
            "the slow action server" if expect.slow_actions is not None else None)
    if what is None:
        return None
    return (f"--warm-up does not apply to {scenario.name}: it disturbs its runner ({what}) on a private runner "
            "started inside the cell, so warm-up runs could neither share that runner nor run undisturbed; "
            "run it without --warm-up")


def _setup_cpu(result: CellResult) -> float | None:
    value = ((result.observations.get("cpu") or {}).get("setup") or {}).get("runner_pct")
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class WarmUpRun:
    """One warm-up run as the cell's record keeps it."""

    index: int  # 1-based: run 1 is the cold one
    repo: str
    outcome: Outcome
    reason: str
    cold: bool | None  # the runner's action cache state before the run (None: unknown)
    setup_seconds: float | None
    cpu_setup_pct: float | None
    shared: bool  # other jobs ran on the runner meanwhile: its CPU and store figures include theirs
    stores: Mapping[str, Any]  # the run's store observations (sizes after, growth, when)
    bundle: str | None

    @classmethod
    def of(cls, index: int, result: CellResult) -> WarmUpRun:
        """From a finished run."""
        verdict = result.verdict
        return cls(index, result.repo, result.outcome, result.reason, verdict.cold if verdict else None,
                   verdict.setup_seconds if verdict else None, _setup_cpu(result),
                   bool(result.observations.get("shared_runner_with")),
                   {k: result.observations[k] for k in _STORE_KEYS if k in result.observations},
                   str(result.bundle) if result.bundle else None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**dataclasses.asdict(self), "outcome": str(self.outcome), "stores": dict(self.stores)}


def run(scenario: Scenario, handle: RunnerHandle, bundle_dir: Path, *, warm_up: bool, repos: int, evidence: str,
        run_one: RunOne) -> CellResult:
    """The cell: with ``warm_up`` its warm-up runs first (:func:`run_warm`), else its one run.

    Raises:
        NotRunnable: see :func:`run_warm`.
    """
    if warm_up:
        return run_warm(scenario, handle, bundle_dir, repos=repos, evidence=evidence, run_one=run_one)
    return run_one(handle, bundle_dir, evidence)


def run_warm(scenario: Scenario, handle: RunnerHandle, bundle_dir: Path, *, repos: int, evidence: str,
             run_one: RunOne) -> CellResult:
    """K-1 warm-up runs, then the measured run, all on ``handle``; the measured result with the figures added.

    Raises:
        NotRunnable: the scenario disturbs its runner (see :func:`refusal`), or the cell cannot run here.
    """
    why = refusal(scenario)
    if why is not None:
        raise NotRunnable(why)
    warm_evidence = "never" if evidence == "never" else "always"  # kept under the cell: they hold the cold figures
    warm_ups = [run_one(handle, bundle_dir / WARM_UP_DIR / f"repo-{i}", warm_evidence) for i in range(1, repos)]
    result = conclude(scenario, run_one(handle, bundle_dir, evidence), warm_ups)
    if result.bundle is not None:
        record_in_bundle(result)
    return result


def record_in_bundle(result: CellResult) -> None:
    """The measured run's bundle was written before its warm-up figures were known: ``warm-up.json`` holds them
    (and the cell's final outcome), ``result.json`` is the final result."""
    assert result.bundle is not None
    try:
        bundle = Bundle(result.bundle)
        bundle.json(WARM_UP_FILE, {"outcome": str(result.outcome), "reason": result.reason,
                                     **result.observations[WARM_UP_KEY]})
        bundle.text("result.json", json.dumps(result.to_json(), indent=2, default=str))
    except OSError as exc:
        result.error = (result.error or "") + f"\n(warm-up figures could not be added to {result.bundle}: {exc})"


def conclude(scenario: Scenario, result: CellResult, warm_ups: Sequence[CellResult]) -> CellResult:
    """Add the cold and warm figures, the per-repository growth and its finding to the measured ``result``; a
    warm-up run that did not pass makes a cell that did not fail on its own inconclusive."""
    runs = [WarmUpRun.of(i, r) for i, r in enumerate(warm_ups, start=1)]
    measured = WarmUpRun.of(len(runs) + 1, result)
    first = runs[0] if runs else measured
    notes = []
    if first.cold is not True:
        notes.append(f"run 1 found the workflow's actions already cached on runner {result.runner_key} "
                     f"(cache state {first.cold}): no cold figure")
    if measured.cold is not False:
        notes.append(f"the measured run did not find every action cached (cache state {measured.cold}): "
                     "no warm figure")
    points = [p for p in (RepoStores.from_observations(result.scenario, result.runner_key, run.repo, run.stores)
                          for run in (*runs, measured)) if p is not None]
    shared = [run.index for run in (*runs, measured) if run.shared]
    finding = None
    if shared:
        notes.append(f"runs {shared} shared their runner with other jobs: no per-repository cache finding")
    else:
        finding = growth_finding(points, scenario.uses())
    result.observations[WARM_UP_KEY] = {
        "repos": len(runs) + 1,
        "runs": [run.to_json() for run in runs],
        "measured_repo": result.repo,
        "setup_seconds_cold": first.setup_seconds if first.cold is True else None,
        "setup_seconds_warm": measured.setup_seconds if measured.cold is False else None,
        "cpu_setup_pct_cold": first.cpu_setup_pct if first.cold is True else None,
        "cpu_setup_pct_warm": measured.cpu_setup_pct if measured.cold is False else None,
        "per_repo_mb": per_repo_mb(points) if len(points) == len(runs) + 1 else {},
        "notes": notes,
    }
    if finding is not None and result.verdict is not None:
        result.verdict = dataclasses.replace(result.verdict, violations=(*result.verdict.violations, finding))
    bad = [run for run in runs if run.outcome is not Outcome.PASS]
    if bad and result.outcome is not Outcome.FAIL:
        said = "; ".join(f"warm-up run {run.index} of {len(runs) + 1} ({run.repo or 'no repository'}) was "
                         f"{run.outcome}: {run.reason or 'no reason recorded'}"
                         + (f" (evidence {run.bundle})" if run.bundle else "") for run in bad)
        result.error = f"{said}; the measured run was {result.outcome}, so the warm figures are not evidence" + (
            f"\n{result.error}" if result.error else "")
    return result
