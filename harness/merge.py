"""``python -m harness report merge RUN_DIR… --out DIR``: one gate over the runs of several sessions (a CI matrix: one
job per runner version, each on its own host), decided by the same functions a session uses.

Each run dir holds the cell records of one session (``cells/*.json``) and how that session ended (``session.json``:
its exit status and every failure no record shows: a unit test, a selfcheck, a teardown). The merge refuses what it
cannot join soundly, each with one line: not a run dir, a record that does not parse, an empty list, records without
their identity (runs of an older suite), one scenario with two different content hashes (it changed between the
runs), the same cell twice (unless both are repeats of a ``--repeat`` session: then their pass rate). A merge whose
inputs hold any session failure is failed, exactly as a session never turns green over a failed test.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import compare, html_report, report
from harness.errors import ConfigError

IDENTITY = ("session", "host", "scenario_hash")


@dataclass(frozen=True)
class Run:
    """One input run dir: its records (bundle paths made relative to the merge's output) and its session."""

    path: Path
    session: Mapping[str, Any]
    records: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Merged:
    """What the merge decided: the records, the gate (None without one), the failures of the inputs, the status."""

    records: tuple[dict[str, Any], ...]
    findings: tuple[compare.GateFinding, ...] | None
    baseline: str | None
    session_failures: tuple[str, ...]
    failing: tuple[str, ...]  # records that fail the merge by themselves (as they fail a session)
    exit_status: int
    written: tuple[Path, ...]

    @property
    def gate_line(self) -> str | None:
        """The gate's last line (None without a gate)."""
        return compare.gate_line(self.findings) if self.findings is not None else None


def read_run(path: Path, out: Path) -> Run:
    """One run dir.

    Raises:
        ConfigError: not a run dir, an unreadable session.json or record, a record without its identity.
    """
    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory")
    session_file = path / report.SESSION_FILE
    if not session_file.is_file():
        raise ConfigError(f"{path}: not a run dir of this suite (no {report.SESSION_FILE}, which every session writes "
                          "at its end; a run of an older suite, or a session that never ended, cannot be merged)")
    try:
        session = json.loads(session_file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{session_file}: not readable JSON ({exc})") from None
    if not isinstance(session, Mapping) or session.get("schema") != report.SESSION_SCHEMA:
        raise ConfigError(f"{session_file}: not a session of this suite (schema {report.SESSION_SCHEMA})")
    records, problems = compare.load_records(path / report.CELLS_DIR)
    if problems:
        raise ConfigError(problems[0])
    for record in records:
        missing = [k for k in IDENTITY if not record.get(k)]
        if missing:
            raise ConfigError(f"{path}: the record of {record.get('scenario')} × {record.get('runner')} has no "
                              f"{', '.join(missing)} (a run of an older suite: its cells cannot be joined)")
        bundle = record.get("bundle")
        if bundle:  # relative to its run; made relative to the merge's output
            record["bundle"] = os.path.relpath(path / str(bundle), out)
    return Run(path, session, tuple(records))


def _cell(record: Mapping[str, Any]) -> tuple[str, str, str]:
    return str(record.get("scenario")), str(record.get("runner")), str(record.get("condition") or "")


def check_union(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The union of the runs' records.

    Raises:
        ConfigError: a scenario with two content hashes, or the same cell twice outside ``--repeat``.
    """
    hashes: dict[tuple[str, str], set[str]] = defaultdict(set)
    seen: dict[tuple[str, str, str], list[tuple[Run, Mapping[str, Any]]]] = defaultdict(list)
    for run in runs:
        for record in run.records:
            scenario, runner, condition = _cell(record)
            hashes[(scenario, condition)].add(str(record["scenario_hash"]))
            seen[(scenario, runner, condition)].append((run, record))
    for (scenario, condition), found in sorted(hashes.items()):
        if len(found) > 1:
            under = f" under {condition}" if condition else ""
            raise ConfigError(f"scenario {scenario}{under} differs between the runs ({len(found)} content hashes: its "
                              "workflow, expect.yml, README, stand-in actions or the suite changed): refused, the "
                              "cells would not compare the same thing")
    for (scenario, runner, condition), found in sorted(seen.items()):
        if len(found) < 2:
            continue
        repeats = all(int(r.get("repeats") or 1) > 1 for _, r in found)
        distinct = len({(r.get("session"), r.get("repeat")) for _, r in found}) == len(found)
        if not (repeats and distinct):
            where = ", ".join(str(run.path) for run, _ in found)
            under = f" under {condition}" if condition else ""
            raise ConfigError(f"the cell {scenario} × {runner}{under} is in more than one run ({where}): refused "
                              "(only repeats of --repeat sessions are joined, as a pass rate)")
    return [dict(r) for run in runs for r in run.records]


def merge(paths: Sequence[Path], out: Path, gate: report.GateRequest | None) -> Merged:
    """Join ``paths`` into ``out`` (report.md, report.json, index.md, report.html, gate.json) and decide as a session
    would.

    Raises:
        ConfigError: bad input (see the module); ValueError: an unreadable golden baseline.
    """
    if not paths:
        raise ConfigError("report merge: give at least one RUN_DIR")
    out.mkdir(parents=True, exist_ok=True)
    runs = [read_run(p, out) for p in paths]
    records = check_union(runs)
    if not records:
        raise ConfigError(f"report merge: the runs hold no cell record ({', '.join(str(p) for p in paths)})")
    written = report.write_reports(out, records)
    failures = tuple(f"{run.path}: {f.get('nodeid')} failed ({'/'.join(f.get('phases') or [])}): "
                     f"{f.get('message') or 'no message'}" for run in runs for f in run.session.get("failures") or ())
    findings: list[compare.GateFinding] | None = None
    baseline = None
    runners: set[str] = set()
    if gate is not None:
        findings, baseline = report.decide_gate([compare.Cell.from_json(r) for r in records], gate)
        written.append(report.write_gate(out, findings, baseline, gate.candidate))
        html_report.write(out, records, findings, baseline, gate.candidate)  # the page with the gate's decision first
        runners = {baseline, gate.candidate}
    failing = tuple(f"{r.get('scenario')} × {r.get('runner')}: {r.get('outcome')}"
                    for r in report.failing_records(records, runners))
    passed = not failures and not failing and (findings is None or
                                               compare.gate_verdict(findings) == compare.GATE_PASSED)
    status = report.EXIT_OK if passed else report.EXIT_TESTS_FAILED
    return Merged(tuple(records), tuple(findings) if findings is not None else None, baseline, failures, failing,
                  status, tuple(written))


def summary(merged: Merged, gate: report.GateRequest | None) -> list[str]:
    """What the merge prints: its input failures, the failing cells outside the gate, the gate's lines."""
    lines = [f"merged {len(merged.records)} cell records"]
    lines += [f"session failure: {f}" for f in merged.session_failures]
    lines += [f"failed cell outside the gate: {f}" for f in merged.failing]
    if merged.findings is not None and gate is not None:
        decided = report.SessionReport(findings=merged.findings, baseline=merged.baseline)
        lines += report.summary_lines(decided, gate.candidate, gate.golden)
    if merged.session_failures:
        lines.append(f"merge FAILED: {len(merged.session_failures)} failure(s) in the input sessions (above); the gate "
                     "never turns a failed run green")
    return lines
