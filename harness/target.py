"""Which Forgejo the scenarios run against: the lab, or a user's instance with existing runners."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import conditions
from harness.config import Settings
from harness.errors import ConfigError
from harness.forgejo.client import ForgejoClient
from harness.forgejo.models import parse_go_duration
from harness.forgejo.transcript import Transcript
from harness.forgejo.web import WebSession
from harness.lab import booting
from harness.lab import engine as engines
from harness.lab import lab as labs
from harness.lab import private as privates
from harness.lab.forgejo import ADMIN, ZombieSettings
from harness.lab.prepare import Prepared, prepare
from harness.lab.seed import parse_seed_option
from harness.provenance import ACTIONS_URL, ActionOrigin, split_uses
from harness.redact import register_secret
from harness.runners import binaries
from harness.runners import existing as existing_runners
from harness.runners.existing import ExistingRunner
from harness.runners.process import LabRunner, label_name
from harness.versions import Version


@dataclass
class RunnerHandle:
    """A runner under test: its version, labels by kind, and the lab process when it is ours."""

    key: str
    version: Version
    labels: dict[str, str]  # kind → full label (lab) or runs-on label (existing)
    lab_runner: LabRunner | None = None
    existing: ExistingRunner | None = None  # --runner-process: an admin's runner process on this host, read only

    def runs_on(self, kind: str) -> str | None:
        """The ``runs-on`` value for a label kind (None when this runner has none)."""
        label = self.labels.get(kind)
        return label_name(label) if label else None


@dataclass
class Target:
    """A Forgejo with runners, ready for scenarios."""

    url: str
    client: ForgejoClient
    web: WebSession
    owner: str
    server_version: Version
    runners: dict[str, RunnerHandle]
    transcript: Transcript
    lab: labs.Lab | None = None
    org: str | None = None  # set when the repos belong to an org rather than the token's user
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def docker_host(self) -> str | None:
        """The lab's Docker engine, when there is one."""
        return self.lab.engine.host if self.lab and self.lab.engine else None


def _read_secret(path: Path | None, env_name: str) -> str:
    value = path.read_text().strip() if path else os.environ.get(env_name, "").strip()
    register_secret(value)
    return value


def open_existing(settings: Settings) -> Target:
    """Connect to a user's Forgejo; check the token and (when given) the web login up front.

    Raises:
        ConfigError: bad URL, refused token, under-scoped token, failed login.
    """
    assert settings.forgejo_url
    transcript = Transcript()
    token = _read_secret(settings.forgejo_token_file, "FORGEJO_TOKEN")
    client = ForgejoClient(settings.forgejo_url, token, transcript=transcript, retries=2)
    try:
        server = client.server_version()
    except Exception as exc:
        raise ConfigError(f"--forgejo-url {settings.forgejo_url}: no Forgejo answers /api/v1/version ({exc})") from None
    user = client.whoami()
    client.check_scopes(settings.forgejo_owner or user)
    web = WebSession(settings.forgejo_url, server, transcript=transcript)
    if settings.forgejo_user:
        web.login(settings.forgejo_user, _read_secret(settings.forgejo_password_file, ""))
    runners: dict[str, RunnerHandle] = {}
    for (version, kind), label in settings.runner_labels.items():
        handle = runners.setdefault(str(version), RunnerHandle(str(version), version, {}))
        handle.labels[kind] = label
    for spec in settings.runner_processes:
        found = existing_runners.resolve(spec)
        runners[found.key].existing = found
    owner = settings.forgejo_owner or user
    return Target(settings.forgejo_url, client, web, owner, server, runners, transcript,
                  info={"kind": "existing", "version": str(server)}, org=owner if owner != user else None)


@dataclass(frozen=True)
class LabPlan:
    """What the lab must run for this session."""

    forgejo: binaries.Binary
    specs: tuple[labs.RunnerSpec, ...]
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    zombie: ZombieSettings = field(default_factory=ZombieSettings)  # --zombie-timeout


def plan_lab(settings: Settings, versions: Sequence[Version]) -> LabPlan:
    """Resolve every binary the lab needs (fails fast, before any boot).

    Raises:
        BinaryNotFound / ConfigError: a binary is missing or reports another version.
    """
    available = binaries.available("forgejo")
    forgejo_version = settings.forgejo_version or (available[-1] if available else None)
    if forgejo_version is None:
        raise binaries.BinaryNotFound(
            f"no forgejo binary in {binaries.bin_dir()}; give --forgejo-version and --forgejo-binary, "
            "or put forgejo-<version> there"
        )
    explicit = {forgejo_version: settings.forgejo_binary} if settings.forgejo_binary else None
    forgejo = binaries.resolve("forgejo", forgejo_version, explicit=explicit, download=settings.allow_download)
    configs = {name: load_runner_config(path) for name, path in settings.runner_configs.items()}
    specs = []
    not_applicable = {}
    for v in versions:
        binary = binaries.resolve("forgejo-runner", v, explicit=settings.runner_binaries,
                                  download=settings.allow_download)
        for name, (overrides, env) in [("", ({}, {})), *configs.items()]:
            spec = labs.RunnerSpec(binary, config_name=name, overrides=overrides,
                                   without_tools=settings.runner_without.get(v, ()), env=env)
            unknown = unknown_keys(v, overrides)
            if unknown:
                not_applicable[spec.key] = f"n/a: {', '.join(unknown)} unknown to runner {v}"
            else:
                specs.append(spec)
    zombie = ZombieSettings(zombie_timeout=settings.zombie_timeout) if settings.zombie_timeout else ZombieSettings()
    zombie = raised_zombie(zombie, conditions.load_all(settings.conditions).values())
    return LabPlan(forgejo, tuple(specs), not_applicable, zombie)


