"""Re-run a bundle's scenario on a fresh lab (or ``--forgejo-url``) and compare verdicts; bisect versions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import conditions, warmup
from harness.budgets import BUDGETS
from harness.cell import CellResult, run_cell
from harness.config import Settings
from harness.errors import ConfigError, HarnessError
from harness.evidence import SCHEMA
from harness.outcome import Outcome
from harness.scenarios import Scenario, load
from harness.target import RunnerHandle, boot_lab, open_lab, plan_lab
from harness.versions import Version

Notify = Callable[[str], None]


@dataclass(frozen=True)
class BundleInfo:
    """What a re-run needs from a bundle: the scenario, the verdict, and every option that shaped the cell
    (``options``: raw option values by name, as ``python -m harness rerun`` takes them)."""

    path: Path
    scenario: Scenario
    runner_version: Version
    forgejo_version: Version | None
    rules: tuple[str, ...]
    outcome: str
    without_tools: tuple[str, ...] = ()
    runner_key: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    actions: tuple[Mapping[str, Any], ...] = ()


RERUN_OPTIONS = ("forgejo-version", "runner-binary", "seed-action", "runner-config", "actions-url", "runner-without",
                 "warm-up-repos", "condition")


def _options(manifest: Mapping[str, Any], path: Path, version: str, without: Sequence[str]) -> dict[str, Any]:
    """The bundle's shaping options (older bundles: the runner version, Forgejo version and missing tools)."""
    o = manifest.get("rerun") or {}
    return {
        "forgejo-version": o.get("forgejo_version") or manifest.get("forgejo", {}).get("version"),
        "runner-binary": [f"{version}={o['runner_binary']}"] if o.get("runner_binary") else [],
        "seed-action": list(o.get("seed_action") or []),
        "runner-config": [f"{name}={path / file}" for name, file in (o.get("runner_config") or {}).items()],
        "actions-url": o.get("actions_url"),
        "runner-without": [f"{version}={tool}" for tool in (o.get("runner_without") or without)],
        "warm-up-repos": _warm_up_repos(path),
        "condition": [f"{name}={path / file}" for name, file in (o.get("condition") or {}).items()],
    }


def _warm_up_repos(path: Path) -> int | None:
    """K of a ``--warm-up`` cell (its measured run's bundle holds ``warm-up.json``), else None."""
    try:
        repos = json.loads((path / warmup.WARM_UP_FILE).read_text()).get("repos")
    except (OSError, ValueError, AttributeError):
        return None
    return repos if isinstance(repos, int) and repos >= 2 else None


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
        version = Version.key(str(manifest["runner"]["version"]))
        forgejo = manifest.get("forgejo", {}).get("version")
        rules = tuple(v["rule"] for v in manifest.get("verdict", {}).get("violations", [])
                      if v.get("severity", "fail") == "fail")  # report-only findings are no part of the verdict
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{manifest_file} is incomplete: {exc}") from None
    without = tuple(manifest["runner"].get("without_tools") or ())
    return BundleInfo(path, load(name, path / "scenario"), version, Version.parse(forgejo) if forgejo else None,
                      rules, str(manifest.get("outcome")), without,
                      str((manifest.get("rerun") or {}).get("runner_key") or manifest["runner"].get("key") or version),
                      _options(manifest, path, str(version), without),
                      tuple(a for a in manifest.get("actions") or () if isinstance(a, dict)))


