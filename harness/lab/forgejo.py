"""A throwaway Forgejo: app.ini for sqlite, migrate, an admin, a token, ``web`` detached."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import requests

from harness import procs
from harness.budgets import BUDGETS
from harness.errors import LabError
from harness.redact import register_secret
from harness.runners.binaries import Binary
from harness.waiting import adaptive_wait, wait_for

ADMIN = "regress-admin"
BOOST_NICE = -5
# the UUID on a line of its own, or run into Forgejo's next log line (stdout has no newline before stderr's
# "2026/12/01 03:04:52 … running Forgejo using the root user" when both go to one pipe)
UUID = re.compile(r"(?m)^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?=\s*$|\d{4}/\d\d/\d\d )")
ROOT_ENV = {"GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true"}


@dataclass(frozen=True)
class ZombieSettings:
    """Lab-sized task timeouts (the defaults would let a lost runner's job hang 10–15 minutes)."""

    zombie_timeout: str = "30s"
    zombie_cron: str = "@every 10s"
    endless_timeout: str = "1h"

    def worst_case_seconds(self) -> float:
        """Zombie timeout + cron period: how long a lost runner's job can stay ``running``."""
        from harness.forgejo.models import parse_go_duration

        timeout = parse_go_duration(self.zombie_timeout) or 600.0
        cron = parse_go_duration(self.zombie_cron.replace("@every", "").strip()) or 300.0
        return timeout + cron


def local_session() -> requests.Session:
    """A session for the lab's own server: proxies from the environment never apply (nor cost a lookup)."""
    session = requests.Session()
    session.trust_env = False
    return session


_handed_out: set[int] = set()
_handing_out = threading.Lock()


def free_port(host: str) -> int:
    """A TCP port free on ``host`` right now and not handed out before in this process.

    The kernel may give the same ephemeral port to two probes in a row; a lab binds several ports
    (Forgejo, each runner's cache server and proxy) only later, so each port is handed out once.
    """
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _handing_out:  # threads start private runners side by side
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise LabError(f"no free TCP port found on {host}")


def static_root_for(binary: Binary) -> Path | None:
    """Templates/options for a build without bindata: ``REGRESS_FORGEJO_STATIC_ROOT`` or ``<binary>.static``."""
    env = os.environ.get("REGRESS_FORGEJO_STATIC_ROOT")
    if env:
        return Path(env)
    candidate = binary.path.with_name(binary.path.name + ".static")
    return candidate.resolve() if candidate.exists() else None


@dataclass(frozen=True)
class IniSecrets:
    """The secrets Forgejo would otherwise generate and *write into app.ini* on its first start.

    Each forgejo process (``web``, ``admin user create``, ``forgejo-cli actions register``) that
    finds one missing rewrites app.ini in place, so concurrent processes read a torn file ("Unable
    to load config file"). Written up front, app.ini is only ever read by Forgejo.
    """

    secret_key: str
    internal_token: str
    jwt_secret: str

    @classmethod
    def generate(cls) -> IniSecrets:
        """Fresh values in the shapes Forgejo accepts (JWT_SECRET: 32 bytes, unpadded base64url)."""
        jwt = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        return cls(secrets.token_urlsafe(48), secrets.token_urlsafe(48), jwt)


def render_app_ini(work: Path, host: str, port: int, static_root: Path | None, zombie: ZombieSettings,
                   ini_secrets: IniSecrets | None = None, actions_url: str = "self") -> str:
    """The app.ini of a lab Forgejo (sqlite, install-locked, actions on, ``DEFAULT_ACTIONS_URL = self``
    or ``actions_url``: a user's mirror of the actions, ``--actions-url``)."""
    static = f"STATIC_ROOT_PATH = {static_root}\n" if static_root else ""
    keys = ini_secrets or IniSecrets.generate()
    for value in (keys.secret_key, keys.internal_token, keys.jwt_secret):
        register_secret(value)  # never printed; redacted should a log or file quote one
    return f"""APP_NAME = regress-lab
RUN_MODE = prod
WORK_PATH = {work}
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = {host}
HTTP_PORT = {port}
DOMAIN = {host}
ROOT_URL = http://{host}:{port}/
LOCAL_ROOT_URL = http://{host}:{port}/
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
OFFLINE_MODE = true
APP_DATA_PATH = {work}/data
{static}
[database]
DB_TYPE = sqlite3
PATH = {work}/data/forgejo.db
SQLITE_JOURNAL_MODE = WAL
; concurrent writers (seeding, parallel tests, runner updates) wait instead of failing "database is locked"
SQLITE_TIMEOUT = 20000

[repository]
ROOT = {work}/data/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
PASSWORD_COMPLEXITY = off
MIN_PASSWORD_LENGTH = 8
; a throwaway admin with a random password: the default (pbkdf2, 320000 rounds) costs a tenth of a
; CPU second per hash, paid at its creation and at every web sign-in of the job view
PASSWORD_HASH_ALGO = pbkdf2_v1
SECRET_KEY = {keys.secret_key}
INTERNAL_TOKEN = {keys.internal_token}

[oauth2]
JWT_SECRET = {keys.jwt_secret}

[service]
DISABLE_REGISTRATION = true
REQUIRE_SIGNIN_VIEW = false

[log]
MODE = console
LEVEL = Info

[actions]
ENABLED = true
DEFAULT_ACTIONS_URL = {actions_url}
ZOMBIE_TASK_TIMEOUT = {zombie.zombie_timeout}
ENDLESS_TASK_TIMEOUT = {zombie.endless_timeout}
ABANDONED_JOB_TIMEOUT = 24h

[cron.stop_zombie_tasks]
ENABLED = true
RUN_AT_START = false
SCHEDULE = {zombie.zombie_cron}

[cron.update_checker]
ENABLED = false

[queue]
TYPE = channel

[mailer]
ENABLED = false

[session]
PROVIDER = file
"""


@dataclass
class ForgejoServer:
    """One lab Forgejo; every path is under ``work``."""

    binary: Binary
    work: Path
    host: str
    port: int
    lab_id: str
    zombie: ZombieSettings
    pid: int | None = None
    actions_url: str = "self"  # [actions] DEFAULT_ACTIONS_URL

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def app_ini(self) -> Path:
        """The config file."""
        return self.work / "app.ini"

    @property
    def log_file(self) -> Path:
        """stdout/stderr of ``forgejo web``."""
        return self.work / "forgejo.log"

    @property
    def token_file(self) -> Path:
        """The admin's API token (0600)."""
        return self.work / "token"

    @property
    def password_file(self) -> Path:
        """The admin's password (0600), for the web job view."""
        return self.work / "password"

    def base_cmd(self) -> list[str]:
        """``forgejo --config … --work-path …``."""
        return [str(self.binary.path), "--config", str(self.app_ini), "--work-path", str(self.work)]

    def cli(self, *args: str, what: str, stdin: str | None = None) -> str:
        """Run a forgejo subcommand; its stdout, or a LabError with the tail of its output."""
        try:
            proc = subprocess.run([*self.base_cmd(), *args], capture_output=True, text=True, input=stdin,
                                  timeout=BUDGETS.forgejo_cli, env={**os.environ, **ROOT_ENV,
                                                                    procs.LAB_ENV: self.lab_id}, check=False)
        except subprocess.TimeoutExpired:
            raise LabError(f"forgejo {what} did not finish within forgejo_cli={BUDGETS.forgejo_cli:g}s") from None
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
            raise LabError(f"forgejo {what} failed (exit {proc.returncode}):\n" + "\n".join(out))
        return proc.stdout

    def configure(self) -> None:
        """Write app.ini into a fresh work dir."""
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o700)
        (self.work / "data").mkdir(exist_ok=True)
        _write_secret(self.app_ini, render_app_ini(self.work, self.host, self.port, static_root_for(self.binary),
                                                   self.zombie, actions_url=self.actions_url).rstrip("\n"))

    def set_address(self, host: str, port: int) -> None:
        """Point the server at its final address, replacing app.ini atomically (forgejo CLI calls read it)."""
        self.host, self.port = host, port
        text = self.app_ini.read_text()
        for key, value in (("HTTP_ADDR", host), ("HTTP_PORT", str(port)), ("DOMAIN", host),
                           ("ROOT_URL", f"http://{host}:{port}/"), ("LOCAL_ROOT_URL", f"http://{host}:{port}/")):
            text = re.sub(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        tmp = self.app_ini.with_name(self.app_ini.name + ".tmp")
        tmp.write_text(text)
        os.chmod(tmp, os.stat(self.app_ini).st_mode & 0o777)
        tmp.replace(self.app_ini)

    def migrate(self) -> None:
        """``forgejo migrate``: create the schema (the CLI commands need it)."""
        try:
            self.cli("migrate", what="migrate")
        except LabError as exc:
            raise LabError(f"{exc}\n(config {self.app_ini})") from None

    def start(self, *, boost: bool = True) -> None:
        """Start ``forgejo web`` detached; output goes to ``forgejo.log``.

        ``boost``: at a higher CPU priority (nice -5, where permitted) until :meth:`unboost`: during a
        boot its start is the critical path, and the CLI calls and the engine starting beside it
        would otherwise slow it down on a small machine.
        """
        if _port_taken(self.host, self.port):
            raise LabError(f"port {self.port} on {self.host} is already taken; Forgejo cannot bind it")
        nice = ["nice", "-n", str(BOOST_NICE)] if boost and os.geteuid() == 0 and shutil.which("nice") else []
        self.pid = procs.spawn([*nice, *self.base_cmd(), "web"], log_file=self.log_file, lab_id=self.lab_id,
                               env={**os.environ, **ROOT_ENV}, cwd=self.work)

    def unboost(self) -> None:
        """Back to the normal CPU priority, so jobs and runners compete with it as usual: every task of
        its process group (it runs in a session of its own), threads and the git processes it started."""
        if self.pid:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PGRP, self.pid, 0)

    def wait_ready(self) -> str:
        """Wait for ``/api/v1/version``; returns the version string."""

        session = local_session()

        def probe() -> str | None:
            if not procs.alive(self.pid):
                tail = self.log_file.read_text(errors="replace").splitlines()[-8:]
                raise LabError(f"forgejo web exited during start; log {self.log_file}:\n" + "\n".join(tail))
            try:
                response = session.get(self.url + "/api/v1/version", timeout=2)
            except requests.RequestException:
                return None
            return str(response.json().get("version")) if response.status_code == 200 else None

        version = wait_for(f"Forgejo at {self.url} to answer /api/v1/version", "forgejo_ready", probe,
                           lambda v: v is not None, describe=lambda v: "not answering",
                           evidence=str(self.log_file), wait=adaptive_wait(fast=0.02, slow=0.05))
        assert version is not None
        return version

    def create_admin(self) -> None:
        """Create the admin user (``forgejo admin user create``; its password in a 0600 file, never printed)."""
        password = secrets.token_urlsafe(18)
        register_secret(password)
        self.cli("admin", "user", "create", "--username", ADMIN, "--password", password, "--email",
                 f"{ADMIN}@example.test", "--admin", "--must-change-password=false", what="admin user create")
        _write_secret(self.password_file, password)

    def create_token(self) -> str:
        """An ``all``-scoped API token for the admin, asked of the running server with the admin's
        password (a request costs a fraction of another CLI process); kept in a 0600 file, never printed.

        Raises:
            LabError: the server refused or answered something without a token.
        """
        password = self.password_file.read_text().strip()
        try:
            response = local_session().post(f"{self.url}/api/v1/users/{ADMIN}/tokens", auth=(ADMIN, password), timeout=30,
                                     json={"name": f"regress-{secrets.token_hex(4)}", "scopes": ["all"]})
        except requests.RequestException as exc:
            raise LabError(f"creating the admin's API token at {self.url} failed: {type(exc).__name__}") from None
        token = response.json().get("sha1") if response.status_code == 201 else None
        if not isinstance(token, str) or not re.fullmatch(r"[0-9a-f]{40}", token):
            raise LabError(f"creating the admin's API token at {self.url} answered HTTP {response.status_code} "
                           f"without a token; Forgejo's log: {self.log_file}")
        register_secret(token)
        _write_secret(self.token_file, token)
        return token

    def register_runner(self, name: str, secret: str, labels: list[str]) -> str:
        """Offline registration (``forgejo-cli actions register``); returns the runner UUID."""
        register_secret(secret)
        out = self.cli("forgejo-cli", "actions", "register", "--secret-stdin", "--name", name,
                       "--labels", ",".join(labels), what=f"forgejo-cli actions register ({name})",
                       stdin=secret)
        found = UUID.findall(out)  # stdout may carry log lines too (the running-as-root warning)
        if not found:
            raise LabError(f"forgejo-cli actions register ({name}) printed no runner UUID: {out.strip()[-300:]!r}")
        return str(found[-1])

    def stop(self) -> str:
        """SIGTERM, then SIGKILL after ``runner_stop``."""
        return procs.stop(self.pid, budget=BUDGETS.runner_stop)


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
