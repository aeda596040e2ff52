"""Where a runner keeps its stores, from its config file (the runner's own defaults where a key is absent) or
from directories given outright. Parsed here, once; everything after reads :class:`Layout`.

Defaults (internal/pkg/config/config.go, act/runner/run_context.go): ``host.workdir_parent`` =
``$HOME/.cache/act``, ``cache.dir`` = ``$HOME/.cache/actcache``, the tool cache of host jobs
``<workdir_parent>/tool_cache`` unless ``runner.envs.RUNNER_TOOL_CACHE`` moves it; ``runner.file`` and
other relative paths resolve against the runner's working directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError
from harness.observe.cache import TOOL_CACHE
from harness.redact import register_secret

_CONFIG_KEYS = ("log", "runner", "cache", "container", "host")
_WORKSPACE = re.compile(r"[0-9a-f]{16}")  # a host job's <workdir_parent>/<8 random bytes>/{act,hostexecutor,tmp}
_FIRST = re.compile(r"[0-9a-f]{2}")


@dataclass(frozen=True)
class Layout:
    """A runner's four stores and how they were found."""

    workdir: Path  # host.workdir_parent: action clones, host workspaces, the default tool cache
    cache_dir: Path  # cache.dir: the cache server's bolt.db and cache/
    home: Path
    tool_cache: Path
    source: str  # "config FILE" or "directories given"
    cache_used: bool = True  # False with cache.external_server (or cache.enabled: false)
    cache_note: str = ""  # why the local cache store is not used
    runner_file: Path | None = None
    given: tuple[str, ...] = ()  # the stores named on the command line: they must exist

    def nested_in_home(self) -> tuple[Path, ...]:
        """The stores inside HOME (measured apart, so HOME is reported without them)."""
        home = self.home.resolve()
        return tuple(p for p in (self.workdir, self.cache_dir, self.tool_cache) if p.resolve().is_relative_to(home))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _path(value: Any, base: Path, where: str) -> Path | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a path, not {value!r}")
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def load_config(path: Path) -> Mapping[str, Any]:
    """A runner config file, as a mapping.

    Raises:
        ConfigError: missing, unreadable, not YAML, or not a runner's config (one line naming the file).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path}: a directory, not a runner's config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"--config {path}: not YAML{where}") from None
    if data is None:
        data = {}  # an empty config: every default applies, as for the runner
    if not isinstance(data, Mapping) or (data and not any(k in data for k in _CONFIG_KEYS)):
        raise ConfigError(f"--config {path}: not a runner's config (none of {', '.join(_CONFIG_KEYS)} at the top)")
    return data


def from_config(config: Path, cwd: Path | None = None, home: Path | None = None,
                environ: Mapping[str, str] | None = None) -> Layout:
    """The stores a runner started with ``-c config`` in ``cwd`` (default: the config's directory) uses.

    ``home``: the runner's HOME (default: ``$HOME`` here). Secrets of the config and of ``.runner`` are
    registered with :mod:`harness.redact`, so no output carries them.

    Raises:
        ConfigError: a bad config, or a bad ``--cwd``.
    """
    env = os.environ if environ is None else environ
    data = load_config(config)
    base = (cwd or config.parent).absolute()
    if cwd is not None and not cwd.is_dir():
        raise ConfigError(f"--cwd {cwd}: no such directory")
    home_dir = (home or Path(env.get("HOME") or Path.home())).absolute()
    runner = _mapping(data.get("runner"), "runner")
    cache = _mapping(data.get("cache"), "cache")
    host = _mapping(data.get("host"), "host")
    envs = _mapping(runner.get("envs"), "runner.envs")
    workdir = _path(host.get("workdir_parent"), base, "host.workdir_parent") or home_dir / ".cache" / "act"
    cache_dir = _path(cache.get("dir"), base, "cache.dir") or home_dir / ".cache" / "actcache"
    tool_cache = _path(envs.get("RUNNER_TOOL_CACHE"), base, "runner.envs.RUNNER_TOOL_CACHE") or workdir / TOOL_CACHE
    runner_file = _path(runner.get("file"), base, "runner.file") or base / ".runner"
    register_secret(str(cache.get("secret") or ""))
    _register_runner_file(runner_file)
    note = ""
    if cache.get("enabled") is False:
        note = "cache.enabled is false"
    elif cache.get("external_server"):
        note = "cache.external_server is set: this runner uses that server's store, not cache.dir"
    return Layout(workdir, cache_dir, home_dir, tool_cache, f"config {config}", cache_used=not note,
                  cache_note=note, runner_file=runner_file)


def _register_runner_file(path: Path) -> None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(data, Mapping):
        for key in ("token", "uuid"):
            register_secret(str(data.get(key) or ""))


def from_dirs(workdir: Path, cache_dir: Path, home: Path) -> Layout:
    """The stores named outright (``--workdir --cache-dir --home``); the tool cache at its default place."""
    workdir, cache_dir, home = workdir.absolute(), cache_dir.absolute(), home.absolute()
    return Layout(workdir, cache_dir, home, workdir / TOOL_CACHE, "directories given",
                  given=("workdir", "cache_dir", "home"))


_OPTION = {"workdir": "--workdir", "cache_dir": "--cache-dir", "home": "--home"}


def check(layout: Layout) -> None:
    """Refuse what is not a runner's store, with one line naming the path.

    A store named on the command line must be a readable directory; a store from a config may be absent
    (the runner has not written it yet). A workdir holding entries but no clone, tool cache or job
    workspace, or a cache dir holding entries but neither ``bolt.db`` nor ``cache/``, is not a runner's.

    Raises:
        ConfigError: the first problem found.
    """
    for name in ("workdir", "cache_dir", "home"):
        path: Path = getattr(layout, name)
        option = _OPTION[name] if name in layout.given else f"the runner's {name.replace('_', ' ')}"
        if not path.exists():
            if name in layout.given:
                raise ConfigError(f"{option} {path}: no such directory")
            continue
        if not path.is_dir():
            raise ConfigError(f"{option} {path}: not a directory")
        try:
            names = os.listdir(path)
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot read it ({exc.strerror})") from None
        if name == "workdir" and names and not any(_runner_entry(path, n) for n in names):
            raise ConfigError(f"{option} {path}: not a runner's store (no <2 hex>/<62 hex> clone, tool_cache or "
                              f"job workspace among its {len(names)} entries)")
        if name == "cache_dir" and names and not {"bolt.db", "cache"} & set(names):
            raise ConfigError(f"{option} {path}: not a runner's cache store (no bolt.db, no cache/ among its "
                              f"{len(names)} entries)")


def _runner_entry(workdir: Path, name: str) -> bool:
    return name == TOOL_CACHE or (
        (_FIRST.fullmatch(name) is not None or _WORKSPACE.fullmatch(name) is not None) and (workdir / name).is_dir())