def rerun_values(bundle: BundleInfo, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a re-run: each one given on the command line replaces the bundle's, every other one is
    the bundle's (so a re-run uses the same seeded actions, runner config, actions URL and binaries).

    Raises:
        ConfigError: a seeded copy the bundle names is gone (the fix is named).
    """
    values = {name: given.get(name) or bundle.options.get(name) for name in RERUN_OPTIONS}
    if given.get("no-warm-up"):
        values["warm-up-repos"] = None
    values["warm-up"] = bool(values["warm-up-repos"])  # a warm-up cell is re-run warm, with its K repositories
    if not given.get("seed-action"):
        for item in values.get("seed-action") or ():
            repo, _, where = str(item).partition("=")
            if not Path(where).is_dir():
                raise ConfigError(f"the bundle's seeded copy of {repo} is gone ({where} is not a directory); give "
                                  f"--seed-action={repo}=PATH (the files that ran are in "
                                  f"{bundle.path / 'actions' / repo})")
    return values


def changed_actions(bundle: BundleInfo, new_bundle: Path | None) -> list[str]:
    """Each ``uses:`` whose commit differs between the bundle and the re-run's bundle (empty: the same actions
    ran, or either side does not know)."""
    try:
        new = json.loads((new_bundle / "manifest.json").read_text()).get("actions") or [] if new_bundle else []
    except (OSError, ValueError):
        return []
    now = {a.get("uses"): a.get("commit") for a in new if isinstance(a, dict)}
    return [f"{a['uses']}: {a.get('commit')} then, {now[a['uses']]} now" for a in bundle.actions
            if a.get("uses") in now and a.get("commit") and now[a["uses"]] and a.get("commit") != now[a["uses"]]]


def run_on_lab(settings: Settings, scenario: Scenario, versions: Sequence[Version], *,
               notify: Notify = print) -> dict[str, CellResult]:
    """Boot a lab with ``versions``, run ``scenario`` on each, tear it down; results by runner key.

    Bundles go to ``<evidence dir>/rerun-<id>/``.
    """
    found = conditions.load_all(settings.conditions)
    condition = next(iter(found.values()), None)  # a bundle holds at most one
    if condition is not None:
        scenario = condition.apply(scenario)
    plan = plan_lab(settings, versions)
    lab = boot_lab(plan, f"rerun-{uuid.uuid4().hex[:8]}", capacity=2, seed_actions=settings.seed_actions,
                   notify=notify, actions_url=settings.actions_url)
    results: dict[str, CellResult] = {}
    try:
        target = open_lab(lab)
        out = settings.evidence_dir / f"rerun-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"

        def one(handle: RunnerHandle, bundle_dir: Path, evidence: str) -> CellResult:
            return run_cell(target, scenario, handle, bundle_dir, evidence=evidence, setup_budget=settings.setup_budget,
                            notify=notify, budgets=condition.budgets(BUDGETS) if condition else BUDGETS,
                            condition=condition.to_json() if condition else None)

        for key, handle in target.runners.items():
            notify(f"running {scenario.name} on runner {key}" + (
                f" after {settings.warm_up_repos - 1} warm-up runs" if settings.warm_up else ""))
            path = out / f"{scenario.name}-{key}"
            results[key] = warmup.run(scenario, handle, path, warm_up=settings.warm_up, repos=settings.warm_up_repos,
                                      evidence="always", run_one=one)
    finally:
        leaks = lab.down()
        if leaks:
            notify(f"lab clean-up left: {', '.join(leaks)}")
    return results


def same_verdict(bundle: BundleInfo, result: CellResult) -> tuple[bool, str]:
    """Compare the new verdict with the bundled one: the sets of failing rules (a report-only finding, e.g. a CPU
    figure over its report budget on a busier machine, is said but decides nothing); a run without a verdict never
    matches."""
    if result.verdict is None:
        return False, f"no verdict this time: {result.reason or result.error}"
    new = tuple(v.rule for v in result.verdict.failing)
    noted = sorted({v.rule for v in result.verdict.violations if v.severity == "report"})
    also = f" (report-only this time: {noted})" if noted else ""
    if set(new) == set(bundle.rules):
        return True, f"same verdict: {sorted(new) or 'no violation'}{also}"
    return False, f"different verdict: bundled {sorted(bundle.rules)}, now {sorted(new)}{also}"


@dataclass(frozen=True)
class Probe:
    """One version's answer in a bisect: its outcome and, when not pass or fail, why."""

    outcome: Outcome
    reason: str = ""
    runs: int = 1


