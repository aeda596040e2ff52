"""An admin's own runner on this host (``--runner-process VERSION=PID`` or ``VERSION=unit:NAME``), read, never touched.

From the process the suite reads only its command line (``-c``/``--config``), its working directory and two
variables of its environment, ``HOME`` and ``DOCKER_HOST`` (the rest of ``/proc/<pid>/environ`` is read past,
never kept), then the config as ``diagnose`` reads it (:mod:`harness.diagnose.layout`) and the name in its
``.runner`` file (the token and uuid there are registered as secrets, never printed). Nothing is written
into the runner's directories and no signal is ever sent (SIGQUIT ends a forgejo-runner): a stall is
captured from ``/proc`` alone. A unit's main PID comes from ``systemctl show``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.diagnose import layout as layouts
from harness.errors import ConfigError, HarnessError
from harness.paths import cache_root

KEPT_ENV = ("HOME", "DOCKER_HOST")
RUNNER_NAMES = ("forgejo-runner", "act_runner", "gitea-runner")
SYSTEMCTL_TIMEOUT = 10.0


class RunnerGone(HarnessError):
    """The runner's process is gone, or is not readable (one line naming the PID)."""


@dataclass(frozen=True)
class ExistingRunner:
    """An admin's runner process and where its stores are (duck-typed like a lab runner for the observers)."""

    key: str
    pid: int
    source: str  # "PID 1234" or "unit forgejo-runner (PID 1234)"
    name: str  # the name in its .runner file ("" when unreadable)
    config: Path | None
    cwd: Path
    layout: layouts.Layout
    docker_host: str | None = None
    unit: str | None = None
    cache_pid: int | None = None  # a separate `forgejo-runner cache-server` process, when there is one

    @property
    def workdir(self) -> Path:
        return self.layout.workdir

    @property
    def cache_dir(self) -> Path:
        return self.layout.cache_dir

    @property
    def home(self) -> Path:
        return self.layout.home

    @property
    def ledger_dir(self) -> Path:
        """The overlap ledger of this runner: in the suite's own cache, never in the runner's directories."""
        return cache_root() / "ledgers" / f"{self.name or 'runner'}-{self.pid}"

    def describe(self) -> str:
        """``runner regress-12 (PID 1234, config /etc/runner/config.yaml)``, no secret."""
        return f"runner {self.name or '?'} ({self.source}, {self.layout.source})"


def parse_spec(text: str) -> tuple[str, str]:
    """``12.1.2=1234`` / ``12.1.2=unit:forgejo-runner`` → (key, what).

    Raises:
        ConfigError: not VERSION=PID or VERSION=unit:NAME.
    """
    key, sep, what = text.partition("=")
    if not sep or not key or not what or not (what.isdigit() or (what.startswith("unit:") and len(what) > 5)):
        raise ConfigError(f"--runner-process {text!r} is not VERSION=PID or VERSION=unit:NAME")
    return key, what


def unit_pid(unit: str, *, systemctl: str | None = None) -> int:
    """The main PID of a systemd unit (``systemctl show -p MainPID --value``).

    Raises:
        ConfigError: no systemctl, an unknown unit, or a unit that is not running.
    """
    exe = systemctl or shutil.which("systemctl")
    if exe is None:
        raise ConfigError(f"--runner-process unit:{unit}: no systemctl on PATH; give the runner's PID instead")
    try:
        out = subprocess.run([exe, "show", "-p", "MainPID", "--value", unit], capture_output=True, text=True,
                             timeout=SYSTEMCTL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"--runner-process unit:{unit}: systemctl show failed ({exc})") from None
    value = out.stdout.strip()
    if out.returncode != 0 or not value.isdigit():
        raise ConfigError(f"--runner-process unit:{unit}: systemctl show says {out.stderr.strip() or value!r}")
    if int(value) == 0:
        raise ConfigError(f"--runner-process unit:{unit}: the unit has no main process (is it running?)")
    return int(value)


def _environ(pid: int) -> dict[str, str]:
    """``HOME`` and ``DOCKER_HOST`` of the process; every other variable is read past and dropped."""
    kept: dict[str, str] = {}
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return kept
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name.decode(errors="replace") in KEPT_ENV:
            kept[name.decode()] = value.decode(errors="replace")
    return kept


def config_arg(argv: list[str]) -> str | None:
    """The ``-c``/``--config`` value of a runner's command line (None when it runs without one)."""
    for i, word in enumerate(argv):
        if word in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        for prefix in ("-c=", "--config="):
            if word.startswith(prefix):
                return word[len(prefix):]
    return None


def is_runner(argv: list[str]) -> bool:
    """A forgejo-runner daemon's command line (its executable named like one, running ``daemon``)."""
    return bool(argv) and any(n in Path(argv[0]).name for n in RUNNER_NAMES) and "daemon" in argv


