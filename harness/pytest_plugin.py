"""pytest glue (loaded through the ``pytest11`` entry point): options, markers, fixtures, hooks."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from harness import compare, config
from harness.cell import CellResult, NotRunnable, run_cell
from harness.errors import ConfigError, HarnessError
from harness.evidence import safe_name, write_index
from harness.lab import lab as labs
from harness.paths import labs_dir
from harness.runners import binaries
from harness.scenarios import load, load_all
from harness.target import Target, boot_lab, open_existing, open_lab, plan_lab
from harness.target import runner_keys as target_runner_keys
from harness.versions import Version

log = logging.getLogger("harness.live")
SETTINGS = pytest.StashKey[config.Settings]()
RUN_ID = pytest.StashKey[str]()
PLAN_PROBLEM = pytest.StashKey[str | None]()
NOT_APPLICABLE = pytest.StashKey[dict[str, str]]()
VERSIONS = pytest.StashKey[tuple[Version, ...]]()
GATE = pytest.StashKey[list[compare.GateFinding]]()

MARKERS = (
    "regression: a regression scenario from the upgrade report (fixtures/workflows)",
    "selfcheck: a scenario that exists to prove the judge (lists its expected violations)",
    "lab: needs the lab binaries (forgejo, forgejo-runner); skipped with the reason when they do not resolve",
    "docker: needs a Docker engine",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("forgejo-runner-regress", "Forgejo Actions runner regression suite")
    for opt in config.OPTIONS:
        flag = f"--{opt.name}"
        help_text = f"{opt.help} [env {opt.env}, ini {opt.ini}]"
        if opt.kind == "flag":
            group.addoption(flag, action="store_true", default=False, dest=opt.dest, help=help_text)
        elif opt.kind == "list":
            group.addoption(flag, action="append", default=[], dest=opt.dest, metavar=opt.metavar, help=help_text)
        else:
            group.addoption(flag, action="store", default=None, dest=opt.dest, metavar=opt.metavar, help=help_text)
        parser.addini(opt.ini, help=opt.help, type="linelist" if opt.kind == "list" else "string", default=None)


def _is_worker(cfg: pytest.Config) -> bool:
    return hasattr(cfg, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    try:
        raw = config_raw(config)
        settings = config_build(raw)
    except ConfigError as exc:
        raise pytest.UsageError(f"forgejo-runner-regress: {exc}") from None
    config.stash[SETTINGS] = settings
    if _is_worker(config):
        config.stash[RUN_ID] = config.workerinput["regress_run_id"]  # type: ignore[attr-defined]
    else:
        config.stash[RUN_ID] = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def config_raw(cfg: pytest.Config) -> dict[str, config.Setting]:
    def ini(name: str) -> Any:
        try:
            return cfg.getini(name)
        except ValueError:
            return None

    return config.resolve_raw(lambda dest: cfg.getoption(dest), os.environ, ini)


def config_build(raw: dict[str, config.Setting]) -> config.Settings:
    return config.build(raw, os.environ)


def pytest_configure_node(node: Any) -> None:  # xdist controller → worker
    node.workerinput["regress_run_id"] = node.config.stash[RUN_ID]


# -- collection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellParam:
    """A test parameter: scenario × runner (× repeat)."""

    scenario: str
    runner: str
    repeat: int

    def __str__(self) -> str:
        return f"{self.scenario}-{self.runner}" + (f"-r{self.repeat}" if self.repeat else "")


def _versions(cfg: pytest.Config) -> tuple[Version, ...]:
    settings = cfg.stash[SETTINGS]
    if VERSIONS not in cfg.stash:
        cfg.stash[VERSIONS] = settings.versions_to_run(binaries.available("forgejo-runner"))
    return cfg.stash[VERSIONS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "regress_cell" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    settings = cfg.stash[SETTINGS]
    try:
        scenarios = load_all()
    except ConfigError as exc:
        raise pytest.UsageError(f"forgejo-runner-regress: {exc}") from None
    versions = _versions(cfg)
    params = []
    for scenario in scenarios:
        marks = [getattr(pytest.mark, scenario.expect.marker)]
        if not settings.existing:
            marks.append(pytest.mark.lab)
        if "docker" in scenario.expect.requires or scenario.expect.kind == "docker":
            marks.append(pytest.mark.docker)
        runner_keys = target_runner_keys(settings, versions) or ["no-runner"]
        for key in runner_keys:
            for rep in range(settings.repeat):
                param = CellParam(scenario.name, key, rep)
                params.append(pytest.param(param, marks=marks, id=str(param)))
    metafunc.parametrize("regress_cell", params)


def _selects_regression(cfg: pytest.Config) -> bool:
    expr = cfg.getoption("markexpr", "") or ""
    return bool(re.search(r"\bregression\b", expr)) and not re.search(r"not\s+regression", expr)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SETTINGS]
    lab_items = [i for i in items if i.get_closest_marker("lab")]
    problem: str | None = None
    if lab_items and not settings.existing:
        versions = _versions(config)
        if not versions:
            problem = (f"no forgejo-runner binary in {binaries.bin_dir()} and no --runner-version given; "
                       "put forgejo-runner-<version> there or use --runner-binary VERSION=PATH")
        else:
            try:
                config.stash[NOT_APPLICABLE] = dict(plan_lab(settings, versions).not_applicable)
            except HarnessError as exc:
                problem = str(exc)
    config.stash[PLAN_PROBLEM] = problem
    if problem:
        if _selects_regression(config) and not settings.existing:
            raise pytest.UsageError(
                "forgejo-runner-regress: a regression run was requested but neither --forgejo-url nor the lab "
                f"binaries resolve:\n{problem}"
            )
        first_line = problem.splitlines()[0]
        for item in lab_items:
            item.add_marker(pytest.mark.skip(reason=f"lab binaries missing: {first_line}"))


# -- fixtures -------------------------------------------------------------------------------------


def _notify(cfg: pytest.Config) -> Any:
    reporter = cfg.pluginmanager.get_plugin("terminalreporter")
    verbose = cfg.getoption("verbose", 0) > 0 and not _is_worker(cfg)

    def notify(text: str) -> None:
        log.info(text)
        if verbose and reporter is not None:
            reporter.write_line(f"  … {text}")

    return notify


def _lab_id(cfg: pytest.Config) -> str:
    return "pytest-" + cfg.stash[RUN_ID]


def _workers(cfg: pytest.Config) -> int:
    if _is_worker(cfg):
        return int(cfg.workerinput.get("workercount", 2))  # type: ignore[attr-defined]
    n = cfg.getoption("numprocesses", None)
    return int(n) if isinstance(n, int) else 1


@pytest.fixture(scope="session")
def regress_target(request: pytest.FixtureRequest) -> Target:
    """The Forgejo under test with its runners: the lab (booted once per session, shared by xdist
    workers) or ``--forgejo-url``."""
    cfg = request.config
    settings = cfg.stash[SETTINGS]
    failure = ""
    try:
        if settings.existing:
            return open_existing(settings)
        problem = cfg.stash.get(PLAN_PROBLEM, None)
        if problem:
            pytest.skip(f"lab binaries missing: {problem.splitlines()[0]}")
        versions = _versions(cfg)
        lab_id = _lab_id(cfg)
        labs_dir().mkdir(parents=True, exist_ok=True)
        with FileLock(str(labs_dir() / f"{lab_id}.lock")):
            directory = labs.lab_dir_for(lab_id)
            if (directory / "lab.json").exists():
                lab = labs.Lab.load(directory)
            else:
                plan = plan_lab(settings, versions)
                lab = boot_lab(plan, lab_id, capacity=max(2, _workers(cfg) + 1), seed_actions=settings.seed_actions,
                               notify=_notify(cfg))
        return open_lab(lab)
    except HarnessError as exc:
        failure = str(exc)
    pytest.fail(f"forgejo-runner-regress: the target could not be set up: {failure}", pytrace=False)


@pytest.fixture
def regress_cell(request: pytest.FixtureRequest) -> CellParam:
    """The cell parameter of a scenario test."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def regress_run(request: pytest.FixtureRequest, regress_target: Target, regress_cell: CellParam) -> CellResult:
    """Run the cell (push, watch, observe, judge, evidence) and record its result."""
    cfg = request.config
    settings = cfg.stash[SETTINGS]
    scenario = load(regress_cell.scenario)
    na = cfg.stash.get(NOT_APPLICABLE, {}).get(regress_cell.runner)
    if na:
        pytest.skip(f"{regress_cell.runner}: {na}")
    handle = regress_target.runners.get(regress_cell.runner)
    if handle is None:
        pytest.skip(f"no runner {regress_cell.runner} in this target")
    run_dir = settings.evidence_dir / cfg.stash[RUN_ID]
    test_id = safe_name(request.node.name)
    try:
        result = run_cell(regress_target, scenario, handle, run_dir / test_id, evidence=settings.evidence,
                          keep_repo=settings.keep_repos, setup_budget=settings.setup_budget, notify=_notify(cfg),
                          log_command=settings.runner_log_command, stall_command=settings.runner_stall_command)
    except NotRunnable as exc:
        pytest.skip(f"{scenario.name} is not runnable on runner {handle.key}: {exc}")
    cells = run_dir / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    (cells / f"{test_id}.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    props = request.node.user_properties
    props.append(("runner_version", result.version))
    props.append(("forgejo_version", str(regress_target.server_version)))
    props.append(("scenario", result.scenario))
    props.append(("label", result.label))
    for key, value in result.timings.items():
        props.append((f"timing_{key}", value))
    if result.verdict is not None:
        props.append(("job", str(result.verdict.job_status)))
        props.append(("violations", ",".join(result.verdict.rules()) or "none"))
    if result.bundle:
        props.append(("evidence", str(result.bundle)))
    return result


def assert_cell(result: CellResult) -> None:
    """Fail the test with the verdict table (never a traceback) unless the cell passed."""
    __tracebackhide__ = True
    where = f"\nevidence: {result.bundle}" if result.bundle else ""
    if result.error:
        table = f"\n{result.verdict.table()}" if result.verdict else ""
        pytest.fail(f"{result.scenario} on runner {result.runner_key}: {result.error}{table}{where}", pytrace=False)
    assert result.verdict is not None
    if result.selfcheck_problem:
        pytest.fail(f"selfcheck {result.scenario} on runner {result.runner_key}: {result.selfcheck_problem}\n"
                    f"{result.verdict.table()}{where}", pytrace=False)
    if not result.passed:
        pytest.fail(f"{result.scenario} on runner {result.runner_key} (label {result.label}):\n"
                    f"{result.verdict.table()}{where}", pytrace=False)


# -- reporting ----------------------------------------------------------------------------------------


def _run_dir(cfg: pytest.Config) -> Path:
    return cfg.stash[SETTINGS].evidence_dir / cfg.stash[RUN_ID]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    cfg = session.config
    if _is_worker(cfg):
        return
    settings = cfg.stash[SETTINGS]
    run_dir = _run_dir(cfg)
    cells = compare.load_cells(run_dir / "cells") if (run_dir / "cells").is_dir() else []
    if cells:
        (run_dir / "report.md").write_text("# Runner comparison\n\n" + compare.markdown_table(cells))
        (run_dir / "report.json").write_text(json.dumps(
            [json.loads(p.read_text()) for p in sorted((run_dir / "cells").glob("*.json"))], indent=2))
        write_index(run_dir)
    if settings.save_baseline is not None and cells:
        records = [json.loads(p.read_text()) for p in sorted((run_dir / "cells").glob("*.json"))]
        settings.save_baseline.parent.mkdir(parents=True, exist_ok=True)
        settings.save_baseline.write_text(json.dumps({"schema": "forgejo-runner-regress/baseline/1",
                                                      "cells": records}, indent=2))
    baseline_key = str(settings.baseline) if settings.baseline else None
    if settings.compare_baseline is not None:
        try:
            stored = compare.load_baseline(settings.compare_baseline)
        except ValueError as exc:
            raise pytest.UsageError(f"forgejo-runner-regress: --compare-baseline: {exc}") from None
        keys = sorted({c.runner for c in stored})
        baseline_key = baseline_key if baseline_key in keys else (keys[0] if len(keys) == 1 else None)
        if baseline_key is None:
            raise pytest.UsageError(f"forgejo-runner-regress: {settings.compare_baseline} holds runners {keys}; "
                                    "name the one to compare with --baseline")
        cells = [c for c in stored if c.runner == baseline_key] + [c for c in cells if c.runner != baseline_key]
    if baseline_key is not None and settings.candidate is not None and cells:
        findings = compare.gate(cells, baseline_key, str(settings.candidate), settings.gate_on)
        cfg.stash[GATE] = findings
        (run_dir / "gate.json").write_text(json.dumps([f.__dict__ for f in findings], indent=2))
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if compare.gate_failed(findings) else pytest.ExitCode.OK


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _is_worker(config) or RUN_ID not in config.stash:
        return
    directory = labs.lab_dir_for(_lab_id(config))
    if (directory / "lab.json").exists():
        try:
            leaks = labs.Lab.load(directory).down()
        except HarnessError as exc:
            leaks = [str(exc)]
        if leaks:
            print(f"forgejo-runner-regress: lab clean-up left: {', '.join(leaks)}")
    lock = labs_dir() / f"{_lab_id(config)}.lock"
    if lock.exists():
        lock.unlink()


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS]
    shown = []
    for name, setting in settings.sources.items():
        if setting.source != "default":
            value = setting.value
            shown.append(f"{name}={value} ({setting.source})")
    target = settings.forgejo_url or f"lab (bin dir {binaries.bin_dir()})"
    versions = ", ".join(str(v) for v in _versions(config)) or "none found"
    return [f"forgejo-runner-regress: target {target}; runner versions {versions}"] + (
        [f"  {line}" for line in shown])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _is_worker(config) or RUN_ID not in config.stash:
        return
    run_dir = _run_dir(config)
    if not (run_dir / "report.md").exists():
        return
    terminalreporter.section("forgejo-runner-regress: scenario × runner")
    for line in (run_dir / "report.md").read_text().splitlines()[2:]:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"report: {run_dir / 'report.md'} (and report.json, index.md)")
    findings = config.stash.get(GATE, None)
    if findings is not None:
        settings = config.stash[SETTINGS]
        base = settings.baseline or f"golden {settings.compare_baseline}"
        terminalreporter.section(f"upgrade gate: {base} → {settings.candidate}")
        for f in findings:
            terminalreporter.write_line(f"{f.kind:>14}: {f.scenario} — {f.why}")
        verdict = "FAILED (a scenario regressed)" if compare.gate_failed(findings) else "passed (nothing regressed)"
        terminalreporter.write_line(f"gate {verdict}")
