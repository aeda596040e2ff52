"""Re-run a bundle's scenario on a fresh lab (or ``--forgejo-url``) and compare verdicts; bisect versions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cell import CellResult, run_cell
from harness.config import Settings
from harness.errors import ConfigError, HarnessError
from harness.evidence import SCHEMA
from harness.scenarios import Scenario, load
from harness.target import boot_lab, open_lab, plan_lab
from harness.versions import Version

Notify = Callable[[str], None]


@dataclass(frozen=True)
class BundleInfo:
    """What a re-run needs from a bundle."""

    path: Path
    scenario: Scenario
    runner_version: Version
    forgejo_version: Version | None
    rules: tuple[str, ...]
    outcome: str
    without_tools: tuple[str, ...] = ()


def read_bundle(path: Path) -> BundleInfo:
    """Parse a bundle directory.

    Raises:
        ConfigError: not a bundle of this suite, or incomplete.
    """
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise ConfigError(f"{path} is not an evidence bundle (no manifest.json)")
    try:
        manifest: dict[str, Any] = json.loads(manifest_file.read_text())
    except ValueError as exc:
        raise ConfigError(f"{manifest_file} is corrupt: {exc}") from None
    if manifest.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not a forgejo-runner-regress bundle (schema {manifest.get('schema')!r})")
    name = str(manifest.get("scenario", ""))
    if not (path / "scenario" / name / "workflow.yml").is_file():
        raise ConfigError(f"{path} lacks scenario/{name}/ (the scenario as used); it cannot be re-run")
    try:
        version = Version.parse(str(manifest["runner"]["version"]))
        forgejo = manifest.get("forgejo", {}).get("version")
        rules = tuple(v["rule"] for v in manifest.get("verdict", {}).get("violations", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{manifest_file} is incomplete: {exc}") from None
    return BundleInfo(path, load(name, path / "scenario"), version, Version.parse(forgejo) if forgejo else None,
                      rules, str(manifest.get("outcome")), tuple(manifest["runner"].get("without_tools") or ()))


def run_on_lab(settings: Settings, scenario: Scenario, versions: Sequence[Version], *,
               notify: Notify = print) -> dict[str, CellResult]:
    """Boot a lab with ``versions``, run ``scenario`` on each, tear it down; results by runner key.

    Bundles go to ``<evidence dir>/rerun-<id>/``.
    """
    plan = plan_lab(settings, versions)
    lab = boot_lab(plan, f"rerun-{uuid.uuid4().hex[:8]}", capacity=2, seed_actions=settings.seed_actions,
                   notify=notify)
    results: dict[str, CellResult] = {}
    try:
        target = open_lab(lab)
        out = settings.evidence_dir / f"rerun-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        for key, handle in target.runners.items():
            notify(f"running {scenario.name} on runner {key}")
            results[key] = run_cell(target, scenario, handle, out / f"{scenario.name}-{key}", evidence="always",
                                    setup_budget=settings.setup_budget, notify=notify)
    finally:
        leaks = lab.down()
        if leaks:
            notify(f"lab clean-up left: {', '.join(leaks)}")
    return results


def same_verdict(bundle: BundleInfo, result: CellResult) -> tuple[bool, str]:
    """Compare the new verdict with the bundled one (rule sets; errors never match)."""
    if result.verdict is None:
        return False, f"no verdict this time: {result.error}"
    new = tuple(result.verdict.rules())
    if set(new) == set(bundle.rules):
        return True, f"same verdict: {sorted(new) or 'no violation'}"
    return False, f"different verdict: bundled {sorted(bundle.rules)}, now {sorted(new)}"


def bisect(settings: Settings, scenario: Scenario, versions: Sequence[Version], *,
           notify: Notify = print) -> tuple[Version | None, dict[str, bool]]:
    """First version (in order) where the scenario fails, by binary search; every tested version's outcome."""
    tested: dict[str, bool] = {}

    def passes(version: Version) -> bool:
        key = str(version)
        if key not in tested:
            result = run_on_lab(settings, scenario, [version], notify=notify)[key]
            tested[key] = result.passed
            notify(f"{version}: {'good' if result.passed else 'bad'}")
        return tested[key]

    lo, hi = 0, len(versions) - 1
    if passes(versions[hi]):
        return None, tested
    if not passes(versions[lo]):
        raise HarnessError(f"the good version {versions[lo]} fails {scenario.name} too; nothing to bisect")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(versions[mid]):
            lo = mid
        else:
            hi = mid
    return versions[hi], tested
