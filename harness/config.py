"""Settings: every option, its source (CLI > env ``REGRESS_<OPTION>`` > ini ``regress_<option>`` > default).

Parsed and validated at one edge; the pytest plugin and the CLI feed it raw strings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.versions import Version


@dataclass(frozen=True)
class Option:
    """One option: CLI flag, kind (``str``, ``list``, ``flag``), help."""

    name: str  # e.g. "runner-version"
    kind: str
    help: str
    default: Any = None
    metavar: str | None = None

    @property
    def env(self) -> str:
        """``REGRESS_RUNNER_VERSION``."""
        return "REGRESS_" + self.name.upper().replace("-", "_")

    @property
    def ini(self) -> str:
        """``regress_runner_version``."""
        return "regress_" + self.name.replace("-", "_")

    @property
    def dest(self) -> str:
        """``regress_runner_version`` (argparse dest)."""
        return self.ini


OPTIONS: tuple[Option, ...] = (
    Option("runner-version", "list", "Runner version to test (repeatable). Default: every runner in the bin dir.",
           metavar="VERSION"),
    Option("forgejo-version", "str", "Forgejo version of the lab. Default: the newest forgejo in the bin dir.",
           metavar="VERSION"),
    Option("forgejo-binary", "str", "Path of the lab's forgejo binary.", metavar="PATH"),
    Option("runner-binary", "list", "Path of a runner binary for a version (repeatable).", metavar="VERSION=PATH"),
    Option("seed-action", "list", "Seed an action repo into the lab from a local copy (repeatable).",
           metavar="OWNER/NAME=PATH"),
    Option("allow-download", "flag", "Allow downloading missing binaries from the official release URLs.",
           default=False),
    Option("forgejo-url", "str", "Test an existing Forgejo instead of booting the lab.", metavar="URL"),
    Option("forgejo-token-file", "str", "File holding the API token for --forgejo-url (or env FORGEJO_TOKEN).",
           metavar="PATH"),
    Option("forgejo-user", "str", "User for the web job view of private repos on --forgejo-url.", metavar="USER"),
    Option("forgejo-password-file", "str", "File holding --forgejo-user's password.", metavar="PATH"),
    Option("forgejo-owner", "str", "Org (or user) owning the test repos. Default: the token's user.",
           metavar="OWNER"),
    Option("runner-label", "list", "Label of an existing runner: VERSION:KIND=LABEL (repeatable).",
           metavar="VERSION:KIND=LABEL"),
    Option("runner-without", "list", "Run a lab runner without a tool on its PATH, e.g. 12.1.2=git (repeatable).",
           metavar="VERSION=TOOL"),
    Option("setup-budget", "str", "Budget of 'Set up job' in seconds: N, or cold=N,warm=M.", metavar="SECONDS"),
    Option("evidence-dir", "str", "Where evidence bundles and reports go.", default="artifacts/evidence",
           metavar="DIR"),
    Option("evidence", "str", "When to write a bundle: always, on-failure or never.", default="on-failure",
           metavar="WHEN"),
    Option("keep-repos", "flag", "Keep the test repositories instead of deleting them.", default=False),
    Option("baseline", "str", "Gate: the version you run today.", metavar="VERSION"),
    Option("candidate", "str", "Gate: the version you want to upgrade to.", metavar="VERSION"),
    Option("gate-on", "str", "Gate also on observation deltas: comma list of setup,cache.", metavar="LIST"),
    Option("repeat", "str", "Run each cell N times and report its pass rate.", default="1", metavar="N"),
    Option("scenario-dir", "list", "Add scenarios from outside the suite (repeatable): a folder with workflow.yml "
           "(runs-on: __RUNS_ON__) and an optional expect.yml, or a folder of such folders.", metavar="DIR"),
    Option("lanes", "str", "Run the session's cells at once: N lanes per runner version (lane 0 on the lab's runner, "
           "the others on private runners of that version); never two cells on one runner.", default="1", metavar="N"),
    Option("warm-up", "flag", "Before measuring a cell, run its workflow on the same runner from more repositories: "
           "the first run is cold, the measured one warm (cold and warm figures, cache growth per repository).",
           default=False),
    Option("warm-up-repos", "str", "With --warm-up: K repositories in all, the measured run's included (at least 2).",
           default="3", metavar="K"),
    Option("save-baseline", "str", "Gate: store this run's cells as a golden baseline file.", metavar="FILE"),
    Option("compare-baseline", "str", "Gate: compare the candidate against a stored golden baseline file.",
           metavar="FILE"),
    Option("runner-log-command", "str", "Existing runners: a command printing the runner's log for a task; "
           "{start} and {end} (ISO UTC) and {runner} are filled in, e.g. journalctl -u forgejo-runner --since {start} "
           "--until {end}.", metavar="TEMPLATE"),
    Option("runner-process", "list", "Existing runners on this host: VERSION=PID or VERSION=unit:NAME (systemd); the "
           "suite reads the process's command line, cwd, HOME and DOCKER_HOST and its config, observes its CPU, stores "
           "and Docker leftovers like a lab runner's, never signals it and never writes into its directories.",
           metavar="VERSION=PID|unit:NAME"),
    Option("kill-for-dump", "flag", "With --runner-process: on a stall, send SIGQUIT for a goroutine dump. THE RUNNER "
           "EXITS (that is what SIGQUIT does to a Go program): the admin's service manager must restart it.",
           default=False),
    Option("runner-stall-command", "str", "Existing runners: a command run when a runner stalls (e.g. an ssh "
           "collecting top -H); its output goes into the bundle. {runner} is filled in.", metavar="TEMPLATE"),
    Option("actions-url", "str", "Lab: the runners fetch every action from URL (Forgejo's [actions] "
           "DEFAULT_ACTIONS_URL, e.g. a mirror forge) instead of the lab's seeded stand-ins.", metavar="URL"),
    Option("runner-config", "list", "Add a config axis for lab runners: NAME=FILE (YAML merged into the runner "
           "config; repeatable).", metavar="NAME=FILE"),
    Option("condition", "list", "Run every regression scenario also under a condition: NAME=FILE, one block of "
           "expect.yml's vocabulary (a fault: without expect, or slow_actions:); repeatable.", metavar="NAME=FILE"),
    Option("zombie-timeout", "str", "The lab Forgejo's [actions] ZOMBIE_TASK_TIMEOUT (Go duration; lab default 30s, "
           "Forgejo's own 10m).", metavar="DURATION"),
)
GO_DURATION = re.compile(r"(\d+(\.\d+)?(ms|s|m|h))+")


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from."""

    value: Any
    source: str