def raised_zombie(zombie: ZombieSettings, found: Iterable[conditions.Condition]) -> ZombieSettings:
    """``zombie`` with its timeout raised to what the session's conditions need (a runner that only waits out
    their holds must never be stopped by the lab's short zombie check); as it was when they need nothing more."""
    need = conditions.lab_zombie_timeout(list(found))
    have = parse_go_duration(zombie.zombie_timeout) or 600.0
    if need is None or need <= have:
        return zombie
    return dataclasses.replace(zombie, zombie_timeout=f"{math.ceil(need)}s")


# Config keys and the first runner version that knows them (a cell whose config uses a key its
# version does not know is "n/a", never a run with the key silently ignored).
KEYS_SINCE = {"runner.report_retry": Version(12, 0, 0)}


def load_runner_config(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A runner config axis file: (the YAML mapping merged into the lab runner's config, its ``env:``: variables
    for the runner process, e.g. ``FORGEJO_CLIENT_TIMEOUT``, which a config file cannot set).

    Raises:
        ConfigError: not readable, not a mapping, or an ``env:`` that is not names to values.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--runner-config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--runner-config {path}: not a YAML mapping")
    env = data.pop("env", None) or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)
                                            for k in env) \
            or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in env.values()):
        raise ConfigError(f"--runner-config {path}: env: must map environment variable names to values (strings or "
                          "numbers), e.g. {FORGEJO_CLIENT_TIMEOUT: 90}")
    return data, {k: str(v) for k, v in env.items()}


def unknown_keys(version: Version, overrides: Mapping[str, Any]) -> list[str]:
    """Dotted keys of ``overrides`` that ``version`` does not know."""
    found = []
    for dotted, since in KEYS_SINCE.items():
        node: Any = overrides
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None and version < since:
            found.append(dotted)
    return found


def runner_keys(settings: Settings, versions: Sequence[Version]) -> list[str]:
    """Cell ids of the runners: ``12.1.2`` and one ``12.1.2-<config>`` per config axis."""
    return [f"{v}" + (f"-{name}" if name else "") for v in versions for name in ["", *settings.runner_configs]]


def boot_lab(plan: LabPlan, lab_id: str, *, capacity: int, seed_actions: Sequence[str],
             notify: Callable[[str], None], actions_url: str | None = None) -> labs.Lab:
    """Boot the lab for a plan, seeding every action the scenarios use.

    Runs ``lab prepare`` first when the machine is not prepared yet (once per machine), so the
    README's test command does all the set-up.
    """
    if Prepared.load() is None and (engines.find_existing() is not None or shutil.which("dockerd")):
        notify("the lab is not prepared on this machine: running `python -m harness lab prepare` (once)")
        prepare(notify=notify)
    return booting.boot(lab_id, plan.forgejo, plan.specs, capacity=capacity, seed_sources=parse_seed_option(seed_actions),
                     zombie=plan.zombie, actions_url=actions_url, notify=notify)


def open_lab(lab: labs.Lab) -> Target:
    """A Target on a booted lab (logged in as the lab admin for the web view)."""
    transcript = Transcript()
    client = ForgejoClient(lab.forgejo.url, lab.token(), transcript=transcript, trust_env=False)
    server = client.server_version()
    web = WebSession(lab.forgejo.url, server, transcript=transcript, trust_env=False)
    web.login(ADMIN, lab.password())
    runners = {key: RunnerHandle(key, r.version, dict(r.labels), r) for key, r in lab.runners.items()}
    zombie = lab.forgejo.zombie
    info = {"kind": "lab", "version": str(server), "lab_id": lab.id,
            "actions": {"DEFAULT_ACTIONS_URL": lab.forgejo.actions_url, "ZOMBIE_TASK_TIMEOUT": zombie.zombie_timeout,
                        "cron.stop_zombie_tasks": zombie.zombie_cron, "ENDLESS_TASK_TIMEOUT": zombie.endless_timeout}}
    return Target(lab.forgejo.url, client, web, ADMIN, server, runners, transcript, lab=lab, info=info)


def actions_base(target: Target) -> str:
    """The URL the runners clone ``owner/name`` actions under: the actions URL, or the Forgejo itself."""
    url = target.lab.forgejo.actions_url if target.lab else "self"
    return target.url if url == "self" else url


def action_origins(target: Target, uses: Sequence[str]) -> dict[str, ActionOrigin]:
    """``owner/name`` → where the lab serves it (seeded stand-ins and copies, or the actions URL); empty for
    an existing instance (the suite does not know where its actions come from)."""
    if target.lab is None:
        return {}
    origins = {s.repo: ActionOrigin(s.kind, s.path, Path(s.served) if s.served else None) for s in target.lab.seeded}
    url = target.lab.forgejo.actions_url
    if url != "self":
        for use in uses:
            split = split_uses(use)
            if split and split[0] not in origins:
                origins[split[0]] = ActionOrigin(ACTIONS_URL, url)
    return origins


def private_handle(target: Target, stack: contextlib.ExitStack, key: str, notify: Callable[[str], None],
                   via: str | None = None, env: Mapping[str, str] | None = None) -> RunnerHandle:
    """A private lab runner of runner ``key``'s version, stopped when ``stack`` closes (the shared handle when the
    runner is not the lab's); ``via``: a fault proxy's URL, the runner's instance address; ``env``: variables for
    the runner process (a fault's ``runner_env``; the config axis's ``env:`` wins)."""
    shared = target.runners[key]
    if target.lab is None or shared.lab_runner is None:
        return shared
    private = stack.enter_context(privates.private_runner(target.lab, key, notify=notify, via=via, env=env))
    return RunnerHandle(key, shared.version, dict(private.labels), private)
