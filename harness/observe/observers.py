"""The observers of one cell, and the choice of them from what the runner allows.

A lab runner allows its log file (tailed: runner control and the watch's wake-up come from there,
not from polling the job log), a CPU sampler, its stores, the overlap ledger and stall capture by
signal; a runner the suite did not start allows the user's log and stall commands only.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import lateness
from harness.errors import HarnessError, PollTimeout
from harness.faults.proxy import FaultProxy
from harness.faults.slow_http import SlowHttpProxy
from harness.forgejo.models import JobView, Status, first_log_runner
from harness.forgejo.web import JobRef
from harness.observe import aftermath, runner_log
from harness.observe import cache as cache_obs
from harness.observe import cpu as cpu_obs
from harness.observe import leaks as leak_obs
from harness.observe.base import CellScope, Done, Findings, Poll, Quiet, write_file, write_text
from harness.observe.commands import run_template
from harness.observe.overlap import Activity, Window
from harness.observe.stall import StallWatch, capture_lab_runner
from harness.procs import alive
from harness.runners import control
from harness.runners.process import LabRunner
from harness.scenarios import FaultSpec, Scenario
from harness.target import actions_base
from harness.verdict import Violation, marker_found, setup_window
from harness.waiting import wait_for

PER_RUNNER_RULES = ("cache-growth", "cpu-over-budget")  # measured per runner, not per job
JOB_END = "🏁"  # the runner's last job-log line (``🏁  Job succeeded``): wake the watch


def phase_bounds(view: JobView | None) -> dict[str, tuple[float, float]]:
    """Wall-clock bounds of "Set up job" (to ``⭐ Run Main`` of the first step), the steps, "Complete job"."""
    if view is None or not view.steps:
        return {}
    bounds: dict[str, tuple[float, float]] = {}
    setup = setup_window(view)
    if setup is not None:
        bounds["setup"] = setup
    middle = [line.timestamp for s in view.workflow_steps() for line in s.lines]
    if middle:
        bounds["steps"] = (min(middle), max(middle))
    last = view.steps[-1]
    if last is not view.steps[0]:  # "Complete job" runs to the task's end (a frozen runner's: to the stop)
        start = last.lines[0].timestamp if last.lines else last.started
        ends = [t for t in (last.lines[-1].timestamp if last.lines else None,
                            last.started + last.duration if last.started and last.duration else None) if t]
        if start is not None and ends:
            bounds["complete"] = (start, max(start, *ends))
    return bounds


class LogTail:
    """Follows a growing log file from an offset in a thread; calls ``on_line`` for each new line."""

    def __init__(self, path: Path, offset: int, on_line: Callable[[str], None], interval: float = 0.05) -> None:
        self.path, self.offset, self.on_line, self.interval = path, offset, on_line, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="regress-log-tail", daemon=True)
        self._rest = b""

    def start(self) -> LogTail:
        """Start following."""
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        self.offset += len(chunk)
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        for line in lines:
            self.on_line(line.decode("utf-8", "replace"))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def stop(self, wait: float | None = 2.0) -> None:
        """Stop following: the thread ends (within ``wait`` seconds; None: however long its last line takes),
        then what is left is read."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=wait)
        if not self._thread.is_alive():
            self._read()


class LabRunnerLog(Quiet):
    """The lab runner's own log: its slice for this job, known signatures, the end-of-job wake-up."""

    name = "runner-log"

    def __init__(self, runner: LabRunner) -> None:
        self.runner = runner
        self.offset = 0
        self.scope: CellScope | None = None

    def before(self, cell: CellScope) -> None:
        """Remember where the log ends; tail it for the job's last line."""
        self.scope = cell
        self.offset = runner_log.size(self.runner.log_file)

        def on_line(line: str) -> None:
            if JOB_END in line:
                cell.wake.set()

        tail = LogTail(self.runner.log_file, self.offset, on_line).start()
        cell.observing.callback(tail.stop)

    def fetch(self, done: Done) -> str | None:
        """This job's lines of the runner log so far."""
        assert self.scope is not None
        text = runner_log.read_from(self.runner.log_file, self.offset)
        return attribute(text, self.scope, done)

    def after(self, done: Done) -> Findings:
        """The runner's log slice (after its end-of-job lines arrived), signatures as violations."""
        assert self.scope is not None
        text = settle(self.scope, lambda: self.fetch(done))
        return signatures(text)