@dataclass(frozen=True)
class BisectResult:
    """What a bisect found.

    ``first_bad`` is the first failing version, or None (the bad end passes, or an end is
    inconclusive: ``note`` says which). ``unsure`` lists inconclusive versions just before
    ``first_bad``: the first bad version may be any of them (never counted as bad).
    """

    first_bad: Version | None
    tested: Mapping[str, Probe]
    unsure: tuple[Version, ...] = ()
    note: str = ""

    @property
    def exact(self) -> bool:
        """True when one version was pinned down."""
        return self.first_bad is not None and not self.unsure


CellRunner = Callable[[Version], Any]  # runs the scenario on one version: an object with .outcome and .reason


def _probe(run: CellRunner, version: Version, notify: Notify) -> Probe:
    """Run one version; an inconclusive answer (or a lab that did not boot) is re-run once."""
    outcome, reason = Outcome.INCONCLUSIVE, ""
    for attempt in (1, 2):
        try:
            result = run(version)
            outcome, reason = Outcome(result.outcome), str(result.reason or "")
        except HarnessError as exc:
            outcome, reason = Outcome.INCONCLUSIVE, f"the lab run failed: {str(exc).splitlines()[0]}"
        if outcome is not Outcome.INCONCLUSIVE:
            break
        notify(f"{version}: inconclusive ({reason})" + ("; running it once more" if attempt == 1 else ""))
    word = {Outcome.PASS: "good", Outcome.FAIL: "bad"}.get(outcome, f"{outcome}, neither good nor bad")
    notify(f"{version}: {word}")
    return Probe(outcome, "" if outcome in (Outcome.PASS, Outcome.FAIL) else reason, attempt)


def bisect_versions(run: CellRunner, scenario: str, versions: Sequence[Version], *,
                    notify: Notify = print) -> BisectResult:
    """First version (in order) where ``run`` fails, by binary search; inconclusive versions are
    left out of the search like ``git bisect skip`` and never marked bad.

    Raises:
        HarnessError: the good end fails too (nothing to bisect).
    """
    tested: dict[str, Probe] = {}

    def probe(i: int) -> Outcome:
        key = str(versions[i])
        if key not in tested:
            tested[key] = _probe(run, versions[i], notify)
        return tested[key].outcome

    lo, hi = 0, len(versions) - 1
    end = probe(hi)
    if end is Outcome.PASS:
        return BisectResult(None, tested, note=f"{versions[hi]} passes {scenario}: nothing to bisect")
    if end is not Outcome.FAIL:
        return BisectResult(None, tested, note=f"the bad version {versions[hi]} is {end}: "
                                               f"{tested[str(versions[hi])].reason}")
    start = probe(lo)
    if start is Outcome.FAIL:
        raise HarnessError(f"the good version {versions[lo]} fails {scenario} too; nothing to bisect")
    if start is not Outcome.PASS:
        return BisectResult(None, tested, note=f"the good version {versions[lo]} is {start}: "
                                               f"{tested[str(versions[lo])].reason}")
    skipped: set[int] = set()
    while inner := [i for i in range(lo + 1, hi) if i not in skipped]:
        mid = min(inner, key=lambda i: abs(i - (lo + hi) / 2))
        answer = probe(mid)
        if answer is Outcome.PASS:
            lo = mid
        elif answer is Outcome.FAIL:
            hi = mid
        else:
            skipped.add(mid)
    unsure = tuple(versions[i] for i in range(lo + 1, hi))
    note = (f"the first bad version is one of {', '.join(map(str, unsure))} (inconclusive) or {versions[hi]}"
            if unsure else "")
    return BisectResult(versions[hi], tested, unsure, note)


def bisect(settings: Settings, scenario: Scenario, versions: Sequence[Version], *,
           notify: Notify = print) -> BisectResult:
    """:func:`bisect_versions` with each version run on a fresh lab."""

    def run(version: Version) -> CellResult:
        return run_on_lab(settings, scenario, [version], notify=notify)[str(version)]

    return bisect_versions(run, scenario.name, versions, notify=notify)
