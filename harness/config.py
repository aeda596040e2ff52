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
    Option("save-baseline", "str", "Gate: store this run's cells as a golden baseline file.", metavar="FILE"),
    Option("compare-baseline", "str", "Gate: compare the candidate against a stored golden baseline file.",
           metavar="FILE"),
    Option("runner-log-command", "str", "Existing runners: a command printing the runner's log for a task; "
           "{start} and {end} (ISO UTC) and {runner} are filled in, e.g. journalctl -u forgejo-runner --since {start} "
           "--until {end}.", metavar="TEMPLATE"),
    Option("runner-stall-command", "str", "Existing runners: a command run when a runner stalls (e.g. an ssh "
           "collecting top -H); its output goes into the bundle. {runner} is filled in.", metavar="TEMPLATE"),
    Option("runner-config", "list", "Add a config axis for lab runners: NAME=FILE (YAML merged into the runner "
           "config; repeatable).", metavar="NAME=FILE"),
)


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
    save_baseline: Path | None = None
    compare_baseline: Path | None = None
    runner_configs: Mapping[str, Path] = field(default_factory=dict)
    runner_log_command: str | None = None
    runner_stall_command: str | None = None
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


def build(raw: Mapping[str, Setting], environ: Mapping[str, str] | None = None) -> Settings:
    """Validate raw values into Settings.

    Raises:
        ConfigError: any bad value; the message names the option and its source.
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> Any:
        return raw[name].value

    def where(name: str) -> str:
        return f"--{name} ({raw[name].source})"

    versions = tuple(_version(v, where("runner-version")) for v in _split_list(get("runner-version")))
    runner_binaries: dict[Version, Path] = {}
    for item in _split_list(get("runner-binary")):
        version, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"{where('runner-binary')}: {item!r} is not VERSION=PATH")
        runner_binaries[_version(version, where("runner-binary"))] = Path(path).expanduser()
    labels: dict[tuple[Version, str], str] = {}
    for item in _split_list(get("runner-label")):
        left, sep, label = item.partition("=")
        version, sep2, kind = left.partition(":")
        if not (sep and sep2 and label) or kind not in ("native", "docker"):
            raise ConfigError(f"{where('runner-label')}: {item!r} is not VERSION:KIND=LABEL with KIND native|docker")
        labels[(_version(version, where("runner-label")), kind)] = label
    without: dict[Version, tuple[str, ...]] = {}
    for item in _split_list(get("runner-without")):
        version, sep, tool = item.partition("=")
        if not sep or not tool:
            raise ConfigError(f"{where('runner-without')}: {item!r} is not VERSION=TOOL")
        v = _version(version, where("runner-without"))
        without[v] = (*without.get(v, ()), tool)
    budget = None
    if get("setup-budget"):
        text = str(get("setup-budget"))
        try:
            if "=" in text:
                parts = {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in text.split(","))}
                budget = (float(parts["cold"]), float(parts.get("warm", parts["cold"])))
            else:
                budget = (float(text), float(text))
        except (ValueError, KeyError):
            raise ConfigError(f"{where('setup-budget')}: {text!r} is not N or cold=N,warm=M (seconds)") from None
        if min(budget) <= 0:
            raise ConfigError(f"{where('setup-budget')}: budgets must be positive")
    evidence = str(get("evidence"))
    if evidence not in ("always", "on-failure", "never"):
        raise ConfigError(f"{where('evidence')}: {evidence!r} is not always, on-failure or never")
    url = get("forgejo-url")
    if url is not None:
        url = str(url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where('forgejo-url')}: {url!r} must start with http:// or https://")
    token_file = Path(get("forgejo-token-file")).expanduser() if get("forgejo-token-file") else None
    if url and token_file is None and not env.get("FORGEJO_TOKEN"):
        raise ConfigError("--forgejo-url needs a token: --forgejo-token-file PATH or env FORGEJO_TOKEN")
    if token_file is not None and not token_file.is_file():
        raise ConfigError(f"{where('forgejo-token-file')}: {token_file} does not exist")
    password_file = Path(get("forgejo-password-file")).expanduser() if get("forgejo-password-file") else None
    if password_file is not None and not password_file.is_file():
        raise ConfigError(f"{where('forgejo-password-file')}: {password_file} does not exist")
    if bool(get("forgejo-user")) != bool(password_file):
        raise ConfigError("--forgejo-user and --forgejo-password-file go together")
    if url and not labels:
        raise ConfigError("--forgejo-url needs --runner-label VERSION:KIND=LABEL for the runners to test")
    if labels and not url:
        raise ConfigError("--runner-label is for an existing instance: give --forgejo-url too")
    baseline = _version(get("baseline"), where("baseline")) if get("baseline") else None
    candidate = _version(get("candidate"), where("candidate")) if get("candidate") else None
    compare_file = Path(get("compare-baseline")).expanduser() if get("compare-baseline") else None
    if compare_file is not None:
        if not compare_file.is_file():
            raise ConfigError(f"{where('compare-baseline')}: {compare_file} does not exist")
        if candidate is None:
            raise ConfigError("--compare-baseline needs --candidate VERSION")
    elif (baseline is None) != (candidate is None):
        raise ConfigError("--baseline and --candidate go together")
    if baseline is not None and baseline == candidate:
        raise ConfigError(f"--baseline and --candidate are both {baseline}: nothing to compare")
    configs: dict[str, Path] = {}
    for item in _split_list(get("runner-config")):
        name, sep, path = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,19}", name):
            raise ConfigError(f"{where('runner-config')}: {item!r} is not NAME=FILE (NAME: a-z, 0-9, -)")
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"{where('runner-config')}: {path} does not exist")
        configs[name] = Path(path).expanduser()
    if configs and url:
        raise ConfigError("--runner-config applies to lab runners only (not with --forgejo-url)")
    for name in ("runner-log-command", "runner-stall-command"):
        template = get(name)
        if template:
            try:
                str(template).format(start="s", end="e", runner="r")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"{where(name)}: bad placeholder {exc} (use {{start}}, {{end}}, {{runner}})") from None
    evidence_dir = Path(str(get("evidence-dir"))).expanduser()
    try:
        evidence_dir.mkdir(parents=True, exist_ok=True)
        probe = evidence_dir / f".regress-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{where('evidence-dir')}: {evidence_dir} is not writable ({exc.strerror})") from None
    gate_on = tuple(_split_list(get("gate-on")))
    if set(gate_on) - {"setup", "cache", "cpu", "leftovers"}:
        raise ConfigError(f"{where('gate-on')}: unknown {sorted(set(gate_on) - {'setup', 'cache', 'cpu', 'leftovers'})}")
    try:
        repeat = int(get("repeat"))
    except (TypeError, ValueError):
        raise ConfigError(f"{where('repeat')}: {get('repeat')!r} is not a whole number") from None
    if repeat < 1:
        raise ConfigError(f"{where('repeat')}: must be at least 1")
    return Settings(
        runner_versions=versions,
        forgejo_version=_version(get("forgejo-version"), where("forgejo-version")) if get("forgejo-version") else None,
        forgejo_binary=Path(get("forgejo-binary")).expanduser() if get("forgejo-binary") else None,
        runner_binaries=runner_binaries,
        seed_actions=tuple(_split_list(get("seed-action"))),
        allow_download=bool(get("allow-download")),
        forgejo_url=url,
        forgejo_token_file=token_file,
        forgejo_user=get("forgejo-user") or None,
        forgejo_password_file=password_file,
        forgejo_owner=get("forgejo-owner") or None,
        runner_labels=labels,
        runner_without=without,
        setup_budget=budget,
        evidence_dir=evidence_dir,
        evidence=evidence,
        keep_repos=bool(get("keep-repos")),
        baseline=baseline,
        candidate=candidate,
        gate_on=gate_on,
        repeat=repeat,
        save_baseline=Path(get("save-baseline")).expanduser() if get("save-baseline") else None,
        compare_baseline=compare_file,
        runner_configs=configs,
        runner_log_command=get("runner-log-command") or None,
        runner_stall_command=get("runner-stall-command") or None,
        sources=dict(raw),
    )