@dataclass(frozen=True)
class Settings:
    """Every validated option."""

    runner_versions: tuple[Version, ...]
    forgejo_version: Version | None
    forgejo_binary: Path | None
    runner_binaries: Mapping[Version, Path]
    seed_actions: tuple[str, ...]
    allow_download: bool
    forgejo_url: str | None
    forgejo_token_file: Path | None
    forgejo_user: str | None
    forgejo_password_file: Path | None
    forgejo_owner: str | None
    runner_labels: Mapping[tuple[Version, str], str]
    runner_without: Mapping[Version, tuple[str, ...]]
    setup_budget: tuple[float, float] | None  # (cold, warm)
    evidence_dir: Path
    evidence: str
    keep_repos: bool
    baseline: Version | None
    candidate: Version | None
    gate_on: tuple[str, ...]
    repeat: int
    lanes: int = 1
    scenario_dirs: tuple[Path, ...] = ()
    save_baseline: Path | None = None
    compare_baseline: Path | None = None
    actions_url: str | None = None
    runner_configs: Mapping[str, Path] = field(default_factory=dict)
    conditions: Mapping[str, Path] = field(default_factory=dict)  # --condition NAME=FILE (harness.conditions)
    runner_log_command: str | None = None
    runner_processes: tuple[str, ...] = ()  # --runner-process VERSION=PID|unit:NAME (harness.runners.existing)
    kill_for_dump: bool = False
    runner_stall_command: str | None = None
    warm_up: bool = False
    warm_up_repos: int = 3
    zombie_timeout: str | None = None  # the lab's ZOMBIE_TASK_TIMEOUT (None: the lab's 30s)
    sources: Mapping[str, Setting] = field(default_factory=dict)

    @property
    def existing(self) -> bool:
        """True when testing a user's Forgejo instead of the lab."""
        return self.forgejo_url is not None

    def versions_to_run(self, available: Sequence[Version]) -> tuple[Version, ...]:
        """The requested versions plus the gate's, de-duplicated; default: ``available``."""
        wanted = list(self.runner_versions)
        gate_versions = (self.candidate,) if self.compare_baseline else (self.baseline, self.candidate)
        for v in gate_versions:
            if v is not None and v not in wanted:
                wanted.append(v)
        if not wanted:
            wanted = sorted({v for v, _ in self.runner_labels}) if self.existing else list(available)
        return tuple(wanted)