class CommandRunnerLog(Quiet):
    """A runner the suite did not start: its log through the user's ``--runner-log-command``."""

    name = "runner-log"
    time_format = "%Y-%m-%dT%H:%M:%SZ"  # of {start} and {end}

    def __init__(self, template: str) -> None:
        self.template = template
        self.scope: CellScope | None = None
        self.why: str | None = None
        self.raw: str | None = None  # the whole window the command printed (before attribution to this task)

    def before(self, cell: CellScope) -> None:
        """Nothing to snapshot: the command is given the job's time window."""
        self.scope = cell

    def fetch(self, done: Done) -> str | None:
        """Run the command for the job's window."""
        assert self.scope is not None
        stamps = [line.timestamp for v in done.views for line in v.log_lines()]
        start = datetime.fromtimestamp(min(stamps) - 5 if stamps else time.time() - 600, UTC)
        who = first_log_runner((done.raw_log or "").splitlines())
        out = run_template(self.template, start=start.strftime(self.time_format),
                           end=datetime.now(UTC).strftime(self.time_format), runner=who[0] if who else "")
        self.why, self.raw = out.unavailable, out.text
        return attribute(out.text, self.scope, done) if out.text is not None else None

    def after(self, done: Done) -> Findings:
        """The command's output (after the end-of-job lines arrived), signatures as violations."""
        assert self.scope is not None
        text = settle(self.scope, lambda: self.fetch(done))
        if text is None:
            return Findings(unavailable={"runner_log": self.why or "no output"})
        return signatures(text)


JOB_LOG_SIGNATURES = ("git-refs-not-updated",)  # runner-log signatures the runner also writes into the job log


class JobLogSignatures(Quiet):
    """Known signatures in the job log itself: seen for any runner, also one whose own log nobody can read."""

    name = "job-log-signatures"

    def after(self, done: Done) -> Findings:
        """A violation per signature found in the job's log (the line quoted)."""
        found = [(sig, line) for sig, line in runner_log.matches(done.log_text()) if sig.name in JOB_LOG_SIGNATURES]
        violations = tuple(Violation(f"signature:{sig.name}", f"{sig.meaning}; the job log says: {line[:200]}")
                           for sig, line in found if sig.severity == "fail")
        return Findings(violations, {"job_log_signatures": [{"name": s.name, "line": line} for s, line in found]}
                        if found else {})


class NoRunnerLog(Quiet):
    """A runner whose log nobody can read: said once, as unavailable."""

    name = "runner-log"

    def after(self, done: Done) -> Findings:
        """Why the runner log is missing."""
        return Findings(unavailable={"runner_log": "runner not started by the suite (give --runner-log-command)"})


def workflow_name(scenario: Scenario) -> str:
    """The workflow's ``name:`` (the runner prefixes its job lines with ``[<name>/<job id>]``), else the scenario's."""
    found = re.search(r"^name:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", scenario.template, re.M)
    return found[1] if found else scenario.name


def job_line(cell: CellScope, line: str) -> bool:
    """A runner-log line of this cell's (first) job: the runner prefixes them ``[<workflow name>/<job id>]``."""
    job = cell.job_ids[0] if cell.job_ids else cell.scenario.name
    return f"[{workflow_name(cell.scenario)}/{job}]" in line


def attribute(text: str, cell: CellScope, done: Done) -> str:
    """The lines of a runner-log window that belong to this cell's jobs."""
    job = cell.job_ids[0] if cell.job_ids else cell.scenario.name
    return runner_log.attribute(text, task_id=done.task_id, job=job, workflow=workflow_name(cell.scenario))


def settle(cell: CellScope, fetch: Callable[[], str | None]) -> str | None:
    """Fetch the runner log once the scenario's end-of-job markers are there (within ``runner_settle``)."""
    must = cell.scenario.expect.runner_log_must
    if must:  # end-of-job lines come after the result: let them arrive
        with contextlib.suppress(HarnessError):
            wait_for("the runner's end-of-job log lines", "runner_settle", fetch,
                     lambda t: t is not None and all(marker_found(m, t) for m in must),
                     budgets=cell.budgets, describe=lambda t: "markers not (yet) printed")
    return fetch()


