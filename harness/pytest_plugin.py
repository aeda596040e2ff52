"""pytest glue (loaded through the ``pytest11`` entry point): options, markers, fixtures, hooks."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from filelock import FileLock

from harness import compare, config, identity, report, warmup
from harness import conditions as conditions_mod
from harness.budgets import BUDGETS
from harness.cell import CellResult, NotRunnable, run_cell
from harness.errors import ConfigError, HarnessError
from harness.evidence import safe_name
from harness.faults.table import fault_lines
from harness.lab import lab as labs
from harness.lab.forgejo import ZombieSettings
from harness.outcome import Outcome
from harness.paths import labs_dir
from harness.pool import CellPool, PoolCell, pooled
from harness.runners import binaries
from harness.scenarios import Catalogue, KnownBug, Scenario
from harness.target import (
    RunnerHandle,
    Target,
    boot_lab,
    load_runner_config,
    open_existing,
    open_lab,
    plan_lab,
    private_handle,
    raised_zombie,
)
from harness.target import runner_keys as target_runner_keys
from harness.versions import Version

log = logging.getLogger("harness.live")
SETTINGS = pytest.StashKey[config.Settings]()
RUN_ID = pytest.StashKey[str]()
PLAN_PROBLEM = pytest.StashKey[str | None]()
NOT_APPLICABLE = pytest.StashKey[dict[str, str]]()
HASHES = pytest.StashKey[dict[tuple[str, str], "str | None"]]()
VERSIONS = pytest.StashKey[tuple[Version, ...]]()
CATALOGUE = pytest.StashKey[Catalogue]()
CONDITIONS = pytest.StashKey[dict[str, "conditions_mod.Condition"]]()
ACTIVE = pytest.StashKey[bool]()  # a scenario cell was collected or an option of ours was given
HEADER_SHOWN = pytest.StashKey[bool]()
TESTS = pytest.StashKey[dict[str, report.ReportedTest]]()
FINISHED = pytest.StashKey[report.SessionReport]()

MARKERS = (  # the one place markers are registered: a user's project with --strict-markers gets them too
    "regression: a regression scenario from the upgrade report (fixtures/workflows; selects the product run)",
    "selfcheck: a scenario that exists to prove the judge (it lists its expected violations)",
    "lab: needs the lab binaries (forgejo and forgejo-runner); skipped with the reason when they do not resolve",
    "docker: needs a Docker engine (the user's or the lab's dockerd)",
    "faults: a scenario that disturbs its private runner's surroundings (fault proxy, heavy actions) and names the "
    "failure class it expects per version",
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
    """Markers always (a user's project gets them too); settings only when an option of ours is
    given (command line, environment or ini): otherwise the plugin stays quiet until a scenario
    cell is collected — no directory created, no bin dir scanned."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    if _is_worker(config):
        config.stash[RUN_ID] = config.workerinput["regress_run_id"]  # type: ignore[attr-defined]
    else:
        config.stash[RUN_ID] = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    config.stash[TESTS] = {}
    if not _is_worker(config):
        config.pluginmanager.register(_TestLog(config), "forgejo-runner-regress-testlog")
    raw = config_raw(config)
    given = any(setting.source != "default" for setting in raw.values())
    config.stash[ACTIVE] = given
    if given:
        _settings(config, raw)
        try:
            _conditions(config)  # a bad condition file is a usage error before anything is collected
        except ConfigError as exc:
            raise pytest.UsageError(f"forgejo-runner-regress: {exc}") from None


def _settings(cfg: pytest.Config, raw: dict[str, config.Setting] | None = None) -> config.Settings:
    """The validated settings, built on first use (a bad value is a usage error naming the option)."""
    if SETTINGS not in cfg.stash:
        try:
            cfg.stash[SETTINGS] = config_build(raw if raw is not None else config_raw(cfg))
        except ConfigError as exc:
            raise pytest.UsageError(f"forgejo-runner-regress: {exc}") from None
    return cfg.stash[SETTINGS]


def _active(cfg: pytest.Config) -> bool:
    return cfg.stash.get(ACTIVE, False)


def config_raw(cfg: pytest.Config) -> dict[str, config.Setting]:
    def ini(name: str) -> Any:
        try:
            return cfg.getini(name)
        except ValueError:
            return None

    return config.resolve_raw(lambda dest: cfg.getoption(dest), os.environ, ini)


def config_build(raw: dict[str, config.Setting]) -> config.Settings:
    settings = config.build(raw, os.environ)
    config.check_evidence_dir(settings)  # only once the plugin is active: a quiet run creates nothing
    return settings


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:  # xdist controller → worker (absent with -p no:xdist)
    node.workerinput["regress_run_id"] = node.config.stash[RUN_ID]


# -- collection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellParam:
    """A test parameter: scenario × runner × condition (× repeat)."""

    scenario: str
    runner: str
    repeat: int
    condition: str = ""  # --condition NAME ("" for none): its own part of the id, never the runner key's

    def __str__(self) -> str:
        return (f"{self.scenario}-{self.runner}" + (f"@{self.condition}" if self.condition else "")
                + (f"-r{self.repeat}" if self.repeat else ""))


def _versions(cfg: pytest.Config) -> tuple[Version, ...]:
    settings = _settings(cfg)
    if VERSIONS not in cfg.stash:
        cfg.stash[VERSIONS] = settings.versions_to_run(binaries.available("forgejo-runner"))
    return cfg.stash[VERSIONS]


def _catalogue(cfg: pytest.Config) -> Catalogue:
    """The suite's scenarios plus ``--scenario-dir`` (built once; a bad dir is a usage error)."""
    if CATALOGUE not in cfg.stash:
        try:
            cfg.stash[CATALOGUE] = Catalogue.build(_settings(cfg).scenario_dirs)
        except ConfigError as exc:
            raise pytest.UsageError(f"forgejo-runner-regress: {exc}") from None
    return cfg.stash[CATALOGUE]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "regress_cell" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    cfg.stash[ACTIVE] = True
    settings = _settings(cfg)
    try:
        scenarios = _catalogue(cfg).all()
    except ConfigError as exc:
        raise pytest.UsageError(f"forgejo-runner-regress: {exc}") from None
    versions = _versions(cfg)
    try:  # a config axis's env: (a known bug's mitigation); the file itself is checked again when the lab boots
        axis_env = {name: load_runner_config(path)[1] for name, path in settings.runner_configs.items()}
        conditions = _conditions(cfg)
    except ConfigError as exc:
        raise pytest.UsageError(f"forgejo-runner-regress: {exc}") from None
    params = []
    for scenario, _condition in _cells_of(scenarios, conditions, []):  # what is not applied: the header says
        marks = [getattr(pytest.mark, scenario.expect.marker)]
        if not settings.existing:
            marks.append(pytest.mark.lab)
        if "docker" in scenario.expect.requires or scenario.expect.kind == "docker":
            marks.append(pytest.mark.docker)
        runner_keys = target_runner_keys(settings, versions) or ["no-runner"]
        for key in runner_keys:
            bug_marks = _known_bug_marks(scenario.expect.known_bug, key, axis_env.get(key.partition("-")[2], {}))
            for rep in range(settings.repeat):
                param = CellParam(scenario.name, key, rep, scenario.condition)
                params.append(pytest.param(param, marks=marks + bug_marks, id=str(param)))
    metafunc.parametrize("regress_cell", params)


def _conditions(cfg: pytest.Config) -> dict[str, conditions_mod.Condition]:
    """The session's ``--condition``s, parsed once (a bad file is a usage error naming it)."""
    if CONDITIONS not in cfg.stash:
        cfg.stash[CONDITIONS] = conditions_mod.load_all(_settings(cfg).conditions)
    return cfg.stash[CONDITIONS]


def _cells_of(scenarios: list[Scenario], conditions: Mapping[str, conditions_mod.Condition],
              not_applied: list[str]) -> Iterator[tuple[Scenario, conditions_mod.Condition | None]]:
    """Every scenario as it is, then every regression scenario under each condition (its expectation with the
    condition's block); a scenario the condition cannot apply to (it has a fault of its own, no remote action to
    fetch slowly) is said in ``not_applied`` (the header), not run."""
    for scenario in scenarios:
        yield scenario, None
    for condition in conditions.values():
        for scenario in scenarios:
            if scenario.expect.marker != "regression":
                continue
            try:
                yield condition.apply(scenario), condition
            except ConfigError as exc:
                not_applied.append(str(exc))


def _hash(cfg: pytest.Config, cell: CellParam) -> str | None:
    """The cell's scenario hash (its files, stand-in actions, condition, the suite's version), once per scenario."""
    hashes = cfg.stash.setdefault(HASHES, {})
    key = (cell.scenario, cell.condition)
    if key not in hashes:
        try:
            block = _conditions(cfg)[cell.condition].block if cell.condition else None
            hashes[key] = identity.scenario_hash(_catalogue(cfg).load(cell.scenario), block)
        except (ConfigError, OSError):
            hashes[key] = None
    return hashes[key]


def _stamp(cfg: pytest.Config, cell: CellParam) -> dict[str, Any]:
    """A record's identity: session, host, repeat (of how many), scenario hash (harness.identity)."""
    return identity.stamp(cfg.stash[RUN_ID], cell.repeat, _settings(cfg).repeat, _hash(cfg, cell))


def _scenario(cfg: pytest.Config, name: str, condition: str) -> Scenario:
    """A cell's scenario, under its condition when it has one."""
    scenario = _catalogue(cfg).load(name)
    return _conditions(cfg)[condition].apply(scenario) if condition else scenario


class KnownBugReproduced(Exception):
    """A cell failed with its scenario's known bug, on a version that has it (the test's strict xfail)."""


def _known_bug_marks(bug: KnownBug | None, runner_key: str,
                     axis_env: Mapping[str, str] | None = None) -> list[pytest.MarkDecorator]:
    """A strict xfail on the versions with the scenario's known bug: only that bug's failure makes it xfail, an
    unexpected pass fails it (XPASS strict), any other failure or an inconclusive cell fails it as usual. A config
    axis whose ``env:`` names the bug's mitigation (``fixed_by_env``) is judged plainly."""
    try:
        version = Version.parse(runner_key.split("-", 1)[0])
    except ValueError:
        return []
    if bug is None or not bug.applies_to(version, axis_env or {}):
        return []
    return [pytest.mark.xfail(strict=True, raises=KnownBugReproduced, reason=bug.describe())]


def _cell_param(item: pytest.Item) -> CellParam | None:
    """The scenario × runner cell a collected test runs, if it is one."""
    param = getattr(getattr(item, "callspec", None), "params", {}).get("regress_cell")
    return param if isinstance(param, CellParam) else None


def _selects_regression(cfg: pytest.Config) -> bool:
    expr = cfg.getoption("markexpr", "") or ""
    return bool(re.search(r"\bregression\b", expr)) and not re.search(r"not\s+regression", expr)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _active(config):
        return
    settings = _settings(config)
    for item in items:
        param = _cell_param(item)
        if param is not None:  # travels with every report (xdist too): the gate knows each cell's test
            item.user_properties.extend([("scenario", param.scenario), ("runner", param.runner),
                                         ("repeat", param.repeat), ("scenario_hash", _hash(config, param))])
            if param.condition:
                item.user_properties.append(("condition", param.condition))
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
    _deselect_fault_cells(config, items)
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


def _deselect_fault_cells(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``-m``/``-k`` naming them, the default run keeps only the fault scenarios marked ``ci: true``."""
    if config.getoption("markexpr", "") or config.getoption("keyword", ""):
        return
    catalogue = _catalogue(config)
    dropped = []
    for item in items:
        param = _cell_param(item)
        if param is None or not item.get_closest_marker("faults"):
            continue
        spec = catalogue.load(param.scenario).expect.fault
        if spec is not None and not spec.ci:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in dropped]


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
    settings = _settings(cfg)
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
                               notify=_notify(cfg), actions_url=settings.actions_url)
        return open_lab(lab)
    except HarnessError as exc:
        failure = str(exc)
    pytest.fail(f"forgejo-runner-regress: the target could not be set up: {failure}", pytrace=False)


@pytest.fixture
def regress_cell(request: pytest.FixtureRequest) -> CellParam:
    """The cell parameter of a scenario test."""
    return request.param  # type: ignore[no-any-return]


def _skip_cell(request: pytest.FixtureRequest, cell: CellParam, reason: str) -> NoReturn:
    """Record the cell as skipped (the table and the gate see it), then skip the test."""
    report.write_record(_run_dir(request.config), request.node.name,
                        {**report.skipped_record(cell.scenario, cell.runner, reason, request.node.nodeid,
                                                 cell.condition), **_stamp(request.config, cell)})
    request.node.user_properties.extend([("outcome", str(Outcome.SKIPPED)), ("reason", reason)])
    pytest.skip(reason)


def _run(cfg: pytest.Config, target: Target, cell: PoolCell, handle: RunnerHandle) -> CellResult:
    settings = _settings(cfg)
    scenario = _scenario(cfg, cell.scenario, cell.condition)
    condition = _conditions(cfg)[cell.condition] if cell.condition else None
    budgets = condition.budgets(BUDGETS) if condition is not None else BUDGETS

    def one(on: RunnerHandle, bundle_dir: Path, evidence: str) -> CellResult:
        result = run_cell(target, scenario, on, bundle_dir, evidence=evidence, keep_repo=settings.keep_repos,
                          setup_budget=settings.setup_budget, notify=_notify(cfg),
                          log_command=settings.runner_log_command, stall_command=settings.runner_stall_command,
                          kill_for_dump=settings.kill_for_dump,
                          budgets=budgets, condition=condition.to_json() if condition is not None else None)
        return result

    bundle_dir = _run_dir(cfg) / safe_name(cell.id)
    # the warm-up runs on the same handle: the lane's or worker's runner stays the cell's
    return warmup.run(scenario, handle, bundle_dir, warm_up=settings.warm_up, repos=settings.warm_up_repos,
                      evidence=settings.evidence, run_one=one)


@pytest.fixture(scope="session")
def regress_pool(request: pytest.FixtureRequest, regress_target: Target) -> Iterator[CellPool | None]:
    """With ``--lanes N`` (not under xdist): every cell of the session pushed together and watched from this
    process, never two at once on one runner; each test then waits for its own cell. Else None."""
    cfg = request.config
    lanes = _settings(cfg).lanes
    if lanes <= 1 or _is_worker(cfg) or _workers(cfg) > 1:
        yield None
        return
    na = cfg.stash.get(NOT_APPLICABLE, {})
    cells = []
    for item in request.session.items:
        param = _cell_param(item)
        if param is not None and param.runner in regress_target.runners and param.runner not in na:
            cells.append(PoolCell(item.name, param.scenario, param.runner, param.condition))
    with pooled(regress_target, lambda cell, handle: _run(cfg, regress_target, cell, handle), cells, lanes=lanes,
                notify=_notify(cfg)) as pool:
        yield pool


@pytest.fixture(scope="session")
def regress_lane(request: pytest.FixtureRequest, regress_target: Target) -> Iterator[dict[str, RunnerHandle]]:
    """Under xdist: worker gw0 runs its cells on the lab's runners, every other worker on private runners of the
    same versions (started on first use, kept for the session), so parallel cells never share a runner."""
    cfg = request.config
    worker = str(getattr(cfg, "workerinput", {}).get("workerid", "gw0"))
    with contextlib.ExitStack() as stack:
        lane: dict[str, RunnerHandle] = _LaneRunners(regress_target, stack, _notify(cfg)) if (
            worker != "gw0" and regress_target.lab is not None) else dict(regress_target.runners)
        yield lane


class _LaneRunners(dict):  # type: ignore[type-arg]
    """Runner key → a private runner of that version, started the first time a cell asks for it."""

    def __init__(self, target: Target, stack: contextlib.ExitStack, notify: Any) -> None:
        super().__init__()
        self.target, self.stack, self.notify = target, stack, notify

    def __missing__(self, key: str) -> RunnerHandle:
        self[key] = private_handle(self.target, self.stack, key, self.notify)
        return self[key]


@pytest.fixture
def regress_run(request: pytest.FixtureRequest, regress_target: Target, regress_cell: CellParam) -> CellResult:
    """Run the cell (push, watch, observe, judge, evidence) and record its result."""
    cfg = request.config
    scenario = _scenario(cfg, regress_cell.scenario, regress_cell.condition)
    na = cfg.stash.get(NOT_APPLICABLE, {}).get(regress_cell.runner)
    if na:
        _skip_cell(request, regress_cell, f"{regress_cell.runner}: {na}")
    handle = regress_target.runners.get(regress_cell.runner)
    if handle is None:
        _skip_cell(request, regress_cell, f"no runner {regress_cell.runner} in this target")
    run_dir = _run_dir(cfg)
    pool = request.getfixturevalue("regress_pool")
    try:
        if pool is not None:
            result = pool.result(request.node.name)
        else:
            lane = request.getfixturevalue("regress_lane")[handle.key]
            result = _run(cfg, regress_target, PoolCell(request.node.name, regress_cell.scenario, handle.key,
                                                        regress_cell.condition), lane)
    except NotRunnable as exc:
        _skip_cell(request, regress_cell, f"{scenario.name} is not runnable on runner {handle.key}: {exc}")
    record = {**result.to_json(), "nodeid": request.node.nodeid, **_stamp(cfg, regress_cell)}
    if result.bundle is not None and result.bundle.is_relative_to(run_dir):
        record["bundle"] = str(result.bundle.relative_to(run_dir))  # a run dir moves (a CI artifact) whole
    report.write_record(run_dir, request.node.name, record)
    props = request.node.user_properties
    props.append(("outcome", str(result.outcome)))
    props.append(("reason", result.reason))
    props.append(("runner_version", result.version))
    props.append(("forgejo_version", str(regress_target.server_version)))
    props.append(("label", result.label))
    for key, value in result.timings.items():
        props.append((f"timing_{key}", value))
    if result.classification is not None:
        props.append(("class", result.classification.name))
    if result.verdict is not None:
        props.append(("job", str(result.verdict.job_status)))
        props.append(("violations", ",".join(result.verdict.rules()) or "none"))
    if result.bundle:
        props.append(("evidence", str(result.bundle)))
    return result


def assert_cell(result: CellResult) -> None:
    """Pass, or fail the test without a traceback: ``fail`` with the verdict table, ``inconclusive``
    with a message starting ``INCONCLUSIVE:`` (our own side failed: a failure, never a skip),
    ``skipped`` as a skip with its reason."""
    __tracebackhide__ = True
    outcome = result.outcome
    if outcome is Outcome.PASS:
        return
    who = f"{result.scenario} on runner {result.runner_key}"
    where = f"\nevidence: {result.bundle}" if result.bundle else ""
    table = f"\n{result.verdict.table()}" if result.verdict is not None else ""
    if outcome is Outcome.SKIPPED:
        pytest.skip(f"{who}: {result.reason}")
    if outcome is Outcome.INCONCLUSIVE:
        pytest.fail(f"INCONCLUSIVE: {result.reason or 'no reason recorded'}\n({who}: our side failed, "
                    f"not the runner){table}{where}", pytrace=False)
    if result.selfcheck_problem:
        kind = "fault" if "fault" in result.observations and result.selfcheck_problem.startswith("fault") \
            else "selfcheck"
        pytest.fail(f"{kind} {who}: {result.selfcheck_problem}{table}{where}", pytrace=False)
    if result.verdict is None:
        pytest.fail(f"{who}: {result.reason}{where}", pytrace=False)
    reproduced = getattr(result, "known_bug_reproduced", None)
    if reproduced is not None and reproduced():
        raise KnownBugReproduced(f"{who}: {result.known_bug.describe()} reproduced:{table}{where}")
    pytest.fail(f"{who} (label {result.label}):{table}{where}", pytrace=False)


# -- reporting ----------------------------------------------------------------------------------------


def _run_dir(cfg: pytest.Config) -> Path:
    return _settings(cfg).evidence_dir / cfg.stash[RUN_ID]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]


def _failure_line(report: pytest.TestReport) -> str:
    """The failure in one line: the exception (``RuntimeError: boom``) rather than the traceback's first line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    return _first_line(crash.message) if crash is not None else _first_line(report.longreprtext)


class _TestLog:
    """Folds each phase's report into one :class:`report.ReportedTest` per test (on the controller
    under xdist, which receives every worker's reports with their user properties)."""

    def __init__(self, cfg: pytest.Config) -> None:
        self.cfg = cfg

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = {p[0]: p[1] for p in report.user_properties if len(p) == 2}
        tests = self.cfg.stash[TESTS]
        run = tests.get(report.nodeid) or _new_run(report.nodeid, props)
        if run.is_cell:
            self.cfg.stash[ACTIVE] = True
        if report.failed:
            run = dataclasses.replace(run, failed=(*run.failed, report.when),
                                      message=run.message or _failure_line(report))
        elif report.skipped:
            longrepr = report.longrepr
            reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else _first_line(
                report.longreprtext)
            run = dataclasses.replace(run, skipped=reason.removeprefix("Skipped: "))
        tests[report.nodeid] = run


def _new_run(nodeid: str, props: dict[str, Any]) -> report.ReportedTest:
    scenario, runner = props.get("scenario"), props.get("runner")
    return report.ReportedTest(nodeid, str(scenario) if scenario else None, str(runner) if runner else None,
                               condition=str(props.get("condition") or ""), repeat=int(props.get("repeat") or 0),
                               scenario_hash=props.get("scenario_hash"))


def _gate_request(settings: config.Settings) -> report.GateRequest | None:
    return report.gate_request(settings.baseline, settings.candidate, settings.gate_on, settings.compare_baseline)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Reports, golden baseline, gate and exit status: :func:`harness.report.finish` decides."""
    cfg = session.config
    if _is_worker(cfg) or not _active(cfg) or cfg.getoption("collectonly", False):
        return  # nothing ran: no report and no gate (--collect-only exits as pytest says)
    settings = _settings(cfg)
    try:
        finished = report.finish(_run_dir(cfg), list(cfg.stash[TESTS].values()), int(session.exitstatus),
                                 gate=_gate_request(settings), save=settings.save_baseline,
                                 session=report.SessionStamp(cfg.stash[RUN_ID], identity.host(), settings.repeat))
    except ValueError as exc:
        raise pytest.UsageError(f"forgejo-runner-regress: --compare-baseline: {exc}") from None
    cfg.stash[FINISHED] = finished
    if finished.exit_status is not None:
        session.exitstatus = pytest.ExitCode(finished.exit_status)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _is_worker(config) or not _active(config):
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


def _header(cfg: pytest.Config) -> list[str]:
    cfg.stash[HEADER_SHOWN] = True
    settings = _settings(cfg)
    shown = [f"  {name}={setting.value} ({setting.source})" for name, setting in settings.sources.items()
             if setting.source != "default"]
    target = settings.forgejo_url or f"lab (bin dir {binaries.bin_dir()})"
    versions = ", ".join(str(v) for v in _versions(cfg)) or "none found"
    return [f"forgejo-runner-regress: target {target}; runner versions {versions}", *shown, *_condition_lines(cfg)]


def _condition_lines(cfg: pytest.Config) -> list[str]:
    """Each condition: what it does, the budgets raised for its cells, the lab's zombie timeout, what it skips."""
    try:
        found = _conditions(cfg)
        scenarios = _catalogue(cfg).all()
    except (ConfigError, pytest.UsageError):
        return []  # said as the usage error at collection
    lines = []
    given = ZombieSettings(zombie_timeout=_settings(cfg).zombie_timeout or "30s")
    zombie = raised_zombie(given, found.values())
    if zombie != given and not _settings(cfg).existing:
        needs = max(found.values(), key=lambda c: c.zombie_timeout() or 0.0)
        lines.append(f"  the lab's ZOMBIE_TASK_TIMEOUT is raised from {given.zombie_timeout} to {zombie.zombie_timeout} "
                     f"for condition {needs.name} (a waiting runner's longest silence, two holds, + 30s)")
    for condition in found.values():
        raised = condition.raised(BUDGETS)
        lines.append(f"  condition {condition.name} ({condition.source}): {condition.describe()}"
                     + (f"; {condition.about}" if condition.about else "")
                     + (f"; raised for its cells: {', '.join(raised)}" if raised else ""))
        not_applied = []
        for scenario in scenarios:
            if scenario.expect.marker != "regression":
                continue
            try:
                condition.apply(scenario)
            except ConfigError as exc:
                not_applied.append(str(exc).split(": ", 1)[-1])
        lines += [f"  condition {condition.name}: not applied: {why}" for why in not_applied]
    return lines


def pytest_report_header(config: pytest.Config) -> list[str]:
    return _header(config) if _active(config) else []


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """The header of a session that turned active by collecting a scenario cell."""
    if not _active(config) or config.stash.get(HEADER_SHOWN, False) or _is_worker(config):
        return []
    return _header(config)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    finished = config.stash.get(FINISHED, None)
    if finished is None:
        return
    run_dir = _run_dir(config)
    for problem in finished.problems:
        terminalreporter.write_line(f"forgejo-runner-regress: {problem}")
    if (run_dir / "report.md").exists():
        terminalreporter.section("forgejo-runner-regress: scenario × runner")
        for line in (run_dir / "report.md").read_text().splitlines()[2:]:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"report: {run_dir / 'report.md'} (and report.json, index.md, report.html)")
    faults = fault_lines(compare.load_records(run_dir / report.CELLS_DIR)[0])
    if faults:
        terminalreporter.section("forgejo-runner-regress: faults (fault × runner → class)")
        for line in faults:
            terminalreporter.write_line(line)
    settings = _settings(config)
    lines = report.summary_lines(finished, str(settings.candidate), settings.compare_baseline)
    if lines:
        terminalreporter.section(lines[0])
        for line in lines[1:]:
            terminalreporter.write_line(line)