def _version(text: str, what: str) -> Version:
    try:
        return Version.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _runner_key(text: str, what: str) -> Version:
    """A runner version, or a build of one with a suffix (``12.1.2+fix``)."""
    try:
        return Version.key(text)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _split_list(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [p.strip() for p in raw.replace("\n", ",").split(",") if p.strip()]
    return [str(p) for p in raw]


def resolve_raw(
    cli: Callable[[str], Any], environ: Mapping[str, str] | None = None, ini: Callable[[str], Any] | None = None
) -> dict[str, Setting]:
    """Raw values with their sources, before validation."""
    env = os.environ if environ is None else environ
    found: dict[str, Setting] = {}
    for opt in OPTIONS:
        value = cli(opt.dest)
        if value not in (None, [], False):
            found[opt.name] = Setting(value, "command line")
            continue
        if opt.env in env and env[opt.env] != "":
            raw: Any = env[opt.env]
            if opt.kind == "flag":
                raw = raw.lower() not in ("0", "false", "no")
            found[opt.name] = Setting(raw, f"env {opt.env}")
            continue
        ini_value = ini(opt.ini) if ini else None
        if ini_value not in (None, "", []):
            if opt.kind == "flag" and isinstance(ini_value, str):
                ini_value = ini_value.lower() not in ("0", "false", "no")
            found[opt.name] = Setting(ini_value, f"ini {opt.ini}")
            continue
        found[opt.name] = Setting(opt.default, "default")
    return found


class _Raw:
    """Raw settings with the words an error needs (the option and where its value came from)."""

    def __init__(self, raw: Mapping[str, Setting]) -> None:
        self.raw = raw

    def get(self, name: str) -> Any:
        return self.raw[name].value

    def where(self, name: str) -> str:
        return f"--{name} ({self.raw[name].source})"

    def path(self, name: str) -> Path | None:
        return Path(str(self.get(name))).expanduser() if self.get(name) else None

    def pairs(self, name: str, shape: str) -> list[tuple[str, str]]:
        found = []
        for item in _split_list(self.get(name)):
            left, sep, right = item.partition("=")
            if not sep or not right:
                raise ConfigError(f"{self.where(name)}: {item!r} is not {shape}")
            found.append((left, right))
        return found

    def whole(self, name: str, minimum: int) -> int:
        try:
            value = int(self.get(name))
        except (TypeError, ValueError):
            raise ConfigError(f"{self.where(name)}: {self.get(name)!r} is not a whole number") from None
        if value < minimum:
            raise ConfigError(f"{self.where(name)}: must be at least {minimum}")
        return value


def _runner_axes(r: _Raw) -> dict[str, Any]:
    binaries = {_runner_key(v, r.where("runner-binary")): Path(p).expanduser()
                for v, p in r.pairs("runner-binary", "VERSION=PATH")}
    labels: dict[tuple[Version, str], str] = {}
    for item in _split_list(r.get("runner-label")):
        left, sep, label = item.partition("=")
        version, sep2, kind = left.partition(":")
        if not (sep and sep2 and label) or kind not in ("native", "docker"):
            raise ConfigError(f"{r.where('runner-label')}: {item!r} is not VERSION:KIND=LABEL with KIND native|docker")
        labels[(_runner_key(version, r.where("runner-label")), kind)] = label
    without: dict[Version, tuple[str, ...]] = {}
    for version, tool in r.pairs("runner-without", "VERSION=TOOL"):
        v = _runner_key(version, r.where("runner-without"))
        without[v] = (*without.get(v, ()), tool)
    configs: dict[str, Path] = {}
    for name, path in r.pairs("runner-config", "NAME=FILE (NAME: a-z, 0-9, -)"):
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,19}", name):
            raise ConfigError(f"{r.where('runner-config')}: {name!r} is not NAME=FILE (NAME: a-z, 0-9, -)")
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"{r.where('runner-config')}: {path} does not exist")
        configs[name] = Path(path).expanduser()
    conditions: dict[str, Path] = {}
    for name, path in r.pairs("condition", "NAME=FILE (NAME: a-z, 0-9, -)"):
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,29}", name):
            raise ConfigError(f"{r.where('condition')}: {name!r} is not NAME=FILE (NAME: a-z, 0-9, -)")
        if name in conditions:
            raise ConfigError(f"{r.where('condition')}: {name!r} is given twice")
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"{r.where('condition')}: {path} does not exist")
        conditions[name] = Path(path).expanduser()
    return {"conditions": conditions, "runner_versions": tuple(_runner_key(v, r.where("runner-version"))
                                     for v in _split_list(r.get("runner-version"))),
            "runner_binaries": binaries, "runner_labels": labels, "runner_without": without, "runner_configs": configs}


