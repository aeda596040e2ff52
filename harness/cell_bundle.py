"""The evidence bundle of one cell: what ran, what was seen, the verdict, and how to re-run it (redacted)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from harness import __version__
from harness.cell_result import CellResult
from harness.evidence import SCHEMA, Bundle, environment, repro_markdown, write_reproducer
from harness.observe.base import CellScope, Done, Findings
from harness.provenance import SEEDED_COPY, STAND_IN, ActionRan, actions_ran, export_tree, resolve_ref
from harness.scenarios import DEFAULT_EXPECT_TEXT
from harness.target import action_origins


class CellRun(Protocol):
    """What a bundle is written from: one cell's state at its end (:class:`harness.cell.CellRun` is one)."""

    cell: CellScope
    result: CellResult
    done: Done | None
    workflow: str
    findings: Findings

    def my_requests(self) -> list[dict[str, Any]]:
        """This cell's API exchanges (the transcript's records naming its repository)."""


OVERRIDES_FILE = "runner-config-overrides.yaml"  # the --runner-config file of the cell's config axis
CONDITION_FILE = "condition.yml"  # the --condition file the cell ran under


def _ran(run: CellRun) -> list[ActionRan]:
    cell = run.cell
    uses = cell.uses()  # as pushed: a phased cell's changed actions are its own copies
    lab_runner = cell.handle.lab_runner
    return actions_ran(uses, action_origins(cell.target, uses), run.done.raw_log if run.done else None,
                       lab_runner.workdir if lab_runner else None)


def _seeded_actions(ran: Sequence[ActionRan], run: CellRun) -> dict[str, str | None]:
    """``owner/name@ref`` → the commit the ref resolves to in the lab's seeded repository."""
    served = {s.repo: Path(s.served) for s in run.cell.target.lab.seeded if s.served} if run.cell.target.lab else {}
    return {a.uses: resolve_ref(served[a.repo], a.ref) for a in ran if a.kind in (STAND_IN, SEEDED_COPY)
            and a.repo in served}


def _rerun_options(run: CellRun) -> dict[str, Any]:
    """Every option that shaped the cell, as ``python -m harness rerun`` takes them (lab runners)."""
    cell = run.cell
    lab_runner = cell.handle.lab_runner
    version = str(cell.handle.version)
    config_name = cell.handle.key.removeprefix(version).removeprefix("-") if lab_runner else ""
    lab = cell.target.lab
    return {
        "runner_version": version,
        "runner_key": cell.handle.key,
        "forgejo_version": cell.target.info.get("version"),
        "runner_binary": str(lab_runner.binary.path) if lab_runner and lab_runner.binary.source == "path" else None,
        "seed_action": sorted(f"{s.repo}={s.path}" for s in lab.seeded if s.kind == SEEDED_COPY) if lab else [],
        "runner_config": {config_name: OVERRIDES_FILE} if config_name and _axis_file(run) else {},
        "actions_url": lab.forgejo.actions_url if lab and lab.forgejo.actions_url != "self" else None,
        "runner_without": list(lab_runner.without_tools) if lab_runner else [],
        "condition": {cell.scenario.condition: CONDITION_FILE} if cell.scenario.condition else {},
    }


def _axis_file(run: CellRun) -> dict[str, Any]:
    """The cell's config axis as a --runner-config file: the config overrides and the axis's ``env:`` (the runner's
    variables, without those the scenario's fault sets on its private runner); {} for no axis."""
    lab_runner = run.cell.handle.lab_runner
    if lab_runner is None:
        return {}
    fault = run.cell.scenario.expect.fault
    scenario_env = fault.runner_env if fault is not None else {}
    env = {k: v for k, v in lab_runner.env_overrides.items() if v is not None and scenario_env.get(k) != v}
    return {**dict(lab_runner.overrides), **({"env": env} if env else {})}


def _environment(run: CellRun) -> dict[str, Any]:
    lab_runner = run.cell.handle.lab_runner
    if lab_runner is None:
        return environment(run.cell.target.docker_host)
    return environment(run.cell.target.docker_host, lab_runner.env(),
                       f"runner {lab_runner.name}'s environment (HOME {lab_runner.home})")


def _copy_actions(bundle: Bundle, ran: Sequence[ActionRan]) -> None:
    """``actions/<owner>/<name>``: the files of the commit that ran (``@<ref>`` added when a repository ran at
    two refs)."""
    repos = [a.repo for a in ran]
    for action in ran:
        if action.commit is None or action.git_dir is None:
            continue
        name = f"actions/{action.repo}" + (f"@{action.ref}" if repos.count(action.repo) > 1 else "")
        with tempfile.TemporaryDirectory(prefix="regress-action-") as tmp:
            if export_tree(action.git_dir, action.commit, Path(tmp)):
                bundle.copy_tree(Path(tmp), name)


def _manifest(path: Path, run: CellRun, files: list[str], ran: Sequence[ActionRan]) -> dict[str, Any]:
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
        "actions": [a.to_json() for a in ran],
        "seeded_actions": _seeded_actions(ran, run),
        "rerun": _rerun_options(run),
        "environment": _environment(run),
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
    axis = _axis_file(run)
    if axis:
        text(OVERRIDES_FILE, yaml.safe_dump(axis, sort_keys=False))
    condition = result.observations.get("condition")
    if cell.scenario.condition and isinstance(condition, Mapping):
        text(CONDITION_FILE, f"# --condition {cell.scenario.condition}={condition.get('source')}: "
             f"{condition.get('describe')}\n" + yaml.safe_dump(dict(condition.get("block") or {}), sort_keys=False,
                                                              allow_unicode=True))
    ran = _ran(run)
    _copy_actions(bundle, ran)
    if any(a.commit for a in ran):
        files.append("actions/")
    files += ["manifest.json", "repro.md", "result.json", "reproducer/"]
    manifest = _manifest(path, run, files, ran)
    bundle.json("manifest.json", manifest)
    table = result.verdict.table() if result.verdict else f"no verdict: {result.error}"
    bundle.text("repro.md", repro_markdown(manifest, table, run.workflow or cell.scenario.template))
    write_reproducer(bundle, cell.scenario.name, run.workflow or cell.scenario.template, runner_config, result.label)
    bundle.text("result.json", json.dumps(result.to_json(), indent=2, default=str))
    return path
