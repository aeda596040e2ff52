"""Scenarios: ``fixtures/workflows/<name>/`` = workflow template + ``expect.yml`` + ``README.md``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError
from harness.faults.heavy_action import HeavySpec
from harness.faults.proxy import DEFAULT_RPCS, HOLDABLE_RPCS, MODES, TIMING_MODES, Fault, Trigger
from harness.forgejo.models import Status
from harness.versions import Version

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = ROOT / "fixtures" / "workflows"
ACTIONS_DIR = ROOT / "fixtures" / "actions"
LABEL_PLACEHOLDER = "__RUNS_ON__"
SLOW_ACTIONS_PLACEHOLDER = "__SLOW_ACTIONS_URL__"  # `uses: __SLOW_ACTIONS_URL__/owner/name@ref` (slow_actions)
KINDS = ("native", "docker")
MARKERS = ("regression", "selfcheck", "faults")
SEVERITIES = ("fail", "report")
REQUIREMENTS = ("docker", "buildx", "buildkit", "privileged", "lab")
CHANGES = ("descendant", "orphan", "add_refs")  # what a phase may do to an action repository (ActionChange)


@dataclass(frozen=True)
class Budget:
    """An observation budget: a limit and what exceeding it does (``fail`` or ``report``)."""

    limit: float
    severity: str = "report"


@dataclass(frozen=True)
class RunnerControl:
    """Fault injection: send ``signal`` to the lab runner when ``on_log`` appears in the job log."""

    on_log: str
    signal: str = "KILL"


@dataclass(frozen=True)
class HeavyActions:
    """``heavy_actions:`` (heavy stand-ins, :mod:`harness.faults.heavy_action`, seeded into the lab when the
    cell runs, never at boot) and ``setup_budget_relative:`` ("Set up job" of each job against ``factor`` ×
    that of a one-job baseline workflow of the scenario folder, run first on the same runner)."""

    repos: tuple[str, ...]
    shape: HeavySpec
    baseline: str | None = None  # a workflow file name in the scenario folder, without .yml
    factor: float | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> HeavyActions | None:
        """The two keys of expect.yml (None when the scenario has neither).

        Raises:
            ConfigError: malformed keys, or a relative budget without heavy actions.
        """
        heavy, relative = data.get("heavy_actions"), data.get("setup_budget_relative")
        if heavy is None and relative is None:
            return None
        if not isinstance(heavy, Mapping) or set(heavy) != {"repos", "shape"}:
            raise ConfigError(f"{where}: heavy_actions takes repos (owner/name, seeded when the cell runs) and shape "
                              "(refs, commits, bundle_kb, churn, ref_kind, marker)")
        repos = tuple(str(r) for r in heavy["repos"] or ())
        if not repos or any(r.count("/") != 1 for r in repos):
            raise ConfigError(f"{where}: heavy_actions.repos must list owner/name repositories")
        shape = HeavySpec.parse(dict(heavy["shape"] or {}), f"{where}: heavy_actions.shape")
        if relative is None:
            return cls(repos, shape)
        if not isinstance(relative, Mapping) or set(relative) != {"baseline", "factor"}:
            raise ConfigError(f"{where}: setup_budget_relative takes baseline (a one-job workflow of this folder, "
                              "without .yml) and factor")
        try:
            factor = float(relative["factor"])
        except (TypeError, ValueError):
            factor = 0.0
        if factor <= 0:
            raise ConfigError(f"{where}: setup_budget_relative.factor must be a positive number")
        return cls(repos, shape, str(relative["baseline"]), factor)


@dataclass(frozen=True)
class ActionChange:
    """Before a phase: a change pushed to the cell's copy of an action (:mod:`harness.faults.action_repo`).

    ``descendant``: a new commit on ``main`` (a child of the current one), the ``tags`` re-pointed to it;
    ``orphan``: ``main`` force-pushed to a new root commit, the ``tags`` re-pointed to it; ``add_refs``:
    ``count`` new tags on the current commit. A new commit's ``version`` file holds the phase's name.
    """

    kind: str
    action: str  # owner/name as the workflow's ``uses:`` names it
    tags: tuple[str, ...] = ("v1",)
    count: int = 0


@dataclass(frozen=True)
class Phase:
    """One run of a phased cell; its changes are pushed before it (the first phase runs on the seeded action)."""

    name: str
    changes: tuple[ActionChange, ...] = ()


_BOUND = re.compile(r"^\s*(<=|>=|==|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class KnownBug:
    """A bug of some runner versions that the scenario reproduces: on those versions the test is a strict
    xfail when the cell fails with ``failure_class`` (the cell record, the table and the gate still see ``fail``)."""

    versions: str  # e.g. "<12.0.0" or ">=11.0.0, <12.0.0"
    failure_class: str
    link: str = ""
    fixed_by_env: tuple[str, ...] = ()  # a runner whose config axis sets one of these variables (the admin's
    # mitigation, e.g. FORGEJO_CLIENT_TIMEOUT) is not expected to have the bug: its cell is judged plainly

    @staticmethod
    def parse_bounds(text: str) -> tuple[tuple[str, Version], ...]:
        """``"<12.0.0, >=11.0.0"`` → ((op, version), …).

        Raises:
            ValueError: a part that is not ``<op><version>``.
        """
        bounds = []
        for part in text.split(","):
            found = _BOUND.match(part)
            if not found:
                raise ValueError(f"{part.strip()!r} is not <op><version> (ops: < <= > >= ==)")
            bounds.append((found[1], Version.parse(found[2])))
        return tuple(bounds)

    def applies(self, version: Version) -> bool:
        """True when ``version`` is one of the versions with the bug."""
        checks = {"<": version.__lt__, "<=": version.__le__, ">": version.__gt__, ">=": version.__ge__,
                  "==": version.__eq__}
        return all(checks[op](bound) for op, bound in self.parse_bounds(self.versions))

    def applies_to(self, version: Version, env: Mapping[str, str]) -> bool:
        """True when a runner of ``version`` whose config axis sets ``env`` is expected to have the bug."""
        return self.applies(version) and not any(name in env for name in self.fixed_by_env)

    def describe(self) -> str:
        """One line: the class, the versions and the link."""
        return f"known bug on runner {self.versions}: {self.failure_class}" + (f" ({self.link})" if self.link else "")


@dataclass(frozen=True)
class FaultSpec:
    """A ``fault:`` block: the fault proxy's fault and trigger, and the class expected per runner.

    Without ``expect`` the cell expects what its scenario expects (the job's result, its steps): the fault is a
    condition the runner must survive, and a runner that does not is a plain failure the gate can compare.
    """

    fault: Fault
    trigger: Trigger
    expect: Mapping[str, tuple[str, ...]]  # runner key (``12.1.2-retry``) or version → the expected class (any of)
    rests_on: Mapping[str, str] = field(default_factory=dict)  # version → the runner source line the class rests on
    ci: bool = False  # also part of the default run (no ``-m``); else only with ``-m faults``
    runner_env: Mapping[str, str] = field(default_factory=dict)  # the private runner's environment (a config
    # axis's ``env:`` wins over it: that is the admin's own setting)

    @property
    def decides_class(self) -> bool:
        """True when the expected class per runner decides the cell (``expect:`` given)."""
        return bool(self.expect)

    def expected_for(self, runner_key: str, version: str) -> tuple[str, ...]:
        """The expected class of a runner (any of these; a race can decide between two): by its key (a config
        axis), else by its version; () when expect.yml names none."""
        return self.expect.get(runner_key) or self.expect.get(version) or ()


FAULT_KEYS = {"mode", "delay", "status", "rpc", "rpcs", "at", "expect", "rests_on", "ci", "runner_env"}


def parse_fault(data: Any, fail: Any, *, expect_required: bool = False) -> FaultSpec:
    """Parse and validate a ``fault:`` block (``fail(message)`` builds the error naming the file)."""
    if not isinstance(data, Mapping):
        raise fail("fault must be a mapping: {mode, at[, delay, rpcs, status, rpc, expect, rests_on, ci, runner_env]}")
    unknown = set(data) - FAULT_KEYS
    if unknown:
        raise fail(f"fault: unknown keys {sorted(unknown)}")
    mode = data.get("mode")
    if mode not in MODES:
        raise fail(f"fault.mode must be one of {MODES}, not {mode!r}")
    try:
        delay = float(data.get("delay", 0))
        status = int(data.get("status", 500))
    except (TypeError, ValueError):
        raise fail("fault.delay is seconds, fault.status an HTTP status") from None
    rpc = str(data.get("rpc") or "")
    if mode in TIMING_MODES and delay <= 0:
        raise fail(f"fault.mode {mode} needs delay: <seconds> (how long each request or answer is held)")
    if mode == "answer" and (not rpc or not 400 <= status <= 599):
        raise fail("fault.mode answer needs rpc (UpdateLog, UpdateTask, FetchTask) and a status 400-599")
    rpcs = data.get("rpcs", list(DEFAULT_RPCS))
    if isinstance(rpcs, str):
        rpcs = [rpcs]
    if not isinstance(rpcs, Sequence) or not rpcs or not all(isinstance(r, str) for r in rpcs):
        raise fail(f"fault.rpcs must list RPC names, some of {HOLDABLE_RPCS}")
    if "FetchTask" in rpcs:
        raise fail("fault.rpcs: FetchTask cannot be held (it runs under the runner's own 5 s fetch timeout: the "
                   "runner would only poll again); name UpdateLog and/or UpdateTask")
    if set(rpcs) - set(HOLDABLE_RPCS):
        raise fail(f"fault.rpcs: unknown {sorted(set(rpcs) - set(HOLDABLE_RPCS))}; the timing modes hold "
                   f"{', '.join(HOLDABLE_RPCS)}")
    if "rpcs" in data and mode not in TIMING_MODES:
        raise fail(f"fault.rpcs goes with the timing modes {TIMING_MODES} (answer names its one rpc)")
    on = data.get("at")  # `on:` would be YAML's boolean true
    if not isinstance(on, Mapping) or len(set(on) & set(Trigger.KINDS)) != 1 or set(on) - {*Trigger.KINDS, "seconds"}:
        raise fail(f"fault.at takes one of {Trigger.KINDS} (step: also seconds), e.g. {{log: '⭐ Run Post x'}}")
    kind = next(k for k in Trigger.KINDS if k in on)
    text = "" if kind in ("complete_job", "first_report") else str(on[kind])
    seconds = float(on.get("seconds", 0))
    if seconds and kind != "step":
        raise fail("fault.at.seconds goes with step: (N seconds after the step started)")
    expect = data.get("expect")
    if expect is None and not expect_required:
        expect = {}
    elif not isinstance(expect, Mapping) or not expect or not all(
            isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(c, str) for c in v))
            for v in expect.values()):
        raise fail("fault.expect must map runner versions (or runner keys such as 12.1.2-retry) to the expected class "
                   "(or a list of classes, any of which holds)")
    rests_on = data.get("rests_on") or {}
    if not isinstance(rests_on, Mapping):
        raise fail("fault.rests_on must map versions to the runner source line the expectation rests on")
    env = data.get("runner_env") or {}
    if not isinstance(env, Mapping) or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)) for k in env) \
            or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in env.values()):
        raise fail("fault.runner_env must map environment variable names to values (strings or numbers), e.g. "
                   "{FORGEJO_CLIENT_TIMEOUT: 10}")
    return FaultSpec(Fault(mode, delay, status, rpc, tuple(str(r) for r in rpcs)), Trigger(kind, text, seconds),
                     {str(k): (v,) if isinstance(v, str) else tuple(v) for k, v in expect.items()},
                     {str(k): str(v) for k, v in rests_on.items()},
                     bool(data.get("ci", False)), {str(k): str(v) for k, v in env.items()})


@dataclass(frozen=True)
class Expect:
    """What a scenario expects (parsed from ``expect.yml``)."""

    kind: str
    marker: str
    job: Status
    steps: Mapping[str, Status]
    continue_on_error: tuple[str, ...]
    post_steps: tuple[str, ...]
    setup_cold: float | None
    setup_warm: float | None
    job_log_must: tuple[str, ...]
    job_log_must_not: tuple[str, ...]
    runner_log_must: tuple[str, ...]
    runner_log_must_not: tuple[str, ...]
    observe: Mapping[str, Budget]
    expected_violations: tuple[str, ...]
    requires: tuple[str, ...]
    control: RunnerControl | None
    dispatch: bool
    slow_actions: float | None = None  # seconds added to every request of the action fetch
    jobs: Mapping[str, Status] = field(default_factory=dict)  # per job id, overrides ``job`` (several jobs)
    slow_bandwidth: float | None = None  # KB/s of the slow action server's answers (slow_actions.bandwidth_kbps)
    heavy: HeavyActions | None = None  # heavy stand-in actions seeded when the cell runs; a relative setup budget
    phases: tuple[Phase, ...] = ()  # runs of one cell with action changes between them (one run when empty)
    known_bug: KnownBug | None = None
    fault: FaultSpec | None = None  # the fault proxy between the runner and Forgejo (marker ``faults``)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> Expect:
        """Validate and parse; every problem names the file and key."""

        def fail(msg: str) -> ConfigError:
            return ConfigError(f"{where}: {msg}")

        unknown = set(data) - {
            "kind", "marker", "job", "steps", "continue_on_error", "post_steps", "setup_budget", "log_markers",
            "observe", "expected_violations", "requires", "runner_control", "dispatch", "slow_actions", "jobs",
            "heavy_actions", "setup_budget_relative",
            "phases", "known_bug",
            "fault",
        }
        if unknown:
            raise fail(f"unknown keys {sorted(unknown)}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise fail(f"kind must be one of {KINDS}, not {kind!r}")
        marker = data.get("marker", "regression")
        if marker not in MARKERS:
            raise fail(f"marker must be one of {MARKERS}, not {marker!r}")
        fault = parse_fault(data["fault"], fail) if data.get("fault") is not None else None
        if fault is not None and marker != "faults":
            raise fail("a fault: block goes with marker: faults")

        def status(value: Any, key: str) -> Status:
            parsed = Status.parse(value)
            if parsed is Status.UNKNOWN or not parsed.done:
                raise fail(f"{key}: {value!r} is not a final status")
            return parsed

        steps = {str(k): status(v, f"steps.{k}") for k, v in (data.get("steps") or {}).items()}
        if not isinstance(data.get("jobs") or {}, Mapping):
            raise fail("jobs must map job ids to their expected result, e.g. {build: success, test: failure}")
        jobs = {str(k): status(v, f"jobs.{k}") for k, v in (data.get("jobs") or {}).items()}
        budget = data.get("setup_budget") or {}
        markers = data.get("log_markers") or {}
        bad_markers = set(markers) - {"job_must", "job_must_not", "runner_must", "runner_must_not"}
        if bad_markers:
            raise fail(f"log_markers: unknown keys {sorted(bad_markers)} (job_must, job_must_not, runner_must, "
                       "runner_must_not)")

        def seconds(value: Any, key: str) -> float:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise fail(f"{key}: {value!r} is not a number of seconds") from None
            if number <= 0:
                raise fail(f"{key}: must be positive")
            return number

        observe = {}
        for name, spec in (data.get("observe") or {}).items():
            if not isinstance(spec, Mapping) or "limit" not in spec:
                raise fail(f"observe.{name} needs a limit")
            severity = spec.get("severity", "report")
            if severity not in SEVERITIES:
                raise fail(f"observe.{name}.severity must be one of {SEVERITIES}")
            observe[str(name)] = Budget(seconds(spec["limit"], f"observe.{name}.limit"), severity)
        requires = tuple(data.get("requires") or ())
        if set(requires) - set(REQUIREMENTS):
            raise fail(f"requires: unknown {sorted(set(requires) - set(REQUIREMENTS))}")
        control = None
        if data.get("runner_control"):
            rc = data["runner_control"]
            if set(rc) - {"on_log", "signal"}:
                raise fail(f"runner_control takes on_log and signal, not {sorted(set(rc) - {'on_log', 'signal'})}")
            if rc.get("signal", "KILL") not in ("KILL", "STOP", "TERM"):
                raise fail("runner_control.signal must be KILL, STOP or TERM")
            control = RunnerControl(str(rc["on_log"]), str(rc.get("signal", "KILL")))
        slow = data.get("slow_actions")
        if slow is not None and (not isinstance(slow, Mapping) or "delay" not in slow
                                 or set(slow) - {"delay", "bandwidth_kbps"}):
            raise fail("slow_actions takes delay (seconds added to each request of the action fetch) and optionally "
                       "bandwidth_kbps (KB/s of its answers)")
        slow_delay = seconds(slow["delay"], "slow_actions.delay") if slow is not None else None
        bandwidth = seconds(slow["bandwidth_kbps"], "slow_actions.bandwidth_kbps") if slow and "bandwidth_kbps" in slow \
            else None
        expected = tuple(data.get("expected_violations") or ())
        if marker == "selfcheck" and not expected:
            raise fail("a selfcheck scenario must list its expected_violations")

        def strings(key: str) -> tuple[str, ...]:
            return tuple(str(s) for s in markers.get(key) or ())

        return cls(
            kind=kind,
            marker=marker,
            job=status(data.get("job", "success"), "job"),
            steps=steps,
            continue_on_error=tuple(data.get("continue_on_error") or ()),
            post_steps=tuple(data.get("post_steps") or ()),
            setup_cold=seconds(budget["cold"], "setup_budget.cold") if "cold" in budget else None,
            setup_warm=seconds(budget["warm"], "setup_budget.warm") if "warm" in budget else None,
            job_log_must=strings("job_must"),
            job_log_must_not=strings("job_must_not"),
            runner_log_must=strings("runner_must"),
            runner_log_must_not=strings("runner_must_not"),
            observe=observe,
            expected_violations=expected,
            requires=requires,
            control=control,
            dispatch=bool(data.get("dispatch", False)),
            slow_actions=slow_delay,
            jobs=jobs,
            slow_bandwidth=bandwidth,
            heavy=HeavyActions.parse(data, where),

            phases=_phases(data.get("phases"), fail),
            known_bug=known_bug_block(data.get("known_bug"), fail),
            fault=fault,
            raw=data,
        )


def _phases(data: Any, fail: Callable[[str], ConfigError]) -> tuple[Phase, ...]:
    """``phases: [{name: A}, {name: B, change: {kind: descendant, action: o/n, tags: [v1]}}, …]``."""
    if data is None:
        return ()
    if not isinstance(data, Sequence) or isinstance(data, str) or len(data) < 2:
        raise fail("phases must list at least two phases, e.g. [{name: A}, {name: B, change: {kind: descendant, "
                   "action: owner/name}}]")
    phases = []
    for i, item in enumerate(data):
        if not isinstance(item, Mapping) or set(item) - {"name", "change"} or not str(item.get("name") or "").strip():
            raise fail(f"phases[{i}] takes a name and (after the first) a change, not {item!r}")
        name = str(item["name"])
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in [p.name for p in phases]:
            raise fail(f"phases[{i}].name {name!r} must be a unique word (letters, digits, . _ -)")
        raw = item.get("change") or []
        raw = [raw] if isinstance(raw, Mapping) else raw
        if i == 0 and raw:
            raise fail("phases[0] runs on the seeded action: it takes no change")
        if i > 0 and not raw:
            raise fail(f"phases[{i}] ({name}) needs a change (descendant, orphan or add_refs)")
        phases.append(Phase(name, tuple(_change(c, f"phases[{i}].change", fail) for c in raw)))
    return tuple(phases)


def _change(data: Any, where: str, fail: Callable[[str], ConfigError]) -> ActionChange:
    if not isinstance(data, Mapping) or set(data) - {"kind", "action", "tags", "count"}:
        raise fail(f"{where} takes kind, action, tags and count, not {data!r}")
    kind, action = data.get("kind"), str(data.get("action") or "")
    if kind not in CHANGES:
        raise fail(f"{where}.kind must be one of {CHANGES}, not {kind!r}")
    if action.count("/") != 1:
        raise fail(f"{where}.action must be owner/name as the workflow uses it, not {action!r}")
    tags = data.get("tags", ["v1"])
    if isinstance(tags, str) or not isinstance(tags, Sequence) or not all(re.fullmatch(r"[\w.-]+", str(t)) for t in tags):
        raise fail(f"{where}.tags must list tag names, not {tags!r}")
    count = data.get("count", 0)
    if kind == "add_refs" and (not isinstance(count, int) or count < 1):
        raise fail(f"{where}.count must be a positive number of tags to add")
    return ActionChange(str(kind), action, tuple(str(t) for t in tags), int(count or 0))


def known_bug_block(data: Any, fail: Callable[[str], ConfigError]) -> KnownBug | None:
    """``known_bug: {versions: "<12.0.0", class: stale-action, link: URL[, fixed_by_env: [NAME]]}``."""
    if data is None:
        return None
    if not isinstance(data, Mapping) or set(data) - {"versions", "class", "link", "fixed_by_env"} \
            or not data.get("versions") or not data.get("class"):
        raise fail(f"known_bug takes versions, class, link and fixed_by_env (versions and class required), not {data!r}")
    fixed = data.get("fixed_by_env") or []
    if isinstance(fixed, str) or not isinstance(fixed, Sequence) or not all(isinstance(n, str) for n in fixed):
        raise fail("known_bug.fixed_by_env must list environment variable names, e.g. [FORGEJO_CLIENT_TIMEOUT]")
    bug = KnownBug(str(data["versions"]), str(data["class"]), str(data.get("link") or ""), tuple(fixed))
    try:
        bug.parse_bounds(bug.versions)
    except ValueError as exc:
        raise fail(f"known_bug.versions: {exc}") from None
    return bug


@dataclass(frozen=True)
class Scenario:
    """One scenario folder."""

    name: str
    path: Path
    template: str
    expect: Expect
    readme: str
    job_ids: tuple[str, ...] = ()  # the workflow's ``jobs:`` keys, in order (= Forgejo's job indexes)
    condition: str = ""  # the --condition this scenario runs under (harness.conditions), "" for none

    @property
    def workflow_file(self) -> str:
        """The file name pushed under ``.forgejo/workflows/``."""
        return f"{self.name}.yml"

    def render(self, label: str, slow_actions_url: str | None = None, actions: Mapping[str, str] | None = None) -> str:
        """The workflow with the runner label (and the slow action server's URL) filled in; ``actions`` maps an
        action (``owner/name``) to the repository its ``uses:`` point at instead (a phased cell's own copy).

        Raises:
            ConfigError: the scenario fetches actions slowly but no slow action server was given.
        """
        text = self.template.replace(LABEL_PLACEHOLDER, label)
        if SLOW_ACTIONS_PLACEHOLDER in text:
            if not slow_actions_url:
                raise ConfigError(f"scenario {self.name}: {SLOW_ACTIONS_PLACEHOLDER} needs the slow action server")
            text = text.replace(SLOW_ACTIONS_PLACEHOLDER, slow_actions_url.rstrip("/"))
        for action, copy in (actions or {}).items():
            pattern = rf"^(\s*-?\s*uses:\s*['\"]?){re.escape(action)}@"
            text = re.sub(pattern, lambda m, c=copy: f"{m[1]}{c}@", text, flags=re.M)
        return text

    def render_baseline(self, label: str, slow_actions_url: str | None = None) -> str | None:
        """The baseline workflow of ``setup_budget_relative`` (a file of the scenario folder), rendered like the
        scenario's own; None when the scenario has none."""
        heavy = self.expect.heavy
        if heavy is None or heavy.baseline is None:
            return None
        other = Scenario(self.name, self.path, (self.path / f"{heavy.baseline}.yml").read_text(), self.expect, "")
        return other.render(label, slow_actions_url)
    def changed_actions(self) -> tuple[str, ...]:
        """The actions (``owner/name``) a phase changes, in order of first change."""
        return tuple(dict.fromkeys(c.action for p in self.expect.phases for c in p.changes))

    def uses(self) -> tuple[str, ...]:
        """The ``uses:`` references of the workflow (actions the runner must fetch), as ``owner/name@ref``
        also when fetched through the slow action server (they are seeded like any other)."""
        found = re.findall(r"^\s*-?\s*uses:\s*['\"]?([^'\"\s#]+)", self.template, re.M)
        return tuple(dict.fromkeys(u.removeprefix(SLOW_ACTIONS_PLACEHOLDER + "/") for u in found))


def scenario_names(root: Path = WORKFLOWS_DIR) -> list[str]:
    """Every scenario folder name, sorted."""
    return sorted(p.name for p in root.iterdir() if (p / "workflow.yml").is_file()) if root.is_dir() else []


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: a tenth of the pure-Python time


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_SAFE_LOADER)  # a safe loader (no arbitrary objects)


DEFAULT_EXPECT = {"kind": "native", "marker": "regression", "job": "success"}
DEFAULT_EXPECT_TEXT = ("# no expect.yml: the defaults (a native-label job that succeeds, every step green, the "
                       "default budgets)\nkind: native\nmarker: regression\njob: success\n")


def load(name: str, root: Path = WORKFLOWS_DIR) -> Scenario:
    """Load and validate one scenario; outside the suite's own ``fixtures/workflows`` (``--scenario-dir``)
    ``expect.yml`` is optional (:data:`DEFAULT_EXPECT`).

    Raises:
        ConfigError: unknown scenario or a malformed file.
    """
    path = root / name
    if not (path / "workflow.yml").is_file():
        raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(scenario_names(root)) or 'none'}")
    template = (path / "workflow.yml").read_text()
    if LABEL_PLACEHOLDER not in template:
        raise ConfigError(f"{path / 'workflow.yml'}: no {LABEL_PLACEHOLDER} placeholder for the runner label")
    slow_placeholder = SLOW_ACTIONS_PLACEHOLDER in template
    try:
        workflow = _yaml(template.replace(LABEL_PLACEHOLDER, "label"))
        data = _yaml((path / "expect.yml").read_text()) if (path / "expect.yml").is_file() else (
            dict(DEFAULT_EXPECT) if root.resolve() != WORKFLOWS_DIR.resolve() else None)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path / 'expect.yml'}: missing or not a mapping")
    readme = (path / "README.md").read_text() if (path / "README.md").is_file() else ""
    job_ids = workflow_job_ids(workflow, path / "workflow.yml")
    expect = Expect.parse(data, str(path / "expect.yml"))
    unknown_jobs = [k for k in expect.jobs if k not in job_ids]
    if unknown_jobs:
        raise ConfigError(f"{path / 'expect.yml'}: jobs names {unknown_jobs}, which workflow.yml does not define "
                          f"(its jobs: {list(job_ids)})")
    heavy = expect.heavy
    if heavy is not None and heavy.baseline is not None and not (path / f"{heavy.baseline}.yml").is_file():
        raise ConfigError(f"{path / 'expect.yml'}: setup_budget_relative.baseline {heavy.baseline!r} names no workflow "
                          f"{heavy.baseline}.yml in {path}")
    used = {u.split("@")[0] for u in Scenario(name, path, template, expect, readme, job_ids).uses()}
    changed = [c.action for p in expect.phases for c in p.changes if c.action not in used]
    if changed:
        raise ConfigError(f"{path / 'expect.yml'}: phases change {sorted(set(changed))}, which workflow.yml does not "
                          f"use (it uses: {sorted(used)})")
    if slow_placeholder != (expect.slow_actions is not None):
        raise ConfigError(f"{path}: {SLOW_ACTIONS_PLACEHOLDER} in workflow.yml and slow_actions in expect.yml go "
                          "together")
    return Scenario(name, path, template, expect, readme, job_ids)