def _setup_budget(r: _Raw) -> tuple[float, float] | None:
    if not r.get("setup-budget"):
        return None
    text = str(r.get("setup-budget"))
    try:
        if "=" in text:
            parts = {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in text.split(","))}
            budget = (float(parts["cold"]), float(parts.get("warm", parts["cold"])))
        else:
            budget = (float(text), float(text))
    except (ValueError, KeyError):
        raise ConfigError(f"{r.where('setup-budget')}: {text!r} is not N or cold=N,warm=M (seconds)") from None
    if min(budget) <= 0:
        raise ConfigError(f"{r.where('setup-budget')}: budgets must be positive")
    return budget


def _existing(r: _Raw, env: Mapping[str, str], axes: Mapping[str, Any]) -> dict[str, Any]:
    url = r.get("forgejo-url")
    if url is not None:
        url = str(url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{r.where('forgejo-url')}: {url!r} must start with http:// or https://")
    token_file, password_file = r.path("forgejo-token-file"), r.path("forgejo-password-file")
    if url and token_file is None and not env.get("FORGEJO_TOKEN"):
        raise ConfigError("--forgejo-url needs a token: --forgejo-token-file=PATH or env FORGEJO_TOKEN")
    for name, file in (("forgejo-token-file", token_file), ("forgejo-password-file", password_file)):
        if file is not None and not file.is_file():
            raise ConfigError(f"{r.where(name)}: {file} does not exist")
    if bool(r.get("forgejo-user")) != bool(password_file):
        raise ConfigError("--forgejo-user and --forgejo-password-file go together")
    labels = axes["runner_labels"]
    if url and not labels:
        raise ConfigError("--forgejo-url needs --runner-label VERSION:KIND=LABEL for the runners to test")
    if labels and not url:
        raise ConfigError("--runner-label is for an existing instance: give --forgejo-url too")
    if axes["runner_configs"] and url:
        raise ConfigError("--runner-config applies to lab runners only (not with --forgejo-url)")
    if axes["conditions"] and url:
        raise ConfigError("--condition applies to lab runners only (a fault proxy or a slow action server must sit "
                          "between the runner and Forgejo; not with --forgejo-url)")
    for name in ("runner-log-command", "runner-stall-command"):
        template = r.get(name)
        if template:
            try:
                str(template).format(start="s", end="e", runner="r")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"{r.where(name)}: bad placeholder {exc} (use {{start}}, {{end}}, {{runner}})") from None
    return {"forgejo_url": url, "forgejo_token_file": token_file, "forgejo_user": r.get("forgejo-user") or None,
            "forgejo_password_file": password_file, "forgejo_owner": r.get("forgejo-owner") or None,
            "runner_log_command": r.get("runner-log-command") or None,
            "runner_processes": _runner_processes(r, url, labels), "kill_for_dump": bool(r.get("kill-for-dump")),
            "runner_stall_command": r.get("runner-stall-command") or None}