def signatures(text: str | None) -> Findings:
    """Known runner-log signatures: observations, and violations for the failing ones."""
    found = runner_log.matches(text or "")
    violations = tuple(Violation(f"signature:{sig.name}", f"{sig.meaning}: {line[:200]}")
                       for sig, line in found if sig.severity == "fail" and sig.name != "network-cleanup")
    observations = {"signatures": [{"name": s.name, "line": line, "meaning": s.meaning} for s, line in found]}
    return Findings(violations, observations if found else {}, runner_log=text)


class Stores(Quiet):
    """The runner's stores (cache server, tool cache, action clones, HOME): growth over the job; cold or warm."""

    name = "stores"

    def __init__(self, runner: LabRunner) -> None:
        self.runner = runner
        self.before_mb: dict[str, cache_obs.StoreSize] = {}
        self.cold: bool | None = None
        self.scope: CellScope | None = None

    def _measure(self) -> dict[str, cache_obs.StoreSize]:
        return cache_obs.runner_stores(self.runner.workdir, self.runner.cache_dir, self.runner.home)

    def before(self, cell: CellScope) -> None:
        """Sizes before, and whether every action the workflow uses is already in the runner's cache."""
        self.scope = cell
        uses = cell.uses()
        base = f"{actions_base(cell.target).rstrip('/')}/"
        self.cold = (not all(cache_obs.action_cached(self.runner.workdir, u, base + u.split("@")[0]) for u in uses)
                     if uses else False)
        self.before_mb = self._measure()

    def after(self, done: Done) -> Findings:
        """Growth per store; ``cache-growth`` when the cache server's store grew over the scenario's budget."""
        assert self.scope is not None
        after = self._measure()
        growth = {k: round(after[k].mb - self.before_mb[k].mb, 2) for k in after}
        observations = {"store_growth_mb": growth,
                        "stores_after": {k: {"mb": round(v.mb, 2), "entries": v.entries} for k, v in after.items()},
                        "stores_measured_at": round(time.time(), 3)}  # orders a runner's stores over the session
        budget = self.scope.scenario.expect.observe.get("cache_growth_mb")
        violations = ()
        if budget and growth["cache_server"] > budget.limit:
            violations = (Violation("cache-growth", f"the runner's cache store grew {growth['cache_server']:.1f} MB "
                                    f"> {budget.limit:g} MB in one job", budget.severity),)
        return Findings(violations, observations, cold=self.cold)


class Cpu(Quiet):
    """The runner's CPU (with its children and cache server) per phase; the scenario's setup CPU budget."""

    name = "cpu"

    def __init__(self, runner: LabRunner, cold: Callable[[], bool | None]) -> None:
        self.runner = runner
        self.cold = cold
        self.sampler: cpu_obs.CpuSampler | None = None
        self.scope: CellScope | None = None

    def before(self, cell: CellScope) -> None:
        """Start sampling; stopped when the watch ends."""
        self.scope = cell
        self.sampler = cpu_obs.CpuSampler(self.runner.pid, [self.runner.cache_pid]).start()
        cell.observing.callback(self.sampler.stop)

    def after(self, done: Done) -> Findings:
        """Mean CPU per phase; ``cpu-over-budget`` for "Set up job"; cpu.csv and cpu.png."""
        assert self.sampler is not None and self.scope is not None
        samples = self.sampler.stop()
        bounds = phase_bounds(done.view)
        phases = cpu_obs.phase_means(samples, bounds, self.sampler.interval)
        unavailable = {} if samples else {"cpu": self.sampler.error or "no samples"}
        observe = self.scope.scenario.expect.observe  # warm runs have their own budget where the scenario names one
        budget = (observe.get("cpu_setup_pct_warm") if self.cold() is False else None) or observe.get("cpu_setup_pct")
        setup_pct = (phases.get("setup") or {}).get("runner_pct")
        violations: tuple[Violation, ...] = ()
        if budget and setup_pct is None:
            violations = (Violation("observation-unavailable", "no CPU sample fell into 'Set up job' (too short or "
                                    "unsampled): the CPU budget was not checked", "report"),)
        elif budget and isinstance(setup_pct, float | int) and setup_pct > budget.limit:
            violations = (Violation("cpu-over-budget", f"the runner used {setup_pct:.0f}% of a core during "
                                    f"'Set up job' > {budget.limit:g}%", budget.severity),)
        evidence = ()
        if samples:
            evidence = (write_file("cpu.csv", lambda p: cpu_obs.write_csv(samples, p)),
                        write_file("cpu.png", lambda p: _png(samples, bounds, p, self.scope)))
        return Findings(violations, {"cpu": phases}, unavailable, evidence)


