"""What a session leaves behind and how it ends: cell records, report.md / report.json / index.md / report.html,
golden baselines, the upgrade gate and the session's exit status.

Pure functions on files and plain values (no pytest import): the plugin's ``pytest_sessionfinish``
collects what pytest reported about each test into :class:`ReportedTest` values and calls :func:`finish`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import cache_growth, compare, html_report
from harness.compare import load_records
from harness.evidence import safe_name, write_index
from harness.outcome import Outcome

EXIT_OK = 0  # pytest.ExitCode.OK
EXIT_TESTS_FAILED = 1  # pytest.ExitCode.TESTS_FAILED
CELLS_DIR = "cells"


@dataclass(frozen=True)
class ReportedTest:
    """What pytest reported about one test, every phase folded together.

    ``scenario`` and ``runner`` are set for scenario cells (from the item's user properties).
    """

    nodeid: str
    scenario: str | None = None
    runner: str | None = None
    failed: tuple[str, ...] = ()  # the phases that failed: setup, call, teardown
    skipped: str | None = None  # the skip reason
    message: str = ""  # the first line of the first failure
    condition: str = ""  # the cell's --condition ("" for none)
    repeat: int = 0
    scenario_hash: str | None = None

    @property
    def is_cell(self) -> bool:
        """True for a scenario × runner test."""
        return self.scenario is not None and self.runner is not None


@dataclass(frozen=True)
class SessionStamp:
    """Who made a session's records: its id, the host, ``--repeat`` (a merge joins sessions by these)."""

    session: str
    host: str
    repeats: int = 1


@dataclass(frozen=True)
class GateRequest:
    """The gate's options: ``baseline`` is None with a golden file holding exactly one runner."""

    candidate: str
    baseline: str | None = None
    gate_on: tuple[str, ...] = ()
    golden: Path | None = None  # --compare-baseline


def gate_request(baseline: object, candidate: object, gate_on: Sequence[str], golden: Path | None) -> GateRequest | None:
    """The gate a session or a merge was asked for (None: no candidate, or nothing to compare it with)."""
    if candidate is None or (baseline is None and golden is None):
        return None
    return GateRequest(candidate=str(candidate), baseline=str(baseline) if baseline else None,
                       gate_on=tuple(gate_on), golden=golden)


@dataclass(frozen=True)
class SessionReport:
    """What :func:`finish` wrote and decided."""

    records: tuple[Mapping[str, Any], ...] = ()
    problems: tuple[str, ...] = ()  # record files that could not be read
    findings: tuple[compare.GateFinding, ...] | None = None  # None: no gate requested
    baseline: str | None = None
    exit_status: int | None = None  # None: leave pytest's own
    written: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def gate_line(self) -> str | None:
        """``gate passed …``, ``gate FAILED …``, ``gate INCONCLUSIVE …`` (None without a gate)."""
        return None if self.findings is None else compare.gate_line(self.findings)


# -- cell records --------------------------------------------------------------------------------------


def write_record(run_dir: Path, test_name: str, record: Mapping[str, Any]) -> Path:
    """Write one cell record to ``<run_dir>/cells/<test>.json``."""
    cells = run_dir / CELLS_DIR
    cells.mkdir(parents=True, exist_ok=True)
    path = cells / f"{safe_name(test_name)}.json"
    path.write_text(json.dumps(dict(record), indent=2, default=str))
    return path


def skipped_record(scenario: str, runner: str, reason: str, nodeid: str = "", condition: str = "") -> dict[str, Any]:
    """The record of a cell that could not run here (no runner, not runnable, n/a config)."""
    return {"scenario": scenario, "runner": runner, "condition": condition, "version": None, "label": None,
            "outcome": str(Outcome.SKIPPED), "reason": reason, "passed": False, "error": None,
            "verdict": None, "observations": {}, "nodeid": nodeid}


def _missing_record(test: ReportedTest, stamp: SessionStamp | None) -> dict[str, Any]:
    """A record for a scenario test that wrote none (it died or was skipped before its cell ran)."""
    assert test.scenario is not None and test.runner is not None
    who = ({"session": stamp.session, "host": stamp.host, "repeat": test.repeat, "repeats": stamp.repeats,
            "scenario_hash": test.scenario_hash} if stamp is not None else {})
    if test.skipped is not None and not test.failed:
        return {**skipped_record(test.scenario, test.runner, test.skipped or "skipped", test.nodeid, test.condition),
                **who}
    if test.failed:
        why = f"the test failed ({'/'.join(test.failed)}) before its cell wrote a record: {test.message or 'no message'}"
    else:
        why = "the test wrote no cell record"
    return {**skipped_record(test.scenario, test.runner, why, test.nodeid, test.condition),
            "outcome": str(Outcome.INCONCLUSIVE), "recorded": False, **who}


def complete_records(records: Sequence[Mapping[str, Any]], tests: Iterable[ReportedTest],
                     stamp: SessionStamp | None = None) -> list[dict[str, Any]]:
    """``records`` plus one for every scenario test without a record of its own (matched by node id)."""
    seen = {r.get("nodeid") for r in records}
    extra = [_missing_record(t, stamp) for t in tests if t.is_cell and t.nodeid not in seen]
    return [dict(r) for r in records] + extra


# -- reports and golden baselines ----------------------------------------------------------------------


COLD_WARM = ("setup_seconds_cold", "setup_seconds_warm", "cpu_setup_pct_cold", "cpu_setup_pct_warm")


def with_figures(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The records as report.json holds them: each with its cold and warm setup and CPU figures, and its runner's
    cache store after each repository of the session (``runner_cache``; None for a runner with no measured store)."""
    series = cache_growth.runner_series(records)
    sessions = cache_growth.sessions_of(records)
    out = []
    for record in records:
        cell = compare.Cell.from_json(record)
        name = next((p.runner_name for p in cache_growth.repo_stores(record, sessions)), None)
        out.append({**record, **{k: getattr(cell, k) for k in COLD_WARM},
                    "runner_cache": series[name].to_json() if name in series else None})
    return out


def cache_section(records: Sequence[Mapping[str, Any]]) -> str:
    """report.md's lines on the cache store per runner ("" when no store was measured or none held anything:
    a runner whose stores stayed empty says nothing worth a line)."""
    lines = [series.line() for series in cache_growth.runner_series(records).values() if series.holds_anything]
    if not lines:
        return ""
    return ("\n## Cache store per runner (after each repository, in order)\n\n" + "\n".join(lines) + "\n")


def write_reports(run_dir: Path, records: Sequence[Mapping[str, Any]]) -> list[Path]:
    """``report.md`` (the table), ``report.json`` (the records), ``index.md`` (the bundles) and ``report.html``
    (all of it on one self-contained page; :func:`finish` writes it again with the gate's decision)."""
    if not records:
        return []
    run_dir.mkdir(parents=True, exist_ok=True)
    cells = [compare.Cell.from_json(r) for r in records]
    md = run_dir / "report.md"
    md.write_text("# Runner comparison\n\n" + compare.markdown_table(cells) + cache_section(records))
    js = run_dir / "report.json"
    js.write_text(json.dumps(with_figures(records), indent=2, default=str))
    return [md, js, write_index(run_dir), html_report.write(run_dir, records)]


def save_baseline(path: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """Store ``records`` as a golden baseline (``--save-baseline``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": compare.BASELINE_SCHEMA, "cells": list(records)}, indent=2, default=str))
    return path


def merge_golden(stored: Sequence[compare.Cell], live: Sequence[compare.Cell],
                 baseline: str | None) -> tuple[list[compare.Cell], str]:
    """The golden file's cells of the baseline runner in place of any live ones; the baseline's key.

    Raises:
        ValueError: the golden file lacks ``baseline``, or holds several runners and none is named.
    """
    keys = sorted({c.runner for c in stored})
    if baseline is None and len(keys) == 1:
        baseline = keys[0]
    if baseline is None or baseline not in keys:
        named = f"has no runner {baseline}" if baseline else "holds several runners"
        raise ValueError(f"the golden baseline {named} (it holds {', '.join(keys) or 'no cell'}); "
                         "name one of them with --baseline")
    return [c for c in stored if c.runner == baseline] + [c for c in live if c.runner != baseline], baseline


# -- the gate and the exit status ----------------------------------------------------------------------


def gate_judges(record: Mapping[str, Any], runners: Iterable[str]) -> bool:
    """The gate judges this record's failure: a failed cell on a gate runner (never a selfcheck: a selfcheck that
    fails says the judge itself is wrong, which no comparison excuses)."""
    return (str(record.get("runner")) in set(runners) and record.get("outcome") == str(Outcome.FAIL)
            and not (record.get("observations") or {}).get("selfcheck"))


def excused(tests: Iterable[ReportedTest], records: Sequence[Mapping[str, Any]], runners: Iterable[str]) -> set[str]:
    """Node ids of failed tests the gate judges: a cell on a gate runner that failed in its call
    phase only, with the recorded outcome ``fail``. Every other failure keeps the session failed."""
    runners = set(runners)
    judged = {r.get("nodeid") for r in records if gate_judges(r, runners)}
    return {t.nodeid for t in tests if t.failed == ("call",) and t.nodeid in judged}


def session_failures(tests: Iterable[ReportedTest], records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The failed tests a merge cannot judge again from the records: every failed test but a cell that failed in
    its call phase with a record of its own (a unit test, a selfcheck, a teardown, a cell that died before its
    record). ``session.json`` keeps them, and a merge that holds any is failed."""
    recorded = {r.get("nodeid"): r for r in records if r.get("recorded", True)}
    found = []
    for test in tests:
        record = recorded.get(test.nodeid)
        rejudged = (test.is_cell and test.failed == ("call",) and record is not None
                    and not (record.get("observations") or {}).get("selfcheck"))
        if test.failed and not rejudged:
            found.append({"nodeid": test.nodeid, "phases": list(test.failed), "message": test.message})
    return found


def failing_records(records: Sequence[Mapping[str, Any]], runners: Iterable[str]) -> list[Mapping[str, Any]]:
    """Records that fail a session or merge by themselves: fail or inconclusive, neither the gate's to judge nor a
    known bug reproduced (a strict xfail)."""
    runners = set(runners)
    bad = (str(Outcome.FAIL), str(Outcome.INCONCLUSIVE))
    return [r for r in records if r.get("outcome") in bad and not gate_judges(r, runners)
            and not r.get("known_bug_reproduced")]


def decide_gate(cells: Sequence[compare.Cell], gate: GateRequest) -> tuple[list[compare.GateFinding], str]:
    """The gate's findings and its baseline: the golden file's baseline cells in place of live ones when given. One
    function for a session, a golden file and a merge.

    Raises:
        ValueError: an unreadable golden baseline, or one without the baseline runner.
    """
    baseline = gate.baseline
    if gate.golden is not None:
        cells, baseline = merge_golden(compare.load_baseline(gate.golden), cells, baseline)
    assert baseline is not None, "a gate needs a baseline runner (config validation guarantees one)"
    return compare.gate(cells, baseline, gate.candidate, gate.gate_on), baseline


SESSION_FILE = "session.json"
SESSION_SCHEMA = "forgejo-runner-regress/session/1"


def write_session(run_dir: Path, stamp: SessionStamp, exit_status: int, failures: Sequence[Mapping[str, Any]],
                  records: int, gate: Mapping[str, Any] | None) -> Path:
    """``session.json``: how the session ended (its exit status, the failures no record shows, the gate)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SESSION_FILE
    path.write_text(json.dumps({"schema": SESSION_SCHEMA, "session": stamp.session, "host": stamp.host,
                                "repeats": stamp.repeats, "exit_status": exit_status, "failures": list(failures),
                                "records": records, "gate": gate}, indent=2, default=str))
    return path


def exit_status(current: int, tests: Sequence[ReportedTest], records: Sequence[Mapping[str, Any]],
                findings: Sequence[compare.GateFinding], runners: Iterable[str]) -> int:
    """The session's exit status with a gate: failed when the gate did not pass or any test the
    gate does not judge failed; pytest's own status when it is neither OK nor TESTS_FAILED
    (interrupted, usage error, internal error, nothing collected)."""
    if current not in (EXIT_OK, EXIT_TESTS_FAILED):
        return current
    judged = excused(tests, records, runners)
    others = [t for t in tests if t.failed and t.nodeid not in judged]
    if others or compare.gate_verdict(findings) != compare.GATE_PASSED:
        return EXIT_TESTS_FAILED
    if current == EXIT_TESTS_FAILED and not judged:
        return EXIT_TESTS_FAILED  # a failure pytest saw that no test report showed (e.g. in a session hook)
    return EXIT_OK


def write_gate(run_dir: Path, findings: Sequence[compare.GateFinding], baseline: str, candidate: str) -> Path:
    """``gate.json``: the verdict, both versions and every finding."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "gate.json"
    path.write_text(json.dumps({"verdict": compare.gate_verdict(findings), "baseline": baseline,
                                "candidate": candidate, "findings": [asdict(f) for f in findings]}, indent=2))
    return path


def read_gate(path: Path) -> tuple[list[compare.GateFinding], str, str]:
    """A ``gate.json``'s findings, baseline and candidate (for a page rendered from a finished run dir).

    Raises:
        ValueError: not a gate.json that :func:`write_gate` wrote.
    """
    try:
        data = json.loads(path.read_text())
        findings = [compare.GateFinding(**f) for f in data["findings"]]
        return findings, str(data["baseline"]), str(data["candidate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a gate.json: {exc!r}") from None


def finish(run_dir: Path, tests: Sequence[ReportedTest], current: int, *, gate: GateRequest | None = None,
           save: Path | None = None, session: SessionStamp | None = None) -> SessionReport:
    """Everything a session does at its end, in order: complete and report the records, save a
    golden baseline, run the gate and decide the exit status (only with a gate).

    Raises:
        ValueError: an unreadable golden baseline, or one without the baseline runner.
    """
    loaded, problems = load_records(run_dir / CELLS_DIR)
    records = complete_records(loaded, tests, session)
    written = write_reports(run_dir, records)
    if save is not None and records:
        written.append(save_baseline(save, records))
    failures = session_failures(tests, records)
    if gate is None:
        if session is not None:
            written.append(write_session(run_dir, session, current, failures, len(records), None))
        return SessionReport(tuple(records), tuple(problems), written=tuple(written))
    findings, baseline = decide_gate([compare.Cell.from_json(r) for r in records], gate)
    written.append(write_gate(run_dir, findings, baseline, gate.candidate))
    html_report.write(run_dir, records, findings, baseline, gate.candidate)  # now with the gate's decision first
    status = exit_status(current, tests, records, findings, {baseline, gate.candidate})
    if session is not None:
        written.append(write_session(run_dir, session, status, failures, len(records), {
            "baseline": baseline, "candidate": gate.candidate, "line": compare.gate_line(findings)}))
    return SessionReport(tuple(records), tuple(problems), tuple(findings), baseline, status, tuple(written))


def summary_lines(report: SessionReport, candidate: str | None, golden: Path | None) -> list[str]:
    """The gate section for the terminal: one line per finding and the gate's last line."""
    if report.findings is None:
        return []
    base = f"{report.baseline} (golden {golden})" if golden else str(report.baseline)
    lines = [f"upgrade gate: {base} → {candidate}"]
    lines += [f"{f.kind:>14}: {f.scenario}{f' under {f.condition}' if f.condition else ''} — {f.why}"
              for f in report.findings]
    return [*lines, compare.gate_line(report.findings)]
