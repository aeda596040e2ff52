"""What report.html shows of one cell, parsed once from its record (a plain dict, as report.json holds it).

Every later step (the charts, the template) reads these frozen values, never the record: a record from an older
session that lacks a key shows as an empty section, not as an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import cache_growth

PHASES = ("setup", "steps", "complete")  # observations.cpu, in the job's order


def _num(value: Any) -> float | None:
    """A number from a record (None for a missing or non-numeric value; bool is no number)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


@dataclass(frozen=True)
class Step:
    """One step of the job as Forgejo showed it (post steps: their outcome, no duration)."""

    name: str
    status: str
    duration: float | None = None


@dataclass(frozen=True)
class Rule:
    """One violation of the verdict."""

    rule: str
    severity: str
    message: str


@dataclass(frozen=True)
class Signature:
    """A log signature found in the runner's log."""

    name: str
    meaning: str
    line: str


@dataclass(frozen=True)
class Setup:
    """Set up job's seconds: cold and warm where known, the measured run's, and its budget."""

    measured: float | None
    cold: float | None
    warm: float | None
    budget: float | None
    measured_cold: bool | None  # the measured run's cache state (None: unknown)


@dataclass(frozen=True)
class CpuPhase:
    """The runner's CPU over one phase of the job."""

    phase: str
    runner_pct: float | None
    tree_pct: float | None
    samples: int


@dataclass(frozen=True)
class RepoGrowth:
    """One repository the cell's workflow ran from: each store's growth over its job (MB)."""

    repo: str
    growth_mb: Mapping[str, float]


@dataclass(frozen=True)
class Event:
    """One moment of a fault cell's timeline, in seconds from the fault."""

    at: float
    what: str
    detail: str = ""


@dataclass(frozen=True)
class Fault:
    """A fault cell: what was injected when, what the runner did, the class it got."""

    fault: str
    trigger: str
    fired: bool
    got: str
    expected: str
    behaviour: str
    events: tuple[Event, ...]
    traffic: tuple[tuple[str, str, int], ...]  # (rpc, what the proxy did, requests)


@dataclass(frozen=True)
class CellView:
    """One cell record, as the page shows it."""

    anchor: str
    scenario: str
    runner: str
    condition: str
    version: str
    label: str
    outcome: str
    failure_class: str
    reason: str
    known_bug: str
    class_why: str
    class_lines: tuple[str, ...]
    job: str
    rules: tuple[Rule, ...]
    steps: tuple[Step, ...]
    post_steps: tuple[Step, ...]
    setup: Setup
    cpu: tuple[CpuPhase, ...]
    repos: tuple[RepoGrowth, ...]
    fault: Fault | None
    signatures: tuple[Signature, ...]
    timings: tuple[tuple[str, float], ...]
    bundle_href: str
    repro_href: str

    @property
    def title(self) -> str:
        """``scenario × runner`` (``under condition`` for a condition cell)."""
        return f"{self.scenario} × {self.runner}" + (f" under {self.condition}" if self.condition else "")


def _href(path: str, root: Path | None) -> str:
    """A link to a bundle file: relative to the report's directory when under it, else ``file://`` absolute."""
    if not path:
        return ""
    target = Path(path)
    if root is not None and target.is_absolute():
        try:
            return Path(os.path.relpath(target, root)).as_posix()
        except ValueError:
            pass
    return target.as_uri() if target.is_absolute() else target.as_posix()


def _setup(verdict: Mapping[str, Any], obs: Mapping[str, Any]) -> Setup:
    measured, cold_flag = _num(verdict.get("setup_seconds")), verdict.get("cold")
    warm_up = _map(obs.get(cache_growth.WARM_UP_KEY))
    cold, warm = _num(warm_up.get("setup_seconds_cold")), _num(warm_up.get("setup_seconds_warm"))
    if not warm_up and isinstance(cold_flag, bool):
        cold, warm = (measured, None) if cold_flag else (None, measured)
    return Setup(measured, cold, warm, _num(verdict.get("setup_budget")),
                 cold_flag if isinstance(cold_flag, bool) else None)


def _steps(items: Sequence[Any], status_key: str) -> tuple[Step, ...]:
    return tuple(Step(str(s.get("name") or "?"), str(s.get(status_key) or "-"), _num(s.get("duration")))
                 for s in items if isinstance(s, Mapping))