def workflow_job_ids(workflow: Any, where: Path | str) -> tuple[str, ...]:
    """The ``jobs:`` keys of a parsed workflow, in file order.

    Raises:
        ConfigError: the workflow is not a mapping, or its ``jobs:`` is missing, empty or not a mapping.
    """
    jobs = workflow.get("jobs") if isinstance(workflow, Mapping) else None
    if not isinstance(jobs, Mapping) or not jobs:
        found = "missing" if not isinstance(workflow, Mapping) or "jobs" not in workflow else f"{jobs!r}"[:80]
        raise ConfigError(f"{where}: jobs: must be a non-empty mapping of job id → job (found: {found}); the "
                          "harness names jobs by these ids (stall detection, runner-log attribution)")
    return tuple(str(k) for k in jobs)


def load_all(root: Path = WORKFLOWS_DIR) -> list[Scenario]:
    """Every scenario."""
    return [load(n, root) for n in scenario_names(root)]


@dataclass(frozen=True)
class Catalogue:
    """Every scenario a run knows: the suite's own, plus each ``--scenario-dir`` (a scenario folder, or a folder of
    them), by name → the folder holding it."""

    roots: Mapping[str, Path]

    @classmethod
    def build(cls, extra: Sequence[Path] = ()) -> Catalogue:
        """The suite's scenarios and those under ``extra``.

        Raises:
            ConfigError: a dir that holds no scenario, or a name given twice (names must be unique: they name
                tests, repositories and bundles).
        """
        roots = {name: WORKFLOWS_DIR for name in scenario_names(WORKFLOWS_DIR)}
        for directory in extra:
            found = {directory.name: directory.parent} if (directory / "workflow.yml").is_file() else {
                name: directory for name in scenario_names(directory)}
            if not found:
                raise ConfigError(f"--scenario-dir {directory}: neither a scenario folder (workflow.yml, optional "
                                  "expect.yml) nor a folder of them")
            for name, root in found.items():
                if name in roots:
                    raise ConfigError(f"--scenario-dir {directory}: scenario {name!r} exists already in {roots[name]}; "
                                      "rename the folder")
                roots[name] = root
        return cls(roots)

    def load(self, name: str) -> Scenario:
        """One scenario by name.

        Raises:
            ConfigError: unknown name, or a malformed scenario.
        """
        if name not in self.roots:
            raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(sorted(self.roots)) or 'none'}")
        return load(name, self.roots[name])

    def all(self) -> list[Scenario]:
        """Every scenario, by name."""
        return [self.load(name) for name in sorted(self.roots)]