def _png(samples: list[cpu_obs.Sample], bounds: dict[str, tuple[float, float]], path: Path,
         scope: CellScope | None) -> None:
    """cpu.png, titled with the cell and its class and marked with the scope's moments (read when the bundle
    is written: the class and a late fault or stall are known then)."""
    title = ""
    if scope is not None:
        title = (f"{scope.scenario.name} · runner {scope.handle.key} (v{scope.handle.version}) · "
                 f"{scope.failure_class or 'pass'}")
    why_not = cpu_obs.write_png(samples, bounds, path, title=title, marks=scope.marks if scope else None)
    if why_not:
        path.with_name("cpu.png.txt").write_text(f"no plot: {why_not}\n")


class Leftovers(Quiet):
    """Containers, networks and volumes the job left on the lab's Docker engine."""

    name = "docker-leftovers"

    def __init__(self, client: Any) -> None:
        self.client = client
        self.before_inv: leak_obs.Inventory | None = None
        self.error: str | None = None
        self.scope: CellScope | None = None

    def before(self, cell: CellScope) -> None:
        """The engine's inventory before the push."""
        self.scope = cell
        self.before_inv, self.error = leak_obs.safe_inventory(self.client)

    def after(self, done: Done) -> Findings:
        """What is still there once the runner's clean-up had ``runner_settle`` to finish."""
        assert self.scope is not None
        if self.before_inv is None:
            return Findings(unavailable={"docker": self.error or "no inventory"})
        before, text = self.before_inv, done.log_text()

        def remaining() -> list[str]:
            now, _ = leak_obs.safe_inventory(self.client)
            if now is None:
                return []
            named = tuple(n for n in now.containers - before.containers if n in text)
            return leak_obs.leftovers(before, now, done.task_id, named)

        try:  # the runner removes the job's containers after it reported the result: give it time
            wait_for("the runner's clean-up of the job's containers", "runner_settle", remaining, lambda x: not x,
                     budgets=self.scope.budgets, describe=lambda x: f"still there: {x}")
            left: list[str] = []
        except HarnessError:
            left = remaining()
        settle_s = self.scope.budgets.runner_settle
        return Findings(tuple(Violation("docker-leftover", f"{item} is still there {settle_s:g}s after the job")
                              for item in left), {"leftovers": left})


class Overlap(Quiet):
    """Other cells on the same runner meanwhile: per-runner figures of this cell become report-only."""

    name = "overlap"

    def __init__(self, ledger: Path, cell_name: str) -> None:
        self.activity = Activity(ledger)  # a lab runner's dir; an admin's runner: the suite's cache, never its dirs
        self.cell_name = cell_name
        self.window: Window | None = None
        self.shared: list[str] | None = None

    def before(self, cell: CellScope) -> None:
        """Open this cell's window in the runner's ledger."""
        self.window = self.activity.begin(self.cell_name)
        cell.observing.callback(self._end)

    def _end(self) -> list[str]:
        if self.shared is None and self.window is not None:
            self.shared = self.activity.end(self.window)
        return self.shared or []

    def after(self, done: Done) -> Findings:
        """Which cells shared the runner; their per-runner rules are demoted."""
        shared = self._end()
        if not shared:
            return Findings()
        return Findings(observations={"shared_runner_with": shared}, demote=PER_RUNNER_RULES,
                        note=f"(other jobs ran on this runner meanwhile: {', '.join(shared)}; not attributable to this job)")


