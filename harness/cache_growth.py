"""Cache growth per repository: the runner's stores after each repository a workflow ran from.

The cache server scopes its entries per repository, so an action that saves to it (setup-qemu's
``cache-image``) misses in every new repository and saves another copy: the store grows by one copy
per repository, not per job. A cell run with ``--warm-up`` runs its workflow from K repositories on one
runner; every lab cell records its runner's stores after its job. This module reads those records
(plain dicts, as cell records hold them) into figures: per repository, per runner over the session.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.observe.cache import STORES
from harness.verdict import Violation

NOISE_MB = 1.0  # a repository "added" to a store only above this (logs, databases, lock files move by kilobytes)
WARM_UP_KEY = "warm_up"  # observations[WARM_UP_KEY]: what --warm-up ran before the measured run


@dataclass(frozen=True)
class RepoStores:
    """One job (one repository) on one runner: its stores after the job and their growth over it (MB)."""

    scenario: str
    runner: str  # the runner key (version[-config])
    runner_name: str  # the runner that ran it (a private runner has its own stores)
    repo: str
    at: float  # when the stores were measured (orders a runner's repositories)
    after_mb: Mapping[str, float]
    growth_mb: Mapping[str, float]

    @classmethod
    def from_observations(cls, scenario: str, runner: str, repo: str, obs: Mapping[str, Any]) -> RepoStores | None:
        """From a run's observations (None when its stores were not measured: not a lab runner, or cut short)."""
        after, growth = obs.get("stores_after"), obs.get("store_growth_mb")
        if not isinstance(after, Mapping) or not isinstance(growth, Mapping):
            return None
        name = obs.get("private_runner") or (obs.get("runner_from_log") or {}).get("name") or runner
        return cls(scenario, runner, str(name), repo, float(obs.get("stores_measured_at") or 0.0),
                   {k: float((after.get(k) or {}).get("mb", 0.0)) for k in STORES if k in after},
                   {k: float(growth[k]) for k in STORES if k in growth})


def series_name(record: Mapping[str, Any], runner_name: str, sessions: int) -> str:
    """The series a record's stores belong to: its runner, and its session when records of several sessions are
    joined (a merge): two hosts' ``regress-12.1.2`` are two runners, never one series."""
    return f"{runner_name} (session {record.get('session')})" if sessions > 1 else runner_name


def sessions_of(records: Iterable[Mapping[str, Any]]) -> int:
    """How many sessions the records come from."""
    return len({r.get("session") for r in records})


def repo_stores(record: Mapping[str, Any], sessions: int = 1) -> list[RepoStores]:
    """Every repository of one cell record: its warm-up runs (in order), then the measured run; the runner's name
    carries the session when ``sessions`` > 1 (:func:`series_name`)."""
    found = _repo_stores(record)
    if sessions <= 1:
        return found
    return [dataclasses.replace(p, runner_name=series_name(record, p.runner_name, sessions)) for p in found]


def _repo_stores(record: Mapping[str, Any]) -> list[RepoStores]:
    obs = record.get("observations") or {}
    scenario, runner = str(record.get("scenario")), str(record.get("runner"))
    warm_up = obs.get(WARM_UP_KEY) or {}
    found = []
    for run in warm_up.get("runs", []):
        point = RepoStores.from_observations(scenario, runner, str(run.get("repo") or ""), run.get("stores") or {})
        if point is not None:
            found.append(point)
    repo = record.get("repo") or warm_up.get("measured_repo") or ""
    own = RepoStores.from_observations(scenario, runner, str(repo), obs)
    return [*found, own] if own is not None else found


def per_repo_mb(points: Sequence[RepoStores]) -> dict[str, float]:
    """Mean growth per repository of each store over ``points``."""
    if not points:
        return {}
    return {k: round(sum(p.growth_mb.get(k, 0.0) for p in points) / len(points), 2) for k in STORES}


def growth_finding(points: Sequence[RepoStores], uses: Sequence[str]) -> Violation | None:
    """``cache-growth`` (report only) when every repository added to the cache server's store: "K repositories
    using X added K × N MB", with the other stores' figures named apart; None when the store did not grow with
    each repository (then the growth is per runner, not per repository)."""
    if len(points) < 2 or not all(p.growth_mb.get("cache_server", 0.0) >= NOISE_MB for p in points):
        return None
    k, each = len(points), per_repo_mb(points)
    total = sum(p.growth_mb["cache_server"] for p in points)
    others = ", ".join(f"{name} +{each[name]:.1f} MB" for name in STORES[1:])
    actions = ", ".join(u.split("@")[0] for u in uses) or points[0].scenario
    return Violation("cache-growth", f"{k} repositories using {actions} added {k} × {each['cache_server']:.1f} MB "
                     f"({total:.1f} MB) to the cache store (cache_server; entries are scoped per repository, so "
                     f"every new repository saves its own copy); per repository also {others}", "report")


@dataclass(frozen=True)
class RunnerCache:
    """One runner's stores over the session: after each repository, in order, and the growth per repository."""

    runner: str
    runner_name: str
    repos: tuple[str, ...]
    scenarios: tuple[str, ...]
    cache_store_after_repo_mb: tuple[float, ...]  # the cache server's store
    after_repo_mb: Mapping[str, tuple[float, ...]]  # every store
    per_repo_mb: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        """As report.json holds it."""
        return {"runner": self.runner, "runner_name": self.runner_name, "repos": list(self.repos),
                "scenarios": list(self.scenarios), "cache_store_after_repo_mb": list(self.cache_store_after_repo_mb),
                "after_repo_mb": {k: list(v) for k, v in self.after_repo_mb.items()},
                "per_repo_mb": dict(self.per_repo_mb)}

    @property
    def holds_anything(self) -> bool:
        """Whether the cache store held anything or any store grew per repository (above the noise): the
        runner's HOME and clones always hold a little, which is no finding."""
        return any(mb >= NOISE_MB for mb in self.cache_store_after_repo_mb) or \
            any(abs(mb) >= NOISE_MB for mb in self.per_repo_mb.values())

    def line(self) -> str:
        """One line for the report: the cache store after each repository and the growth per repository."""
        sizes = ", ".join(f"{mb:.1f}" for mb in self.cache_store_after_repo_mb)
        each = ", ".join(f"{k} {v:+.1f}" for k, v in self.per_repo_mb.items())
        who = self.runner if self.runner_name in ("", self.runner) else f"{self.runner} ({self.runner_name})"
        repos = "the repository" if len(self.repos) == 1 else f"each of {len(self.repos)} repositories"
        return (f"- {who}: cache store after {repos}: {sizes} MB; "
                f"per repository (MB): {each}")


def runner_series(records: Iterable[Mapping[str, Any]]) -> dict[str, RunnerCache]:
    """Per runner (by name: a private runner has its own stores), every repository of the session in order."""
    by_runner: dict[tuple[str, str], list[RepoStores]] = defaultdict(list)
    records = list(records)
    sessions = sessions_of(records)
    for record in records:
        for point in repo_stores(record, sessions):
            by_runner[(point.runner, point.runner_name)].append(point)
    series = {}
    for (runner, name), points in sorted(by_runner.items()):
        points.sort(key=lambda p: p.at)
        after = {k: tuple(round(p.after_mb.get(k, 0.0), 2) for p in points) for k in STORES}
        series[name] = RunnerCache(runner, name, tuple(p.repo for p in points), tuple(p.scenario for p in points),
                                   after["cache_server"], after, per_repo_mb(points))
    return series