def _cache_server(pid: int, config: Path | None) -> int | None:
    """A separate ``forgejo-runner cache-server`` process whose config sits beside the daemon's (a lab runs one per
    runner, ``cache-server.yaml`` next to ``config.yaml``); None when there is none or the daemon has no config."""
    if config is None:
        return None
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        argv = proc.info.get("cmdline") or []
        if proc.info["pid"] == pid or "cache-server" not in argv or not any(n in Path(argv[0]).name
                                                                            for n in RUNNER_NAMES):
            continue
        own = config_arg(argv)
        if own and (Path(proc.info.get("cwd") or "/") / own).parent.resolve() == config.parent.resolve():
            return int(proc.info["pid"])
    return None


def runner_name(path: Path | None) -> str:
    """The ``name`` in a ``.runner`` file ("" when unreadable); its token and uuid are registered as secrets."""
    if path is None:
        return ""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    return str(data.get("name") or "") if isinstance(data, Mapping) else ""


def resolve(text: str, *, systemctl: str | None = None) -> ExistingRunner:
    """The runner of ``--runner-process VERSION=PID|unit:NAME``, read from ``/proc`` and its config.

    Raises:
        ConfigError: the spec is malformed, the unit has no process, the PID is gone or not a forgejo-runner,
            or its config is unreadable (one line naming the PID and the path).
    """
    key, what = parse_spec(text)
    unit = what.removeprefix("unit:") if what.startswith("unit:") else None
    pid = unit_pid(unit, systemctl=systemctl) if unit else int(what)
    where = f"unit {unit} (PID {pid})" if unit else f"PID {pid}"
    try:
        proc = psutil.Process(pid)
        argv = proc.cmdline()
        cwd = Path(proc.cwd())
    except psutil.NoSuchProcess:
        raise ConfigError(f"--runner-process {text}: {where} is not running") from None
    except psutil.AccessDenied:
        raise ConfigError(f"--runner-process {text}: {where} is not readable by this user (its command line, "
                          "working directory); run the suite as the runner's user or root") from None
    if not is_runner(argv):
        shown = Path(argv[0]).name if argv else "(no command line: a kernel thread or a zombie)"
        raise ConfigError(f"--runner-process {text}: {where} is not a forgejo-runner daemon (it runs {shown})")
    env = _environ(pid)
    home = Path(env["HOME"]) if env.get("HOME") else None
    config = config_arg(argv)
    config_path = (cwd / config) if config and not os.path.isabs(config) else Path(config) if config else None
    try:
        if config_path is not None:
            layout = layouts.from_config(config_path, cwd, home)
        else:  # no config: the runner's defaults, .runner in its working directory
            base = home or Path.home()
            layout = layouts.Layout(base / ".cache" / "act", base / ".cache" / "actcache", base,
                                    base / ".cache" / "act" / "tool_cache", "no config (the runner's defaults)",
                                    runner_file=cwd / ".runner")
    except ConfigError as exc:
        raise ConfigError(f"--runner-process {text}: {where}: {exc}") from None
    return ExistingRunner(key, pid, where, runner_name(layout.runner_file), config_path, cwd, layout,
                          env.get("DOCKER_HOST"), unit, _cache_server(pid, config_path))


def alive(runner: ExistingRunner) -> bool:
    """The process is still the runner it was (not gone, not a reused PID)."""
    try:
        return is_runner(psutil.Process(runner.pid).cmdline())
    except psutil.Error:
        return False


def capture(runner: ExistingRunner, *, cpu_seconds: float = 2.0) -> dict[str, object]:
    """A stalled runner captured without a signal: its state, per-thread CPU over ``cpu_seconds``, connections."""
    import threading

    found: dict[str, object] = {"pid": runner.pid, "signal": None}
    try:
        proc = psutil.Process(runner.pid)
        found["state"] = proc.status()
        before = {t.id: t.user_time + t.system_time for t in proc.threads()}
        threading.Event().wait(cpu_seconds)
        after = {t.id: t.user_time + t.system_time for t in proc.threads()}
        found["thread_cpu_pct"] = {str(tid): round(100 * (after[tid] - before.get(tid, after[tid])) / cpu_seconds, 1)
                                   for tid in after}
        found["connections"] = [f"{c.laddr.ip}:{c.laddr.port}->{c.raddr.ip if c.raddr else ''}:"
                                f"{c.raddr.port if c.raddr else ''} {c.status}" for c in proc.net_connections("tcp")]
    except psutil.Error as exc:
        found["state"] = f"gone ({type(exc).__name__})"
    return found


def kill_for_dump(runner: ExistingRunner) -> dict[str, object]:
    """``--kill-for-dump``: the capture, then SIGQUIT (the runner prints its goroutines and EXITS; the admin's
    service manager must restart it). Only ever called when the user asked for it."""
    import signal

    found = capture(runner)
    try:
        os.kill(runner.pid, signal.SIGQUIT)
        found["signal"] = "QUIT (the runner exits; its service manager restarts it)"
    except OSError as exc:
        found["signal"] = f"QUIT failed: {exc}"
    return found
