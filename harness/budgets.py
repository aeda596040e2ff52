"""The one table of named waits and budgets (seconds).

Every wait in the suite names one of these; a timeout message carries the name, so a user can
raise the right one (``REGRESS_BUDGET_<NAME>=seconds`` in the environment overrides any of them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Budgets:
    """Named budgets in seconds."""

    forgejo_ready: float = 60.0  # `forgejo web` start to /api/v1/version answering
    forgejo_migrate: float = 180.0  # `forgejo migrate` on a fresh sqlite database
    forgejo_cli: float = 60.0  # one forgejo admin / forgejo-cli call
    runner_online: float = 60.0  # runner start to its declare line and first poll
    runner_stop: float = 20.0  # SIGTERM to exit, before SIGKILL
    proxy_settle: float = 5.0  # the slow action server's requests in flight, beyond their delay, at its stop
    signal_settle: float = 3.0  # SIGSTOP / SIGCONT sent to the process showing the new state
    fault_aftermath: float = 120.0  # a fault released at the verdict → the runner watched for what it does next
    fault_quiet: float = 30.0  # no report about the task this long after the release: decided (> 25.6 s, the last back-off)
    trigger_reported: float = 10.0  # a trigger line in the runner's log → Forgejo shows it (the runner reported)
    dockerd_ready: float = 60.0  # our dockerd start to its socket answering
    docker_stop: float = 30.0
    cache_server_ready: float = 20.0
    run_appears: float = 60.0  # push to the run existing in the job view
    pickup: float = 120.0  # job waiting to a runner picking it (queue time included)
    job_done: float = 900.0  # job running to every job of the run done
    zombie_margin: float = 30.0  # added to the zombie timeout + cron period for failed-by-server waits
    runner_stalled: float = 15.0  # a running task's updated_at not advancing (report_interval 1s + margin)
    final_log: float = 20.0  # job done with the runner's result → its final log lines (the 🏁 line) shown, when late
    runner_settle: float = 15.0  # job done → the runner's own end-of-job lines and container clean-up
    http_connect: float = 5.0
    http_read: float = 30.0
    api_write: float = 30.0  # one write call to Forgejo (create repo, commit, dispatch) retried after transient failures
    dispatch_lookup: float = 10.0  # Forgejo 11 only: a lost dispatch's run showing up as a task before we dispatch again
    action_push: float = 60.0  # one git command on a phased cell's action copy (push to Forgejo, commit, tag)
    upstream_git: float = 120.0  # diagnose --check-upstream: one git ls-remote or fetch of a clone's remote
    prepare_step: float = 1800.0  # one `lab prepare` build step (debootstrap, go install)
    setup_cold: float = 60.0  # default "Set up job" budget, cold action cache
    setup_warm: float = 20.0  # default "Set up job" budget, warm action cache

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Budgets:
        """Defaults, overridden by ``REGRESS_BUDGET_<NAME>`` variables.

        Raises:
            ValueError: a variable that is not a positive number.
        """
        env = os.environ if environ is None else environ
        changes: dict[str, float] = {}
        for f in fields(cls):
            raw = env.get(f"REGRESS_BUDGET_{f.name.upper()}")
            if raw is None:
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"REGRESS_BUDGET_{f.name.upper()}={raw!r} is not a number of seconds") from None
            if value <= 0:
                raise ValueError(f"REGRESS_BUDGET_{f.name.upper()}={raw!r} must be positive")
            changes[f.name] = value
        return replace(cls(), **changes)


BUDGETS = Budgets.from_env()
