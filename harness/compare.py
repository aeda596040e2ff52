"""The version matrix (scenario × runner) and the upgrade gate (baseline vs candidate).

Pure functions on cell records: the table compares outcomes (pass / fail / inconclusive /
skipped), and the gate calls a scenario a regression only on evidence: the baseline passed and
the candidate failed. Where either side has no evidence (inconclusive, skipped, missing) the
scenario is inconclusive, and so is the gate.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.outcome import Outcome

REGRESSION = "regression"
INCONCLUSIVE = "inconclusive"
KNOWN_FAILURE = "known failure"
FIXED = "fixed"
FLAKY = "flaky"
SAME = "same"

GATE_PASSED = "passed"
GATE_FAILED = "FAILED"
GATE_INCONCLUSIVE = "INCONCLUSIVE"

BASELINE_SCHEMA = "forgejo-runner-regress/baseline/1"
_WORDS = {Outcome.PASS: "pass", Outcome.FAIL: "FAIL", Outcome.INCONCLUSIVE: "INCONCLUSIVE", Outcome.SKIPPED: "skipped"}


@dataclass(frozen=True)
class Cell:
    """One scenario × runner result as report.json stores it (one entry per repeat)."""

    scenario: str
    runner: str
    outcome: Outcome
    job: str | None
    violations: tuple[str, ...]
    setup_seconds: float | None
    cache_growth_mb: float | None
    cpu_setup_pct: float | None
    leftovers: int
    error: str | None
    reason: str = ""
    shared: bool = False  # other jobs ran on the same runner meanwhile: CPU and cache figures include theirs
    failure_class: str | None = None  # harness.classify: the mechanism of a non-pass cell (report.json ``class``)
    setup_seconds_cold: float | None = None  # the cell's figures by cache state (both with --warm-up)
    setup_seconds_warm: float | None = None
    cpu_setup_pct_cold: float | None = None
    cpu_setup_pct_warm: float | None = None
    cache_per_repo_mb: float | None = None  # --warm-up: the cache server's growth per repository
    repos: int = 1  # --warm-up: the repositories the cell's workflow ran from
    late: str = ""  # report-late: ``24s in 'Post x'`` (the reports stood still this long, then resumed)
    condition: str = ""  # --condition NAME the cell ran under ("" for none); never part of the runner key
    existing: bool = False  # observed as an admin's runner process (--runner-process)

    @property
    def row(self) -> str:
        """The cell's row: its scenario, ``… under <condition>`` for a condition cell."""
        return f"{self.scenario} under {self.condition}" if self.condition else self.scenario

    @property
    def passed(self) -> bool:
        """True for the outcome ``pass``."""
        return self.outcome is Outcome.PASS

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        """Parse one ``result.json`` / cell record (records without ``outcome`` fall back on ``passed``).

        Raises:
            KeyError: no scenario or runner.
            ValueError: an outcome that is none of the four words.
        """
        verdict = data.get("verdict") or {}
        obs = data.get("observations") or {}
        cpu = (obs.get("cpu") or {}).get("setup") or {}
        error = data.get("error") or None
        outcome = Outcome.parse(data.get("outcome"), passed=data.get("passed"))
        reason = str(data.get("reason") or "")
        if not reason and outcome is not Outcome.PASS:
            reason = str(error or data.get("selfcheck_problem") or "").split("\n", 1)[0]
        return cls(
            scenario=str(data["scenario"]), runner=str(data["runner"]), outcome=outcome,
            job=verdict.get("job"), violations=tuple(v["rule"] for v in verdict.get("violations", [])),
            setup_seconds=verdict.get("setup_seconds"),
            cache_growth_mb=(obs.get("store_growth_mb") or {}).get("cache_server"),
            cpu_setup_pct=cpu.get("runner_pct"), leftovers=len(obs.get("leftovers") or []),
            error=error, reason=reason, shared=bool(obs.get("shared_runner_with")),
            failure_class=data.get("class") or None, late=_late(obs), condition=str(data.get("condition") or ""),
            existing=bool(obs.get("existing_runner")),
            **_by_cache_state(verdict, obs),
        )


def _late(obs: Mapping[str, Any]) -> str:
    """``24s in 'Post x'`` from a record's ``report_late`` observation ("" when its reports were never late)."""
    late = obs.get("report_late")
    if not isinstance(late, Mapping):
        return ""
    seconds = late.get("seconds")
    how_long = f"{seconds:g}s" if isinstance(seconds, (int, float)) else f">{late.get('budget') or '?'}s"
    return f"{how_long} in {str(late.get('step') or '?')!r}"


