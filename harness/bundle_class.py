"""The failure class of an evidence bundle, from its files alone (``python -m harness classify BUNDLE``).

The edge between a bundle on disk and :mod:`harness.classify`: verdict.json, job-view*.json,
tasks.json, job.log, runner.log and manifest.json (error, selfcheck problem, timings, the
instance's ``ZOMBIE_TASK_TIMEOUT`` when the suite knew it). A bundle written before classes
existed, or one from another machine, gets its class here the way the live cell would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import lateness
from harness.classify import Classification, Inputs, classify
from harness.errors import HarnessError
from harness.forgejo.models import JobView, Task, parse_go_duration
from harness.verdict import verdict_from_json


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} is not readable JSON: {exc}") from None


def bundle_inputs(path: Path) -> Inputs:
    """What the classifier reads, from the bundle at ``path``.

    Raises:
        HarnessError: no manifest.json, or a file that is not what the bundle's layout says.
    """
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise HarnessError(f"{path} is not an evidence bundle (no manifest.json)")
    manifest = _json(manifest_file)
    verdict_data = _json(path / "verdict.json") if (path / "verdict.json").is_file() else manifest.get("verdict")
    try:
        verdict = verdict_from_json(verdict_data) if verdict_data else None
    except ValueError as exc:
        raise HarnessError(f"{path}: {exc}") from None
    views = [JobView.from_view(_json(path / "job-view.json"))] if (path / "job-view.json").is_file() else []
    views += [JobView.from_view(_json(f)) for f in sorted(path.glob("job-view-*.json"),
                                                          key=lambda f: int(f.stem.rsplit("-", 1)[1]))]
    if verdict is not None:  # a bundle from before late reports were told from lost ones
        verdict = lateness.settle(verdict, views)
    tasks = tuple(Task.from_api(t) for t in _json(path / "tasks.json")) if (path / "tasks.json").is_file() else ()
    text = {name: (path / name).read_text() if (path / name).is_file() else None for name in ("job.log", "runner.log")}
    timeout = ((manifest.get("forgejo") or {}).get("actions") or {}).get("ZOMBIE_TASK_TIMEOUT")
    return Inputs(verdict, views=tuple(views), raw_log=text["job.log"], tasks=tasks, error=manifest.get("error"),
                  selfcheck_problem=manifest.get("selfcheck_problem"), runner_log=text["runner.log"],
                  zombie_timeout=parse_go_duration(str(timeout)) if timeout else None,
                  timings=manifest.get("timings") or {})


def classify_bundle(path: Path) -> Classification | None:
    """The bundle's class (None for a clean pass); see :func:`bundle_inputs` for what it reads.

    Raises:
        HarnessError: not a readable bundle.
    """
    return classify(bundle_inputs(path))