class Stall(Quiet):
    """Liveness: a running task whose ``updated_at`` stops advancing; the stalled runner captured."""

    name = "stall"

    def __init__(self, capture: Callable[[], dict[str, Any]] | None,
                 runner_step: Callable[[], str | None] = lambda: None) -> None:
        self.capture = capture
        self.runner_step = runner_step
        self.watches: dict[str, StallWatch] = {}
        self.captured: dict[str, Any] = {}
        self.step: str = "?"
        self.fired: StallWatch | None = None
        self.scope: CellScope | None = None

    def before(self, cell: CellScope) -> None:
        """Nothing to snapshot."""
        self.scope = cell

    def on_poll(self, poll: Poll) -> None:
        """Feed every task of the run; on the first stall, capture the runner."""
        assert self.scope is not None
        for task in poll.tasks:
            if task.run_number != self.scope.run_index:
                continue
            if self.fired is not None:  # fed on: do the reports resume (late), or never (stalled)?
                if self.fired.task_id == task.id:
                    self.fired.feed(poll.tasks, self.scope.run_index, task.job_name)
                continue
            watch = self.watches.setdefault(task.job_name, StallWatch(budget=self.scope.budgets.runner_stalled))
            if watch.feed(poll.tasks, self.scope.run_index, task.job_name):
                self.fired = watch
                self._fire(poll, watch)

    def _fire(self, poll: Poll, watch: StallWatch) -> None:
        assert self.scope is not None
        running = [s.name for s in (poll.view.steps if poll.view else ()) if s.status is Status.RUNNING]
        own = self.runner_step()  # the runner's own last ⭐ line: the server may still show an earlier step
        self.step = own or (f"{running[-1]} (as Forgejo last showed it)" if running else "?")
        self.scope.marks["stall"] = watch.stalled_wall or time.time()
        self.scope.notify(f"{self.scope.repo}: runner stalled (task updated_at silent {watch.silent_for:.0f}s, "
                          f"step {self.step})")
        if self.capture is not None:
            self.captured = self.capture()
            self.scope.wake.set()

    def after(self, done: Done) -> Findings:
        """``runner-stalled`` with what was captured; ``report-late`` (report-only) when the reports resumed and the
        runner's own result reached Forgejo (:mod:`harness.lateness`)."""
        watch = self.fired
        if watch is None:
            return Findings()
        if done.tasks:  # the last task list: the final updated_at when the reports resumed with the result
            watch.feed(done.tasks, self.scope.run_index if self.scope else 0,
                       next((t.job_name for t in done.tasks if t.id == watch.task_id), ""))
        budget = watch.budget
        silence = lateness.Silence(watch.task_id, watch.late_seconds, self.step, budget, str(watch.last_updated))
        statuses = tuple(v.job_status(i) for i, v in enumerate(done.views))
        violation = lateness.finding(silence, done.views, statuses)
        if violation.rule == lateness.LATE:
            return Findings((violation,), {"report_late": silence.to_json()})
        observations = {"stall": {
            "task": watch.task_id, "at": watch.stalled_wall, "step": self.step, "last_updated_at": str(watch.last_updated),
            "budget": budget, "runner_state": self.captured.get("state"),
            "thread_cpu_pct": self.captured.get("thread_cpu_pct"), "connections": self.captured.get("connections")}}
        evidence = []
        if self.captured.get("goroutine_dump"):
            evidence.append(write_text("goroutines.txt", self.captured["goroutine_dump"]))
            observations["stall_capture"] = {"signal": "QUIT", "then": "restarted at the cell's end"}
        if self.captured.get("stall_command"):
            evidence.append(write_text("stall-command.txt", self.captured["stall_command"]))
        observations["stall"]["late_seconds"] = silence.seconds
        return Findings((violation,), observations, evidence=tuple(evidence))


_STEP_LINE = re.compile(r"⭐\s+Run\s+(.+?)\s*$")


def runner_step(log: Path, offset: int, cell: CellScope) -> str | None:
    """The step a lab runner itself last started for this cell's job (its last ``⭐ Run …`` line)."""
    text = runner_log.read_from(log, offset)
    found = [m[1] for line in text.splitlines() if job_line(cell, line) and (m := _STEP_LINE.search(line))]
    return f"{found[-1]} (the runner's last ⭐ line)" if found else None


def lab_stall_capture(runner: LabRunner, cell: CellScope) -> Callable[[], dict[str, Any]]:
    """Capture a stalled lab runner (state, threads, goroutine dump); it is restarted at the cell's end."""

    def capture() -> dict[str, Any]:
        found = capture_lab_runner(runner.pid, runner.log_file)
        cell.notify(f"captured the stalled runner {cell.handle.key}: state {found.get('state')}, goroutine dump taken; "
                    "it will be restarted")
        restart_at_end(cell, runner)
        return found

    return capture


def command_stall_capture(template: str, runner_key: str) -> Callable[[], dict[str, Any]]:
    """Capture a stalled runner the suite did not start through ``--runner-stall-command``."""

    def capture() -> dict[str, Any]:
        out = run_template(template, runner=runner_key)
        return {"stall_command": out.text or f"(unavailable: {out.unavailable})"}

    return capture


