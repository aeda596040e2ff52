"""The version matrix (scenario × runner) and the upgrade gate (baseline vs candidate)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGRESSION = "regression"
KNOWN_FAILURE = "known failure"
FIXED = "fixed"
FLAKY = "flaky"
SAME = "same"


@dataclass(frozen=True)
class Cell:
    """One scenario × runner result as report.json stores it (one entry per repeat)."""

    scenario: str
    runner: str
    passed: bool
    job: str | None
    violations: tuple[str, ...]
    setup_seconds: float | None
    cache_growth_mb: float | None
    cpu_setup_pct: float | None
    leftovers: int
    error: str | None
    shared: bool = False  # other jobs ran on the same runner meanwhile: CPU and cache figures include theirs

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        """Parse one ``result.json`` / cell record."""
        verdict = data.get("verdict") or {}
        obs = data.get("observations") or {}
        cpu = (obs.get("cpu") or {}).get("setup") or {}
        return cls(
            scenario=str(data["scenario"]), runner=str(data["runner"]), passed=bool(data.get("passed")),
            job=verdict.get("job"), violations=tuple(v["rule"] for v in verdict.get("violations", [])),
            setup_seconds=verdict.get("setup_seconds"),
            cache_growth_mb=(obs.get("store_growth_mb") or {}).get("cache_server"),
            cpu_setup_pct=cpu.get("runner_pct"), leftovers=len(obs.get("leftovers") or []),
            error=(data.get("error") or None),
            shared=bool(obs.get("shared_runner_with")),
        )


def load_cells(directory: Path) -> list[Cell]:
    """Every cell record under ``directory`` (``*.json``)."""
    cells = []
    for file in sorted(directory.glob("*.json")):
        try:
            cells.append(Cell.from_json(json.loads(file.read_text())))
        except (ValueError, KeyError):
            continue
    return cells


def load_baseline(path: Path) -> list[Cell]:
    """Cells of a golden baseline written by ``--save-baseline``.

    Raises:
        ValueError: not such a file (corrupt, or another tool's JSON).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != "forgejo-runner-regress/baseline/1":
        raise ValueError(f"{path} is not a forgejo-runner-regress baseline (no schema forgejo-runner-regress/baseline/1)")
    try:
        return [Cell.from_json(c) for c in data["cells"]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} has a malformed cell: {exc}") from None


def group(cells: Iterable[Cell]) -> dict[str, dict[str, list[Cell]]]:
    """scenario → runner → cells (repeats)."""
    table: dict[str, dict[str, list[Cell]]] = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        table[cell.scenario][cell.runner].append(cell)
    return table


def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def _summary(cells: Sequence[Cell]) -> str:
    passed = sum(c.passed for c in cells)
    rate = "pass" if passed == len(cells) else ("FAIL" if passed == 0 else f"flaky {passed}/{len(cells)}")
    if len(cells) > 1 and passed == len(cells):
        rate = f"pass {passed}/{len(cells)}"
    last = cells[-1]
    rules = ",".join(dict.fromkeys(r for c in cells for r in c.violations)) or "-"
    err = " error" if any(c.error for c in cells) else ""
    shared = " (shared runner)" if last.shared else ""
    return (f"{rate}{err} job={last.job or '-'} setup={_fmt(last.setup_seconds, 's')} "
            f"cpu={_fmt(last.cpu_setup_pct, '%')} cache+={_fmt(last.cache_growth_mb, 'MB')}{shared} "
            f"left={last.leftovers} [{rules}]")


def markdown_table(cells: Iterable[Cell]) -> str:
    """The side-by-side table; rows whose cells differ between versions are marked ``◆``."""
    table = group(cells)
    runners = sorted({r for row in table.values() for r in row})
    head = "| scenario | " + " | ".join(runners) + " |\n|---|" + "---|" * len(runners) + "\n"
    lines = []
    for scenario in sorted(table):
        row = table[scenario]
        outcomes = {tuple(c.passed for c in row[r]) for r in runners if r in row}
        mark = " ◆" if len(outcomes) > 1 else ""
        cols = [_summary(row[r]) if r in row else "n/a" for r in runners]
        lines.append(f"| {scenario}{mark} | " + " | ".join(cols) + " |")
    return head + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class GateFinding:
    """One scenario's gate class and why."""

    scenario: str
    kind: str
    why: str


def gate(cells: Iterable[Cell], baseline: str, candidate: str, gate_on: Sequence[str] = ()) -> list[GateFinding]:
    """Classify each scenario run on both versions.

    regression: baseline passed every time, candidate failed at least once (flaky included);
    known failure: failed on both; fixed: failed on baseline only; deltas named in ``gate_on``
    (setup, cache, cpu, leftovers) turn a worse observation into a regression.
    """
    findings = []
    for scenario, row in sorted(group(cells).items()):
        base, cand = row.get(baseline), row.get(candidate)
        if not base or not cand:
            findings.append(GateFinding(scenario, "n/a", f"not run on both {baseline} and {candidate}"))
            continue
        b_all = all(c.passed for c in base)
        c_all = all(c.passed for c in cand)
        c_any = any(c.passed for c in cand)
        if b_all and not c_all:
            kind = FLAKY if c_any else REGRESSION
            rules = ",".join(dict.fromkeys(r for c in cand for r in c.violations)) or (cand[-1].error or "failed")
            findings.append(GateFinding(scenario, REGRESSION, f"{baseline} passed, {candidate} "
                                        f"{'is flaky' if kind == FLAKY else 'failed'}: {rules[:200]}"))
            continue
        if not b_all and not c_all:
            findings.append(GateFinding(scenario, KNOWN_FAILURE, "fails on both versions"))
            continue
        if not b_all and c_all:
            findings.append(GateFinding(scenario, FIXED, f"fails on {baseline}, passes on {candidate}"))
            continue
        worse = _deltas(base[-1], cand[-1], gate_on)
        if worse:
            findings.append(GateFinding(scenario, REGRESSION, "; ".join(worse)))
        else:
            findings.append(GateFinding(scenario, SAME, "passes on both"))
    return findings


def _deltas(base: Cell, cand: Cell, gate_on: Sequence[str]) -> list[str]:
    """What the candidate does worse; CPU and cache growth only where neither cell shared its runner."""
    worse = []
    alone = not (base.shared or cand.shared)
    if "setup" in gate_on and base.setup_seconds is not None and cand.setup_seconds is not None \
            and cand.setup_seconds > base.setup_seconds * 1.5 + 2:
        worse.append(f"setup {cand.setup_seconds:.1f}s vs {base.setup_seconds:.1f}s")
    if "cache" in gate_on and alone and base.cache_growth_mb is not None and cand.cache_growth_mb is not None \
            and cand.cache_growth_mb > base.cache_growth_mb + 10:
        worse.append(f"cache growth {cand.cache_growth_mb:.1f}MB vs {base.cache_growth_mb:.1f}MB")
    if "cpu" in gate_on and alone and base.cpu_setup_pct is not None and cand.cpu_setup_pct is not None \
            and cand.cpu_setup_pct > base.cpu_setup_pct + 20:
        worse.append(f"setup CPU {cand.cpu_setup_pct:.0f}% vs {base.cpu_setup_pct:.0f}%")
    if "leftovers" in gate_on and cand.leftovers > base.leftovers:
        worse.append(f"{cand.leftovers} docker leftovers vs {base.leftovers}")
    return worse


def gate_failed(findings: Iterable[GateFinding]) -> bool:
    """True exactly when some scenario regressed."""
    return any(f.kind == REGRESSION for f in findings)
