"""report.html: one self-contained page beside report.md, rendered from the cell records with Jinja2.

The page loads nothing: no script, no external asset, and a ``Content-Security-Policy`` meta that forbids both (its
one inline style is allowed by its hash). Every text from a record (reasons, job-log and runner-log lines) is
untrusted and escaped by Jinja's autoescape. :func:`render` is pure, for a session's end and for a merge of runs.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from harness import compare, report_charts
from harness.report_view import CellView, cell_view

REPORT_HTML = "report.html"
TEMPLATE = "report.html.j2"
STYLE = "report.css"


@dataclass(frozen=True)
class MatrixCell:
    """One runner's column of one row: its outcome words, classes and links to its cells' sections."""

    outcome: str  # compare.rate: pass, FAIL, flaky 2/3, INCONCLUSIVE, skipped, ...
    classes: str
    anchors: tuple[str, ...]


@dataclass(frozen=True)
class MatrixRow:
    scenario: str
    differs: bool  # ◆: the runners' outcomes differ
    cells: tuple[MatrixCell | None, ...]  # one per runner (None: n/a)


@dataclass(frozen=True)
class Matrix:
    """One table: the plain cells, or those under one condition."""

    condition: str
    runners: tuple[str, ...]
    rows: tuple[MatrixRow, ...]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("harness", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def matrices(cells: Sequence[compare.Cell], anchors: Sequence[str]) -> list[Matrix]:
    """The matrix as report.md has it: the plain table first, then one per condition; rows sorted by scenario."""
    out = []
    for condition in ["", *sorted({c.condition for c in cells if c.condition})]:
        mine = [(c, a) for c, a in zip(cells, anchors, strict=True) if c.condition == condition]
        if not mine:
            continue
        runners = tuple(sorted({c.runner for c, _ in mine}))
        rows = []
        for scenario in sorted({c.scenario for c, _ in mine}):
            by_runner = {r: [(c, a) for c, a in mine if c.scenario == scenario and c.runner == r] for r in runners}
            outcomes = {tuple(c.outcome for c, _ in got) for got in by_runner.values() if got}
            cols = tuple(MatrixCell(compare.rate([c for c, _ in got]), compare.classes([c for c, _ in got]).strip(" []"),
                                    tuple(a for _, a in got)) if got else None for got in by_runner.values())
            rows.append(MatrixRow(scenario, len(outcomes) > 1, cols))
        out.append(Matrix(condition, runners, tuple(rows)))
    return out


def csp(style: str) -> str:
    """The page's policy: nothing may load or run; only the page's own inline style (by its SHA-256)."""
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; script-src 'none'; "
            "base-uri 'none'; form-action 'none'")


def render(records: Sequence[Mapping[str, Any]], findings: Sequence[compare.GateFinding] | None,
           baseline: str | None, candidate: str | None, *, root: Path | None = None,
           title: str = "Runner comparison") -> str:
    """The page for ``records`` (cell records); ``findings`` None when no gate was asked for. ``root`` is where the
    page will be written: bundle links under it are relative."""
    env = _environment()
    style = env.loader.get_source(env, STYLE)[0] if env.loader else ""
    views = [cell_view(r, i, root) for i, r in enumerate(records)]
    cells = [compare.Cell.from_json(r) for r in records]
    charts = {v.anchor: _charts(v) for v in views}
    gate = None if findings is None else {
        "line": compare.gate_line(findings), "verdict": compare.gate_verdict(findings), "baseline": baseline or "?",
        "candidate": candidate or "?", "findings": list(findings)}
    return env.get_template(TEMPLATE).render(
        title=title, style=style, csp=csp(style), gate=gate, matrices=matrices(cells, [v.anchor for v in views]),
        cells=views, charts=charts)


def _charts(view: CellView) -> dict[str, report_charts.Chart]:
    found = {"setup": report_charts.setup_chart(view), "cpu": report_charts.cpu_chart(view),
             "cache": report_charts.cache_chart(view)}
    if view.fault is not None and view.fault.events:
        found["timeline"] = report_charts.timeline(view, view.fault.events)
    return found


def write(run_dir: Path, records: Sequence[Mapping[str, Any]], findings: Sequence[compare.GateFinding] | None = None,
          baseline: str | None = None, candidate: str | None = None) -> Path:
    """``<run_dir>/report.html`` from ``records`` (and the gate's findings, when the session had a gate)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / REPORT_HTML
    path.write_text(render(records, findings, baseline, candidate, root=run_dir), encoding="utf-8")
    return path