def restart_at_end(cell: CellScope, runner: LabRunner) -> None:
    """Register (once per cell) the restart of a runner the cell disturbed, after the evidence is written."""
    if cell.disposable or cell.restart_registered:
        return
    cell.restart_registered = True
    cell.teardown.callback(runner.restart)


class RunnerControl(Quiet):
    """Fault injection: signal the lab runner when a line of this job appears in the runner's own log."""

    name = "runner-control"

    def __init__(self, runner: LabRunner, pattern: str, signal_name: str) -> None:
        self.runner, self.pattern, self.signal_name = runner, pattern, signal_name
        self.tail: LogTail | None = None
        self.fired: dict[str, Any] = {}
        self.scope: CellScope | None = None

    def before(self, cell: CellScope) -> None:
        """Tail the runner's log; the signal is sent from the tail thread the moment the line appears."""
        self.scope = cell
        self.tail = LogTail(self.runner.log_file, runner_log.size(self.runner.log_file), self._on_line).start()
        cell.observing.callback(self.tail.stop)

    def _on_line(self, line: str) -> None:
        assert self.scope is not None
        if self.fired or self.pattern not in line or not job_line(self.scope, line):  # not this job's trigger line
            return
        reported = self._reported()
        restart_at_end(self.scope, self.runner)
        control.send(self.runner, self.signal_name)
        self.fired = {"signal": self.signal_name, "at": time.time(), "trigger": self.pattern, "line": line.strip(),
                      "server_showed_trigger": reported}
        self.scope.marks[f"fault: SIG{self.signal_name}"] = self.fired["at"]
        self.scope.notify(f"runner control: SIG{self.signal_name} sent to runner {self.scope.handle.key} on "
                          f"{line.strip()!r}")

    def _reported(self) -> bool:
        """Wait (``trigger_reported``) until Forgejo shows the trigger line: the runner has reported every step
        before it, so the fault hits the step the scenario names, not a server that still shows "Set up job"."""
        cell = self.scope
        assert cell is not None
        owner, repo = cell.repo.split("/", 1)
        ref = JobRef(owner, repo, cell.run_index)

        def shown() -> bool:
            view = cell.target.web.full_job_view(ref)
            return view is not None and any(self.pattern in line.message for line in view.log_lines())

        try:
            wait_for("Forgejo to show the runner-control trigger line", "trigger_reported", shown, bool,
                     budgets=cell.budgets, describe=lambda v: "not shown yet", wait=lambda _: 0.25)
            return True
        except HarnessError:
            return False

    def after(self, done: Done) -> Findings:
        """When and on which line the signal was sent (a signal being sent now is waited for, never raced)."""
        if self.tail is not None:
            self.tail.stop(wait=None)
        return Findings(observations={"runner_control": self.fired} if self.fired else {})


class SlowActions(Quiet):
    """The slow action server on loopback (``__SLOW_ACTIONS_URL__``): started before the push."""

    name = "slow-actions"

    def __init__(self, upstream: str, delay: float, bandwidth_kbps: float | None = None) -> None:
        self.proxy = SlowHttpProxy(upstream, delay, bandwidth=bandwidth_kbps * 1024 if bandwidth_kbps else None)

    @property
    def url(self) -> str:
        """Where the workflow's ``uses:`` fetch the action from."""
        return self.proxy.url

    def before(self, cell: CellScope) -> None:
        """Start the server; stopped when the watch ends."""
        self.proxy.start()
        cell.observing.callback(self.proxy.stop)

    def after(self, done: Done) -> Findings:
        """Its request log."""
        return Findings(observations={"slow_actions": self.proxy.summary()},
                        evidence=(lambda b: b.text("slow-actions.log", self.proxy.log() or "(no request reached it)\n"),))