def check_zombie_timeout(value: str, where: str) -> str:
    """A ``--zombie-timeout`` value (a Go duration), as the pytest option and ``lab up`` take it.

    Raises:
        ConfigError: not a Go duration.
    """
    if not GO_DURATION.fullmatch(value):
        raise ConfigError(f"--zombie-timeout {value!r} ({where}): a Go duration such as 30s or 10m")
    return value


def _runner_processes(r: _Raw, url: str | None, labels: Mapping[tuple[Version, str], str]) -> tuple[str, ...]:
    """``--runner-process`` items, each VERSION=PID|unit:NAME of a version that has a ``--runner-label``."""
    items = tuple(_split_list(r.get("runner-process")))
    if r.get("kill-for-dump") and not items:
        raise ConfigError("--kill-for-dump goes with --runner-process (it signals that runner)")
    if items and not url:
        raise ConfigError("--runner-process names an existing runner: give --forgejo-url and --runner-label too (lab "
                          "runners are observed without it)")
    known = {str(v) for v, _ in labels}
    for item in items:
        key, sep, what = item.partition("=")
        if not sep or not (what.isdigit() or (what.startswith("unit:") and len(what) > 5)):
            raise ConfigError(f"{r.where('runner-process')}: {item!r} is not VERSION=PID or VERSION=unit:NAME")
        if key not in known:
            raise ConfigError(f"{r.where('runner-process')}: {key} has no --runner-label (give "
                              f"--runner-label {key}:native=LABEL for the runner whose process this is)")
    return items


def _zombie_timeout(r: _Raw) -> str | None:
    value = str(r.get("zombie-timeout") or "").strip()
    if not value:
        return None
    check_zombie_timeout(value, r.where("zombie-timeout"))
    if r.get("forgejo-url"):
        raise ConfigError(f"--zombie-timeout ({r.where('zombie-timeout')}) sets the lab Forgejo's app.ini; an existing "
                          "instance (--forgejo-url) has its own")
    return value


def _gate(r: _Raw) -> dict[str, Any]:
    baseline = _runner_key(r.get("baseline"), r.where("baseline")) if r.get("baseline") else None
    candidate = _runner_key(r.get("candidate"), r.where("candidate")) if r.get("candidate") else None
    compare_file = r.path("compare-baseline")
    if compare_file is not None:
        if not compare_file.is_file():
            raise ConfigError(f"{r.where('compare-baseline')}: {compare_file} does not exist")
        if candidate is None:
            raise ConfigError("--compare-baseline needs --candidate VERSION")
    elif (baseline is None) != (candidate is None):
        raise ConfigError("--baseline and --candidate go together")
    if baseline is not None and baseline == candidate:
        raise ConfigError(f"--baseline and --candidate are both {baseline}: nothing to compare")
    gate_on = tuple(_split_list(r.get("gate-on")))
    if set(gate_on) - {"setup", "cache", "cpu", "leftovers"}:
        raise ConfigError(f"{r.where('gate-on')}: unknown {sorted(set(gate_on) - {'setup', 'cache', 'cpu', 'leftovers'})}")
    return {"baseline": baseline, "candidate": candidate, "compare_baseline": compare_file, "gate_on": gate_on,
            "save_baseline": r.path("save-baseline")}


