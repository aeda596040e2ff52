"""A pytest plugin for a lab test's inner session (``-p tests.lab.diagnose_at_teardown``): before the session's lab
is torn down, run ``python -m harness diagnose --json`` on each of its runners' real stores and write
``<REGRESS_DIAGNOSE_OUT>/<runner key>.json`` and ``.txt`` (and the exit code in ``.rc``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.lab import lab as labs
from harness.pytest_plugin import _lab_id

from .diagnose_helper import keep_copy, run_diagnose


@pytest.hookimpl(tryfirst=True)  # the plugin's own pytest_unconfigure (trylast) tears the lab down
def pytest_unconfigure(config: pytest.Config) -> None:
    out = os.environ.get("REGRESS_DIAGNOSE_OUT")
    if not out or hasattr(config, "workerinput"):
        return
    try:
        directory = labs.lab_dir_for(_lab_id(config))
    except KeyError:
        return
    if not (directory / "lab.json").exists():
        return
    lab = labs.Lab.load(directory)
    for key, runner in lab.runners.items():
        code, found, report = run_diagnose(runner.workdir, runner.cache_dir, runner.home)
        target = Path(out)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{key}.json").write_text(json.dumps(found, indent=1))
        (target / f"{key}.txt").write_text(report)
        (target / f"{key}.rc").write_text(str(code))
        keep_copy(f"warm-up-{key}", runner.cache_dir / "bolt.db")