class FaultInjection(Quiet):
    """The fault proxy between the cell's private runner and Forgejo: armed before the push, fired at the scenario's
    trigger, released at the verdict; then the runner is watched (``fault_aftermath``) for what it does next."""

    name = "fault-proxy"

    def __init__(self, proxy: FaultProxy, spec: FaultSpec, runner: LabRunner) -> None:
        self.proxy, self.spec, self.runner = proxy, spec, runner
        self.offset = 0
        self.scope: CellScope | None = None

    def before(self, cell: CellScope) -> None:
        """Arm the trigger (the runner's registration traffic went through untouched); never left faulty past the watch."""
        self.scope = cell
        self.offset = runner_log.size(self.runner.log_file)
        self.proxy.arm(self.spec.trigger, self.spec.fault, self._fired)
        cell.observing.callback(self.proxy.release)

    def _fired(self, reason: str) -> None:
        assert self.scope is not None
        self.scope.marks[f"fault: {self.spec.fault.describe()}"] = self.proxy.fired_at or time.time()  # cpu.png
        self.scope.notify(f"fault proxy: {self.spec.fault.describe()} between runner {self.runner.key} and Forgejo "
                          f"from now on ({reason})")

    def after(self, done: Done) -> Findings:
        """Release the fault; watch the runner until its behaviour is decided; the traffic and its log into the bundle."""
        assert self.scope is not None
        verdict_at = time.time()
        fired = self.proxy.fired_at
        self.proxy.release()
        released = self.proxy.released_at or verdict_at
        observation: dict[str, Any] = {"fault": self.spec.fault.describe(), "trigger": self.spec.trigger.describe(),
                                       "proxy": self.proxy.url, "fired": fired is not None}
        behaviour = None
        if fired is not None:
            observation["affected_requests"] = sum(1 for e in self.proxy.since(fired)
                                                   if e.at <= released and e.action != "forwarded")
            behaviour, why = self._aftermath(fired, released)
            observation.update({
                "fired_at": fired, "released_at": released, "time_to_verdict": round(verdict_at - fired, 1),
                "aftermath_seconds": round(time.time() - released, 1), "aftermath_end": why,
                "behaviour": behaviour.to_json()})
            self.scope.notify(f"fault proxy: released {verdict_at - fired:.0f}s after the fault; runner "
                              f"{self.runner.key}: {behaviour.sentence()} ({why})")
        observation["traffic"] = self.proxy.summary()
        text = runner_log.read_from(self.runner.log_file, self.offset)
        evidence = (write_text("fault-proxy.jsonl", self.proxy.log() or "(no request reached the proxy)\n"),
                    write_text("runner-aftermath.log", text or "(the runner logged nothing)\n"))
        unavailable = {} if fired is not None else {
            "fault": f"the trigger ({self.spec.trigger.describe()}) never came: no fault was injected"}
        return Findings(observations={"fault": observation}, unavailable=unavailable, evidence=evidence)

    def _aftermath(self, fired: float, released: float) -> tuple[aftermath.Behaviour, str]:
        assert self.scope is not None

        def look() -> aftermath.Behaviour:
            return aftermath.behaviour(runner_log.read_from(self.runner.log_file, self.offset), self.proxy.since(fired),
                                       fired, released, alive(self.runner.pid))

        def decided(found: aftermath.Behaviour) -> bool:
            return aftermath.decided(found, self.proxy.since(fired), released, time.time(),
                                     self.scope.budgets.fault_quiet) is not None  # type: ignore[union-attr]

        try:
            found = wait_for(f"runner {self.runner.key}'s behaviour after the fault", "fault_aftermath", look, decided,
                             budgets=self.scope.budgets, describe=lambda b: b.sentence() if b else "-",
                             wait=lambda _: 1.0)
            why = aftermath.decided(found, self.proxy.since(fired), released, time.time(),
                                    self.scope.budgets.fault_quiet) or "decided"
        except PollTimeout:
            found = look()
            why = f"still undecided after fault_aftermath={self.scope.budgets.fault_aftermath:g}s (a hang?)"
        return found, why


class RunnerIdentity(Quiet):
    """Which runner took the job (its first log line); for a runner the suite did not start, the version must
    be the one its label claims, else the cell is inconclusive (the wrong binary would be judged)."""

    name = "runner-identity"

    def __init__(self, claimed: str, check: bool) -> None:
        self.claimed, self.check = claimed, check

    def after(self, done: Done) -> Findings:
        """The runner's name and version from the job log; a mismatch named."""
        who = first_log_runner((done.raw_log or "").splitlines())
        if who is None:
            return Findings()
        observations = {"runner_from_log": {"name": who[0], "version": who[1]}}
        if self.check and who[1].lstrip("v") != self.claimed.lstrip("v"):
            return Findings(observations=observations, inconclusive=(
                f"runner {who[0]} (version {who[1]}) took the job, but the label claims version {self.claimed}: "
                "another runner shares the label, so this cell says nothing about " + self.claimed))
        return Findings(observations=observations)