def _evidence(r: _Raw) -> dict[str, Any]:
    evidence = str(r.get("evidence"))
    if evidence not in ("always", "on-failure", "never"):
        raise ConfigError(f"{r.where('evidence')}: {evidence!r} is not always, on-failure or never")
    return {"evidence": evidence, "evidence_dir": Path(str(r.get("evidence-dir"))).expanduser(),
            "keep_repos": bool(r.get("keep-repos"))}


def _scenario_dirs(r: _Raw) -> tuple[Path, ...]:
    dirs = tuple(Path(d).expanduser().resolve() for d in _split_list(r.get("scenario-dir")))
    for directory in dirs:
        if not directory.is_dir():
            raise ConfigError(f"{r.where('scenario-dir')}: {directory} is not a directory")
    return dirs


def _actions_url(r: _Raw) -> str | None:
    url = r.get("actions-url")
    if not url:
        return None
    if r.get("forgejo-url"):
        raise ConfigError("--actions-url sets the lab Forgejo's DEFAULT_ACTIONS_URL: not with --forgejo-url "
                          "(an existing instance has its own)")
    return check_actions_url(str(url), r.where("actions-url"), seeded=bool(_split_list(r.get("seed-action"))))


def check_actions_url(url: str, where: str, *, seeded: bool) -> str:
    """``url`` without its trailing slash, once it is an http(s) URL and no action is seeded beside it.

    Raises:
        ConfigError: not an http:// or https:// URL, or ``seeded``.
    """
    url = url.rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"{where}: {url!r} must be an http:// or https:// URL")
    if seeded:
        raise ConfigError("--actions-url and --seed-action exclude each other: with an actions URL the runners "
                          "clone every action from there, a seeded copy would never run")
    return url


def _warm_up(r: _Raw) -> dict[str, Any]:
    repos = r.whole("warm-up-repos", 2)
    if not r.get("warm-up") and r.raw["warm-up-repos"].source != "default":
        raise ConfigError(f"{r.where('warm-up-repos')}: needs --warm-up")
    return {"warm_up": bool(r.get("warm-up")), "warm_up_repos": repos}


def check_evidence_dir(settings: Settings) -> None:
    """The evidence dir exists and is writable (called once something will be written there).

    Raises:
        ConfigError: it cannot be made or written.
    """
    evidence_dir = settings.evidence_dir
    try:
        evidence_dir.mkdir(parents=True, exist_ok=True)
        probe = evidence_dir / f".regress-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        source = settings.sources.get("evidence-dir")
        where = f"--evidence-dir ({source.source})" if source else "--evidence-dir"
        raise ConfigError(f"{where}: {evidence_dir} is not writable ({exc.strerror})") from None


def build(raw: Mapping[str, Setting], environ: Mapping[str, str] | None = None) -> Settings:
    """Validate raw values into Settings (nothing is created: see :func:`check_evidence_dir`).

    Raises:
        ConfigError: any bad value; the message names the option and its source.
    """
    r = _Raw(raw)
    axes = _runner_axes(r)
    return Settings(
        **axes,
        forgejo_version=_version(r.get("forgejo-version"), r.where("forgejo-version")) if r.get("forgejo-version")
        else None,
        forgejo_binary=r.path("forgejo-binary"),
        seed_actions=tuple(_split_list(r.get("seed-action"))),
        allow_download=bool(r.get("allow-download")),
        **_existing(r, os.environ if environ is None else environ, axes),
        setup_budget=_setup_budget(r),
        **_evidence(r),
        **_gate(r),
        repeat=r.whole("repeat", 1),
        lanes=r.whole("lanes", 1),
        scenario_dirs=_scenario_dirs(r),
        actions_url=_actions_url(r),
        **_warm_up(r),
        zombie_timeout=_zombie_timeout(r),
        sources=dict(raw),
    )