def _fault(fault: Mapping[str, Any], outcome: str) -> Fault:
    behaviour = _map(fault.get("behaviour"))
    fired_at, released_at = _num(fault.get("fired_at")), _num(fault.get("released_at"))
    events = []
    if fired_at is not None:
        events.append(Event(0.0, "fault", f"{fault.get('fault') or '?'} at {fault.get('trigger') or '?'}"))
        reaction = _num(behaviour.get("first_reaction_s"))
        if reaction is not None:
            events.append(Event(reaction, "first reaction", str(behaviour.get("first_reaction") or "")))
        verdict = _num(fault.get("time_to_verdict"))
        if verdict is not None:
            events.append(Event(verdict, "verdict", outcome))
        if released_at is not None:
            released = round(released_at - fired_at, 1)
            events.append(Event(released, "released", "the proxy forwards again"))
            after = _num(fault.get("aftermath_seconds"))
            if after is not None:
                events.append(Event(round(released + after, 1), "aftermath ends", str(fault.get("aftermath_end") or "")))
    requests = _map(_map(fault.get("traffic")).get("requests"))
    traffic = tuple((str(rpc), str(what), int(n)) for rpc, actions in requests.items()
                    for what, n in _map(actions).items() if isinstance(n, int))
    return Fault(str(fault.get("fault") or "?"), str(fault.get("trigger") or "?"), bool(fault.get("fired")),
                 str(fault.get("class") or outcome), str(fault.get("expected_class") or ""),
                 str(behaviour.get("sentence") or ("no fault injected" if not fault.get("fired") else "")),
                 tuple(sorted(events, key=lambda e: e.at)), traffic)


def anchor(record: Mapping[str, Any], index: int) -> str:
    """The cell's id in the page: ``cell-<index>-<scenario>-<runner>[-<condition>]`` in safe characters."""
    parts = [str(record.get(k) or "") for k in ("scenario", "runner", "condition")]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(["cell", str(index), *[p for p in parts if p]]))


def cell_view(record: Mapping[str, Any], index: int, root: Path | None = None) -> CellView:
    """The page's view of one record; ``root`` is the report's directory (bundle links become relative to it)."""
    verdict, obs = _map(record.get("verdict")), _map(record.get("observations"))
    evidence = _map(record.get("class_evidence"))
    outcome = str(record.get("outcome") or ("pass" if record.get("passed") else "?"))
    reason = str(record.get("reason") or record.get("error") or record.get("selfcheck_problem") or "")
    bundle = str(record.get("bundle") or "")
    cpu = _map(obs.get("cpu"))
    fault = obs.get("fault")
    return CellView(
        anchor=anchor(record, index), scenario=str(record.get("scenario") or "?"), runner=str(record.get("runner") or "?"),
        condition=str(record.get("condition") or ""), version=str(record.get("version") or ""),
        label=str(record.get("label") or ""), outcome=outcome, failure_class=str(record.get("class") or ""),
        reason=reason, known_bug=str(record.get("known_bug") or ""), class_why=str(evidence.get("why") or ""),
        class_lines=tuple(str(line) for line in _list(evidence.get("lines"))),
        job=str(verdict.get("job") or "-"),
        rules=tuple(Rule(str(v.get("rule") or "?"), str(v.get("severity") or "?"), str(v.get("message") or ""))
                    for v in _list(verdict.get("violations")) if isinstance(v, Mapping)),
        steps=_steps(_list(verdict.get("steps")), "status"), post_steps=_steps(_list(verdict.get("post_steps")), "outcome"),
        setup=_setup(verdict, obs),
        cpu=tuple(CpuPhase(p, _num(_map(cpu.get(p)).get("runner_pct")), _num(_map(cpu.get(p)).get("tree_pct")),
                           int(_num(_map(cpu.get(p)).get("samples")) or 0)) for p in PHASES if p in cpu),
        repos=tuple(RepoGrowth(p.repo, dict(p.growth_mb)) for p in cache_growth.repo_stores(record)),
        fault=_fault(fault, outcome) if isinstance(fault, Mapping) else None,
        signatures=tuple(Signature(str(s.get("name") or "?"), str(s.get("meaning") or ""), str(s.get("line") or ""))
                         for s in _list(obs.get("signatures")) if isinstance(s, Mapping)),
        timings=tuple((str(k), v) for k, v in _map(record.get("timings")).items() if _num(v) is not None),
        bundle_href=_href(bundle, root), repro_href=_href(str(Path(bundle) / "repro.md"), root) if bundle else "",
    )
