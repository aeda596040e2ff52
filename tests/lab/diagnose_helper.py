"""Run ``python -m harness diagnose`` on a lab runner's real stores, as a user would (the CLI, ``--json``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_diagnose(workdir: Path, cache_dir: Path, home: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, the JSON document, the text report) of diagnose on these stores."""
    base = [sys.executable, "-m", "harness", "diagnose", "--workdir", str(workdir), "--cache-dir", str(cache_dir),
            "--home", str(home), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    as_json = subprocess.run([*base, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
                             env=env)
    assert as_json.returncode in (0, 1), as_json.stderr[-2000:]
    text = subprocess.run(base, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False, env=env)
    assert text.returncode == as_json.returncode, text.stderr[-2000:]
    return as_json.returncode, json.loads(as_json.stdout), text.stdout


def keep_copy(name: str, *paths: Path) -> None:
    """With ``REGRESS_DIAGNOSE_KEEP=DIR``, copy these stores to ``DIR/<name>/`` (how tests/data/diagnose/ was made)."""
    keep = os.environ.get("REGRESS_DIAGNOSE_KEEP")
    if not keep:
        return
    for path in paths:
        target = Path(keep) / name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            shutil.copy2(path, target)
            continue
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(path, target, symlinks=True, ignore_dangling_symlinks=True)