def _by_cache_state(verdict: Mapping[str, Any], obs: Mapping[str, Any]) -> dict[str, Any]:
    """Setup and CPU figures named cold or warm: both from ``--warm-up``, else the one run's by its cache state."""
    warm_up = obs.get("warm_up")
    if isinstance(warm_up, Mapping):
        return {k: warm_up.get(k) for k in ("setup_seconds_cold", "setup_seconds_warm", "cpu_setup_pct_cold",
                                            "cpu_setup_pct_warm")} | {
            "cache_per_repo_mb": (warm_up.get("per_repo_mb") or {}).get("cache_server"),
            "repos": int(warm_up.get("repos") or 1)}
    state = {True: "cold", False: "warm"}.get(verdict.get("cold"))  # type: ignore[arg-type]
    if state is None:
        return {}
    return {f"setup_seconds_{state}": verdict.get("setup_seconds"),
            f"cpu_setup_pct_{state}": ((obs.get("cpu") or {}).get("setup") or {}).get("runner_pct")}


def load_records(cells_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The cell records under ``cells_dir`` and a line per file that is not one."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    if not cells_dir.is_dir():
        return records, problems
    for file in sorted(cells_dir.glob("*.json")):
        try:
            data = json.loads(file.read_text())
            Cell.from_json(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append(f"{file}: not a cell record ({exc!r}); left out of the report and the gate")
            continue
        records.append(data)
    return records, problems


def load_cells(directory: Path) -> list[Cell]:
    """Every readable cell record under ``directory`` (``*.json``); unreadable files are left out."""
    return [Cell.from_json(record) for record in load_records(directory)[0]]


def load_baseline(path: Path) -> list[Cell]:
    """Cells of a golden baseline written by ``--save-baseline``.

    Raises:
        ValueError: not such a file (corrupt, or another tool's JSON).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
        raise ValueError(f"{path} is not a forgejo-runner-regress baseline (no schema {BASELINE_SCHEMA})")
    try:
        return [Cell.from_json(c) for c in data["cells"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} has a malformed cell: {exc!r}") from None


def group(cells: Iterable[Cell]) -> dict[str, dict[str, list[Cell]]]:
    """row (scenario, or ``scenario under condition``) → runner → cells (repeats)."""
    table: dict[str, dict[str, list[Cell]]] = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        table[cell.row][cell.runner].append(cell)
    return table


def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def rate(cells: Sequence[Cell]) -> str:
    """The outcome words of a cell's repeats: ``pass``, ``FAIL``, ``pass 3/3``, ``flaky 2/3``,
    ``INCONCLUSIVE``, ``skipped``, or a mix such as ``flaky 1/3, INCONCLUSIVE 1/3``."""
    counts = Counter(c.outcome for c in cells)
    n = len(cells)
    if len(counts) == 1:
        (only,) = counts
        return f"pass {n}/{n}" if only is Outcome.PASS and n > 1 else _WORDS[only]
    parts = []
    if counts[Outcome.PASS] and counts[Outcome.FAIL]:
        parts.append(f"flaky {counts[Outcome.PASS]}/{n}")
        counts = Counter({k: v for k, v in counts.items() if k not in (Outcome.PASS, Outcome.FAIL)})
    parts += [f"{_WORDS[o]} {counts[o]}/{n}" for o in Outcome if counts[o]]
    return ", ".join(parts)


def _reason(cells: Sequence[Cell]) -> str:
    """The reason of the last non-pass repeat, made safe for a markdown cell."""
    reasons = [c.reason or (c.error or "") for c in cells if not c.passed]
    text = (reasons[-1] if reasons else "").replace("|", "/").replace("\n", " ").strip()
    return f" — {text[:160]}" if text else ""


def classes(cells: Sequence[Cell]) -> str:
    """The failure classes of a cell's non-pass repeats: `` [finalization-lost]`` ("" when none has one)."""
    found = ",".join(dict.fromkeys(c.failure_class for c in cells
                                   if c.failure_class and not c.passed and c.outcome is not Outcome.INCONCLUSIVE))
    return f" [{found}]" if found else ""


def _temp(cold: float | None, warm: float | None, measured: float | None, unit: str) -> str:
    """Which figure is cold and which warm: ``(warm; cold 9.1s)`` with --warm-up, ``(cold)`` / ``(warm)`` else."""
    if cold is not None and warm is not None:
        return f"(warm; cold {_fmt(cold, unit)})"
    if measured is None:
        return ""
    return "(cold)" if cold == measured else "(warm)" if warm == measured else ""


def _summary(cells: Sequence[Cell]) -> str:
    last = cells[-1]
    rules = ",".join(dict.fromkeys(r for c in cells for r in c.violations)) or "-"
    shared = (" (existing runner)" if last.existing else "") + (" (shared runner)" if last.shared else "")
    setup = _temp(last.setup_seconds_cold, last.setup_seconds_warm, last.setup_seconds, "s")
    cpu = _temp(last.cpu_setup_pct_cold, last.cpu_setup_pct_warm, last.cpu_setup_pct, "%")
    per_repo = f" ({_fmt(last.cache_per_repo_mb, 'MB')}/repo ×{last.repos})" if last.cache_per_repo_mb is not None else ""
    late = f" reports late {last.late}".replace("|", "/") if last.late else ""
    return (f"{rate(cells)}{classes(cells)}{late} job={last.job or '-'} setup={_fmt(last.setup_seconds, 's')}{setup} "
            f"cpu={_fmt(last.cpu_setup_pct, '%')}{cpu} cache+={_fmt(last.cache_growth_mb, 'MB')}{per_repo}{shared} "
            f"left={last.leftovers} [{rules}]{_reason(cells)}")


def markdown_table(cells: Iterable[Cell]) -> str:
    """The side-by-side table, then one per condition (``### under <condition>``); rows whose outcomes differ
    between runners are marked ``◆``."""
    every = list(cells)
    conditions = sorted({c.condition for c in every if c.condition})
    text = _one_table([c for c in every if not c.condition])
    for condition in conditions:
        text += f"\n### under {condition}\n\n" + _one_table([c for c in every if c.condition == condition],
                                                             strip=f" under {condition}")
    return text


def _one_table(cells: Sequence[Cell], strip: str = "") -> str:
    if not cells:
        return ""
    table = group(cells)
    runners = sorted({r for row in table.values() for r in row})
    head = "| scenario | " + " | ".join(runners) + " |\n|---|" + "---|" * len(runners) + "\n"
    lines = []
    for scenario in sorted(table):
        row = table[scenario]
        outcomes = {tuple(c.outcome for c in row[r]) for r in runners if r in row}
        mark = " ◆" if len(outcomes) > 1 else ""
        cols = [_summary(row[r]) if r in row else "n/a" for r in runners]
        lines.append(f"| {scenario.removesuffix(strip)}{mark} | " + " | ".join(cols) + " |")
    return head + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class GateFinding:
    """One scenario's gate class and why."""

    scenario: str
    kind: str
    why: str
    condition: str = ""  # the --condition of the compared cells ("" for none)


def _no_evidence(version: str, cells: Sequence[Cell]) -> str | None:
    """Why ``cells`` are no evidence for ``version`` (None when every repeat passed or failed)."""
    if not cells:
        return f"no result on {version} (the cell did not run)"
    gaps = [c for c in cells if c.outcome not in (Outcome.PASS, Outcome.FAIL)]
    if not gaps:
        return None
    last = gaps[-1]
    why = last.reason or last.error or "no reason recorded"
    repeats = f" ({len(gaps)} of {len(cells)} repeats)" if len(cells) > 1 else ""
    return f"{version} is {last.outcome}{repeats}: {why[:200]}"


def _classify(scenario: str, base: Sequence[Cell], cand: Sequence[Cell], baseline: str, candidate: str,
              gate_on: Sequence[str]) -> GateFinding:
    b_all = bool(base) and all(c.passed for c in base)
    c_fail = [c for c in cand if c.outcome is Outcome.FAIL]
    if b_all and c_fail:
        flaky = len(c_fail) < len(cand)
        rules = ",".join(dict.fromkeys(r for c in c_fail for r in c.violations)) or (c_fail[-1].reason or "failed")
        return GateFinding(scenario, REGRESSION, f"{baseline} passed, {candidate} "
                           f"{f'is flaky ({len(c_fail)} of {len(cand)} failed)' if flaky else 'failed'}"
                           f"{classes(c_fail)}: {rules[:200]}")
    gap = _no_evidence(candidate, cand) or _no_evidence(baseline, base)
    if gap:
        return GateFinding(scenario, INCONCLUSIVE, gap)
    c_all = all(c.passed for c in cand)
    if not b_all:
        if c_all:
            failed = [c for c in base if c.outcome is Outcome.FAIL]
            why = (failed[-1].reason if failed else "").replace("\n", " ").split("; [")[0][:240]  # its first violation
            return GateFinding(scenario, FIXED, f"fails on {baseline}{classes(base)}, passes on {candidate}"
                               + (f" ({baseline}: {why})" if why else ""))
        return GateFinding(scenario, KNOWN_FAILURE, f"fails on both versions ({baseline}{classes(base)}, "
                           f"{candidate}{classes(cand)})")
    worse = _deltas(base[-1], cand[-1], gate_on)
    if worse:
        return GateFinding(scenario, REGRESSION, "; ".join(worse))
    return GateFinding(scenario, SAME, "passes on both")


def gate(cells: Iterable[Cell], baseline: str, candidate: str, gate_on: Sequence[str] = ()) -> list[GateFinding]:
    """Classify each scenario that has a cell on the baseline or the candidate.

    regression: the baseline passed every repeat and the candidate failed at least one (flaky
    included), or a delta named in ``gate_on`` (setup, cache, cpu, leftovers) is worse;
    inconclusive: either side is inconclusive, skipped or missing (no evidence, no approval);
    known failure: failed on both; fixed: failed on the baseline only. No compared scenario at
    all is one inconclusive finding (scenario ``*``).
    """
    findings = []
    for _row, by_runner in sorted(group(cells).items()):
        base, cand = by_runner.get(baseline, []), by_runner.get(candidate, [])
        if base or cand:
            first = (base or cand)[0]
            found = _classify(first.scenario, base, cand, baseline, candidate, gate_on)
            findings.append(dataclasses.replace(found, condition=first.condition))
    if not findings:
        findings.append(GateFinding("*", INCONCLUSIVE, f"no scenario ran on {baseline} or {candidate}: "
                                    "nothing was compared"))
    return findings


def _deltas(base: Cell, cand: Cell, gate_on: Sequence[str]) -> list[str]:
    """What the candidate does worse; CPU and cache growth only where neither cell shared its runner."""
    worse = []
    alone = not (base.shared or cand.shared)
    if "setup" in gate_on and base.setup_seconds is not None and cand.setup_seconds is not None \
            and cand.setup_seconds > base.setup_seconds * 1.5 + 2:
        worse.append(f"setup {cand.setup_seconds:.1f}s vs {base.setup_seconds:.1f}s")
    per_repo = base.cache_per_repo_mb is not None and cand.cache_per_repo_mb is not None  # --warm-up on both
    b_cache, c_cache = (base.cache_per_repo_mb, cand.cache_per_repo_mb) if per_repo else (
        base.cache_growth_mb, cand.cache_growth_mb)
    if "cache" in gate_on and alone and b_cache is not None and c_cache is not None and c_cache > b_cache + 10:
        worse.append(f"cache growth {c_cache:.1f}MB vs {b_cache:.1f}MB" + (" per repository" if per_repo else ""))
    if "cpu" in gate_on and alone and base.cpu_setup_pct is not None and cand.cpu_setup_pct is not None \
            and cand.cpu_setup_pct > base.cpu_setup_pct + 20:
        worse.append(f"setup CPU {cand.cpu_setup_pct:.0f}% vs {base.cpu_setup_pct:.0f}%")
    if "leftovers" in gate_on and cand.leftovers > base.leftovers:
        worse.append(f"{cand.leftovers} docker leftovers vs {base.leftovers}")
    return worse


def gate_failed(findings: Iterable[GateFinding]) -> bool:
    """True exactly when some scenario regressed."""
    return any(f.kind == REGRESSION for f in findings)


def _by_condition(findings: Sequence[GateFinding], kind: str, word: str) -> str:
    """``regressed: a, b; regressed under slow: c``: the scenarios of one kind, the plain ones first."""
    parts = []
    for condition in sorted({f.condition for f in findings if f.kind == kind}):
        names = ", ".join(f.scenario for f in findings if f.kind == kind and f.condition == condition)
        parts.append(f"{word}{f' under {condition}' if condition else ''}: {names}")
    return "; ".join(parts)


def gate_verdict(findings: Sequence[GateFinding]) -> str:
    """``FAILED`` (a regression), else ``INCONCLUSIVE`` (some scenario without evidence), else ``passed``."""
    if gate_failed(findings):
        return GATE_FAILED
    if any(f.kind == INCONCLUSIVE for f in findings):
        return GATE_INCONCLUSIVE
    return GATE_PASSED


def gate_line(findings: Sequence[GateFinding]) -> str:
    """The gate's last line: ``gate passed …``, ``gate FAILED …`` or ``gate INCONCLUSIVE …``."""
    verdict = gate_verdict(findings)
    if verdict == GATE_FAILED:
        return f"gate FAILED ({_by_condition(findings, REGRESSION, 'regressed')})"
    if verdict == GATE_INCONCLUSIVE:
        return (f"gate INCONCLUSIVE ({_by_condition(findings, INCONCLUSIVE, 'no evidence for')}; an upgrade is not "
                "approved without it)")
    return "gate passed (nothing regressed)"
