"""The evidence bundle of one cell: what ran, what was seen, the verdict, and how to re-run it (redacted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.evidence import SCHEMA, Bundle, environment, repro_markdown, write_reproducer
from harness.scenarios import ACTIONS_DIR, DEFAULT_EXPECT_TEXT
from harness.target import seeded_commits

if TYPE_CHECKING:
    from harness.cell import CellRun


def _manifest(path: Path, run: CellRun, files: list[str]) -> dict[str, Any]:
    cell, result = run.cell, run.result
    lab_runner = cell.handle.lab_runner
    from_log = result.observations.get("runner_from_log") or {}
    scenario = cell.scenario
    return {
        "schema": SCHEMA,
        "suite_version": __version__,
        "test_id": path.name,
        "bundle_dir": str(path),
        "scenario": scenario.name,
        "outcome": str(result.outcome),
        "reason": result.reason,
        "error": result.error,
        "selfcheck_problem": result.selfcheck_problem,
        "label": result.label,
        "repo": result.repo,
        "forgejo": {**cell.target.info, "url_kind": "lab" if cell.target.lab else "existing instance"},
        "runner": {"key": cell.handle.key, "version": str(cell.handle.version),
                   "name": lab_runner.name if lab_runner else from_log.get("name"),
                   "version_from_log": from_log.get("version"),
                   "labels": cell.handle.labels,
                   "without_tools": list(lab_runner.without_tools) if lab_runner else [],
                   "config_overrides": dict(lab_runner.overrides) if lab_runner else {}},
        "expect": {"job": str(scenario.expect.job), "steps": {k: str(v) for k, v in scenario.expect.steps.items()},
                   "post_steps": list(scenario.expect.post_steps)},
        "timings": result.timings,
        "verdict": result.verdict.to_json() if result.verdict else {},
        "class": result.classification.name if result.classification else None,
        "class_evidence": result.classification.to_json() if result.classification else None,
        "observations": result.observations,
        "seeded_actions": seeded_commits(cell.target),
        "environment": environment(cell.target.docker_host),
        "files": files,
    }


def write_bundle(path: Path, run: CellRun) -> Path:
    """Write the bundle of one cell; every file listed in manifest.json and repro.md exists."""
    bundle = Bundle(path)
    cell, result, done = run.cell, run.result, run.done
    files: list[str] = []

    def text(name: str, content: str) -> None:
        bundle.text(name, content)
        files.append(name)

    def data(name: str, content: Any) -> None:
        bundle.json(name, content)
        files.append(name)

    text("workflow.yml", run.workflow or cell.scenario.template)
    expect_file = cell.scenario.path / "expect.yml"
    text("expect.yml", expect_file.read_text() if expect_file.is_file() else DEFAULT_EXPECT_TEXT)
    bundle.copy_tree(cell.scenario.path, f"scenario/{cell.scenario.name}")
    if done is not None:
        for index, view in enumerate(done.views):
            data("job-view.json" if index == 0 else f"job-view-{index}.json", dict(view.raw))
        if done.raw_log is not None:
            text("job.log", done.raw_log)
        data("tasks.json", [dict(t.raw) for t in done.tasks])
    if run.findings.runner_log is not None:
        text("runner.log", run.findings.runner_log)
    text("api-transcript.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in run.my_requests()))
    if result.verdict is not None:
        data("verdict.json", result.verdict.to_json())
    for write in run.findings.evidence:
        write(bundle)
    files.extend(p.name for p in sorted(bundle.path.glob("*")) if p.is_file() and p.name not in files)
    lab_runner = cell.handle.lab_runner
    runner_config = lab_runner.config_file.read_text() if lab_runner else None
    if runner_config:
        text("runner-config.yaml", runner_config)
    for use in cell.scenario.uses():
        repo_path = use.split("@")[0]
        source = ACTIONS_DIR / repo_path
        if cell.target.lab and source.is_dir():
            bundle.copy_tree(source, f"actions/{repo_path}")
    files += ["manifest.json", "repro.md", "result.json", "reproducer/"]
    manifest = _manifest(path, run, files)
    bundle.json("manifest.json", manifest)
    table = result.verdict.table() if result.verdict else f"no verdict: {result.error}"
    bundle.text("repro.md", repro_markdown(manifest, table, run.workflow or cell.scenario.template))
    write_reproducer(bundle, cell.scenario.name, run.workflow or cell.scenario.template, runner_config, result.label)
    bundle.text("result.json", json.dumps(result.to_json(), indent=2, default=str))
    return path
