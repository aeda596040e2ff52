"""Run one cell (scenario × runner): push, watch, observe, judge, and always write the evidence."""

from __future__ import annotations

import contextlib
import json
import re
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.budgets import BUDGETS, Budgets
from harness.errors import HarnessError
from harness.evidence import SCHEMA, Bundle, environment, repro_markdown, write_reproducer
from harness.faults.slow_http import SlowHttpProxy
from harness.forgejo.client import RepoFile
from harness.forgejo.models import JobView, Status, first_log_runner
from harness.forgejo.web import JobRef
from harness.observe import cache as cache_obs
from harness.observe import cpu as cpu_obs
from harness.observe import leaks as leak_obs
from harness.observe import runner_log
from harness.observe.commands import run_template
from harness.observe.overlap import Activity, Window
from harness.observe.stall import StallWatch, capture_lab_runner
from harness.outcome import Outcome
from harness.runners.control import LogTrigger
from harness.scenarios import Scenario
from harness.target import RunnerHandle, Target, seeded_commits
from harness.verdict import Observation, Verdict, Violation, judge, marker_found, selfcheck_mismatch
from harness.waiting import wait_for
from harness.watch import watch_job

Notify = Callable[[str], None]
PER_RUNNER_RULES = ("cache-growth", "cpu-over-budget")  # measured per runner, not per job


class NotRunnable(HarnessError):
    """The cell cannot run here (no runner for its label kind, no Docker, no buildx); says why."""


@dataclass
class CellResult:
    """What one cell produced."""

    scenario: str
    runner_key: str
    version: str
    label: str
    verdict: Verdict | None = None
    error: str | None = None
    selfcheck_problem: str | None = None
    repo: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    observations: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None

    @property
    def outcome(self) -> Outcome:
        """pass / fail / inconclusive (our own side failed: ``error`` says how)."""
        if self.error:
            return Outcome.INCONCLUSIVE
        return Outcome.PASS if self.passed else Outcome.FAIL

    @property
    def reason(self) -> str:
        """Why the cell is not a pass, in one line ("" for a pass)."""
        if self.error:
            return self.error.splitlines()[0]
        if self.selfcheck_problem:
            return self.selfcheck_problem
        if self.verdict is not None and not self.passed:
            return "; ".join(str(v) for v in self.verdict.failing)[:300]
        return ""

    @property
    def passed(self) -> bool:
        """True when the cell's expectation holds (selfchecks: exactly the expected violations)."""
        if self.error or self.verdict is None:
            return False
        if self.selfcheck_problem is not None:
            return False
        return self.verdict.ok or self.observations.get("selfcheck", False)

    def to_json(self) -> dict[str, Any]:
        """The cell as report.json holds it."""
        return {
            "scenario": self.scenario, "runner": self.runner_key, "version": self.version, "label": self.label,
            "outcome": str(self.outcome), "reason": self.reason, "passed": self.passed, "error": self.error, "selfcheck_problem": self.selfcheck_problem,
            "verdict": self.verdict.to_json() if self.verdict else None, "timings": self.timings,
            "observations": self.observations, "bundle": str(self.bundle) if self.bundle else None,
        }


def check_runnable(target: Target, scenario: Scenario, handle: RunnerHandle) -> str:
    """The ``runs-on`` label, or raise NotRunnable with the reason."""
    label = handle.runs_on(scenario.expect.kind)
    if label is None:
        raise NotRunnable(f"runner {handle.key} has no '{scenario.expect.kind}' label "
                          + ("(the lab has no Docker engine)" if target.lab else "(give --runner-label)"))
    needs = set(scenario.expect.requires)
    if "lab" in needs and (target.lab is None or handle.lab_runner is None):
        raise NotRunnable("needs the lab's runner-side observation (its Docker engine, its cache store), which a "
                          "runner the suite did not start does not expose")
    if target.lab is not None:
        if "docker" in needs and target.lab.engine is None:
            raise NotRunnable("needs a Docker engine; none answered and none could be started")
        if "buildx" in needs and (target.lab.prepared is None or not target.lab.prepared.buildx):
            why = target.lab.prepared.buildx_error if target.lab.prepared else "lab not prepared"
            raise NotRunnable(f"needs the buildx plugin, which lab prepare could not build: {why}")
    if scenario.expect.control is not None and handle.lab_runner is None:
        raise NotRunnable("needs runner control, which only lab runners allow (runners the suite did not start "
                          "are never touched)")
    if scenario.expect.slow_actions is not None and handle.lab_runner is None:
        raise NotRunnable("needs the slow action server on this machine's loopback, which only a lab runner "
                          "reaches")
    return label


def _phase_bounds(view: JobView) -> dict[str, tuple[float, float]]:
    steps = [s for s in view.steps if s.lines]
    if not steps:
        return {}
    first = view.steps[0]
    bounds: dict[str, tuple[float, float]] = {}
    if first.lines:
        bounds["setup"] = (first.lines[0].timestamp, first.lines[-1].timestamp)
    middle = [line.timestamp for s in view.workflow_steps() for line in s.lines]
    if middle:
        bounds["steps"] = (min(middle), max(middle))
    last = view.steps[-1]
    if last.lines and last is not first:
        bounds["complete"] = (last.lines[0].timestamp, last.lines[-1].timestamp)
    return bounds


def run_cell(
    target: Target,
    scenario: Scenario,
    handle: RunnerHandle,
    bundle_dir: Path,
    *,
    evidence: str = "on-failure",
    keep_repo: bool = False,
    setup_budget: tuple[float, float] | None = None,
    budgets: Budgets = BUDGETS,
    notify: Notify = lambda s: None,
    log_command: str | None = None,
    stall_command: str | None = None,
) -> CellResult:
    """Run one cell; the result carries the verdict or the error, never raises for the cell itself.

    ``log_command`` / ``stall_command``: templates for runners the suite did not start (see
    :mod:`harness.observe.commands`); lab runners are observed directly.

    Raises:
        NotRunnable: before anything was pushed, when the cell cannot run here.
    """
    label = check_runnable(target, scenario, handle)
    result = CellResult(scenario.name, handle.key, str(handle.version), label)
    lab_runner = handle.lab_runner
    transcript_mark = target.transcript.mark()
    repo = re.sub(r"[^A-Za-z0-9-]", "-", f"{scenario.name}-{handle.key}-{uuid.uuid4().hex[:8]}")
    result.repo = f"{target.owner}/{repo}"
    slow: SlowHttpProxy | None = None
    workflow = scenario.template
    view: JobView | None = None
    raw_log: str | None = None
    runner_slice: str | None = None
    tasks_payload: list[Any] = []
    sampler: cpu_obs.CpuSampler | None = None
    stall = StallWatch(budget=budgets.runner_stalled)
    control_fired: dict[str, Any] = {}
    captured: dict[str, Any] = {}
    activity: Activity | None = None
    window: Window | None = None
    created = False
    try:
        if scenario.expect.slow_actions is not None:
            slow = SlowHttpProxy(target.url, scenario.expect.slow_actions).start()
        workflow = scenario.render(label, slow.url if slow else None)
        # before
        client = target.lab.engine.client() if target.lab and target.lab.engine else None
        before_inv, inv_error = leak_obs.safe_inventory(client)
        if lab_runner is not None:
            log_offset = runner_log.size(lab_runner.log_file)
            clone_base = f"{target.url}/"
            cold = not all(cache_obs.action_cached(lab_runner.workdir, u, clone_base + u.split("@")[0])
                           for u in scenario.uses()) if scenario.uses() else False
            stores_before = {"action_cache": cache_obs.measure(lab_runner.workdir),
                             "cache_server": cache_obs.measure(lab_runner.cache_dir),
                             "home": cache_obs.measure(lab_runner.home)}
            sampler = cpu_obs.CpuSampler(lab_runner.pid, [lab_runner.cache_pid]).start()
            activity = Activity(lab_runner.dir)
            window = activity.begin(f"{scenario.name}-{handle.key}")
        else:
            log_offset, cold, stores_before = 0, None, {}
        # push
        target.client.create_repo(repo, owner=target.org)
        created = True
        t_push = time.monotonic()
        target.client.commit_files(target.owner, repo, [RepoFile(f".forgejo/workflows/{scenario.workflow_file}",
                                                                 workflow.encode())], f"regress: {scenario.name}")
        run_index = 1
        if scenario.expect.dispatch:
            run_index = target.client.dispatch(target.owner, repo, scenario.workflow_file).run_number
        ref = JobRef(target.owner, repo, run_index)
        last_tasks = [0.0]
        control = scenario.expect.control
        trigger = LogTrigger(lab_runner, control.on_log, control.signal) if control and lab_runner else None

        def on_poll(v: JobView) -> None:
            now = time.monotonic()
            if now - last_tasks[0] >= 1.0 and v.steps:
                last_tasks[0] = now
                try:
                    tasks = target.client.tasks(target.owner, repo)
                except HarnessError:
                    return
                if stall.feed(tasks, run_index, scenario.name):
                    running = next((s.name for s in v.steps if s.status is Status.RUNNING), "?")
                    control_fired.setdefault("stall_step", running)
                    notify(f"{result.repo}: runner stalled (task updated_at silent {stall.silent_for:.0f}s, "
                           f"step {running})")
                    if lab_runner is not None:
                        captured.update(capture_lab_runner(lab_runner.pid, lab_runner.log_file))
                        control_fired.setdefault("signal", "QUIT (stall capture)")
                        notify(f"captured the stalled runner {handle.key}: state {captured.get('state')}, "
                               "goroutine dump taken; it will be restarted")
                    elif stall_command:
                        out = run_template(stall_command, runner=handle.key)
                        captured["stall_command"] = out.text or f"(unavailable: {out.unavailable})"
            if trigger is not None and trigger.fired_at is None:
                full = target.web.job_view(ref, known_steps=len(v.steps))
                if full is not None and trigger.check(full.log_lines()):
                    control_fired.update(signal=trigger.signal_name, at=trigger.fired_at, trigger=trigger.pattern)
                    notify(f"runner control: SIG{trigger.signal_name} sent to runner {handle.key} on {trigger.line!r}")

        watched = watch_job(target.web, ref, label=label, t_pushed=t_push, budgets=budgets, notify=notify,
                            on_poll=on_poll, evidence=str(bundle_dir))
        view = watched.view
        result.timings.update(
            appear=round(watched.t_appeared - t_push, 3),
            pickup=round(watched.t_picked - t_push, 3),
            done_seen=round(watched.t_done_seen - t_push, 3),
        )
        t_verdict_start = time.monotonic()
        try:
            raw_log = target.web.raw_log(ref)
        except HarnessError as exc:  # e.g. a zombie-stopped task whose log never reached storage (HTTP 500)
            raw_log = None
            result.observations["raw_log_unavailable"] = str(exc)
        tasks = target.client.tasks(target.owner, repo)
        tasks_payload = [dict(t.raw) for t in tasks]
        task_id = next((t.id for t in tasks if t.run_number == run_index), None)
        extra: list[Violation] = []
        unavailable: dict[str, str] = {}
        # runner-side observation: the runner's own log (lab: its file; existing: --runner-log-command)
        def attributed(text: str) -> str:
            return runner_log.attribute(text, task_id=task_id, job=scenario.name, workflow=scenario.name)

        fetch: Callable[[], str | None] | None = None
        if lab_runner is not None:
            def fetch() -> str | None:
                return attributed(runner_log.read_from(lab_runner.log_file, log_offset))
        elif log_command:
            stamps = [line.timestamp for line in view.log_lines()]
            start = datetime.fromtimestamp(min(stamps) - 5 if stamps else time.time() - 600, UTC)
            who = first_log_runner((raw_log or "").splitlines())

            def fetch() -> str | None:
                out = run_template(log_command, start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                   end=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                   runner=who[0] if who else "")
                if out.text is None:
                    unavailable["runner_log"] = out.unavailable or "no output"
                    return None
                unavailable.pop("runner_log", None)
                return attributed(out.text)
        else:
            unavailable["runner_log"] = "runner not started by the suite (give --runner-log-command)"
        if fetch is not None:
            if scenario.expect.runner_log_must:  # end-of-job lines come after the result: let them arrive
                with contextlib.suppress(HarnessError):
                    wait_for("the runner's end-of-job log lines", "runner_settle", fetch,
                             lambda t: t is not None and all(marker_found(m, t) for m in scenario.expect.runner_log_must),
                             budgets=budgets, describe=lambda t: "markers not (yet) printed")
            runner_slice = fetch()
        for sig, line in runner_log.matches(runner_slice or ""):
            result.observations.setdefault("signatures", []).append({"name": sig.name, "line": line,
                                                                     "meaning": sig.meaning})
            if sig.severity == "fail" and sig.name != "network-cleanup":
                extra.append(Violation(f"signature:{sig.name}", f"{sig.meaning}: {line[:200]}"))
        if lab_runner is not None:
            stores_after = {"action_cache": cache_obs.measure(lab_runner.workdir),
                            "cache_server": cache_obs.measure(lab_runner.cache_dir),
                            "home": cache_obs.measure(lab_runner.home)}
            growth = {k: round(stores_after[k].mb - stores_before[k].mb, 2) for k in stores_after}
            result.observations["store_growth_mb"] = growth
            result.observations["stores_after"] = {k: {"mb": round(v.mb, 2), "entries": v.entries}
                                                   for k, v in stores_after.items()}
            budget = scenario.expect.observe.get("cache_growth_mb")
            if budget and growth["cache_server"] > budget.limit:
                extra.append(Violation("cache-growth", f"the runner's cache store grew {growth['cache_server']:.1f} MB "
                                       f"> {budget.limit:g} MB in one job", budget.severity))
        if sampler is not None:
            samples = sampler.stop()
            phases = cpu_obs.phase_means(samples, _phase_bounds(view), sampler.interval)
            result.observations["cpu"] = phases
            if not samples:
                unavailable["cpu"] = sampler.error or "no samples"
            observe = scenario.expect.observe  # warm runs have their own budget where the scenario names one
            cpu_budget = (observe.get("cpu_setup_pct_warm") if cold is False else None) or observe.get("cpu_setup_pct")
            setup_pct = (phases.get("setup") or {}).get("runner_pct")
            if cpu_budget and setup_pct is None:
                extra.append(Violation("observation-unavailable", "no CPU sample fell into 'Set up job' (too short "
                                       "or unsampled): the CPU budget was not checked", "report"))
            elif cpu_budget and isinstance(setup_pct, float | int) and setup_pct > cpu_budget.limit:
                extra.append(Violation("cpu-over-budget", f"the runner used {setup_pct:.0f}% of a core during "
                                       f"'Set up job' > {cpu_budget.limit:g}%", cpu_budget.severity))
        if client is not None and before_inv is not None:
            job_text = "\n".join(line.message for line in view.log_lines())

            def remaining() -> list[str]:
                after, _ = leak_obs.safe_inventory(client)
                if after is None:
                    return []
                named = tuple(n for n in after.containers - before_inv.containers if n in job_text)
                return leak_obs.leftovers(before_inv, after, task_id, named)

            left: list[str] = []
            try:  # the runner removes the job's containers after it reported the result: give it time
                wait_for("the runner's clean-up of the job's containers", "runner_settle", remaining, lambda x: not x,
                         budgets=budgets, describe=lambda x: f"still there: {x}")
            except HarnessError:
                left = remaining()
            result.observations["leftovers"] = left
            extra.extend(Violation("docker-leftover", f"{item} is still there {budgets.runner_settle:g}s after the job")
                         for item in left)
        if inv_error:
            unavailable["docker"] = inv_error
        if stall.stalled_at is not None:
            extra.append(Violation("runner-stalled", f"task {stall.task_id}'s updated_at stopped advancing for more than "
                                   f"{budgets.runner_stalled:g}s while step {control_fired.get('stall_step', '?')} ran"))
            result.observations["stall"] = {
                "task": stall.task_id, "at": stall.stalled_wall, "step": control_fired.get("stall_step"),
                "last_updated_at": str(stall.last_updated), "budget": budgets.runner_stalled,
                "runner_state": captured.get("state"), "thread_cpu_pct": captured.get("thread_cpu_pct"),
                "connections": captured.get("connections"),
            }
        if control_fired:
            result.observations["runner_control"] = {k: v for k, v in control_fired.items() if k != "stall_step"}
        who = first_log_runner((raw_log or "").splitlines())
        if who:
            result.observations["runner_from_log"] = {"name": who[0], "version": who[1]}
        if activity is not None and window is not None:
            shared = activity.end(window)
            window = None
            if shared:  # the runner's CPU and stores were measured with these jobs running too
                result.observations["shared_runner_with"] = shared
                note = f" (other jobs ran on this runner meanwhile: {', '.join(shared)}; not attributable to this job)"
                extra = [Violation(v.rule, v.message + note, "report") if v.rule in PER_RUNNER_RULES else v
                         for v in extra]
        obs = Observation(cold=cold, runner_log=runner_slice, extra=tuple(extra), unavailable=unavailable)
        default_setup = setup_budget or (budgets.setup_cold, budgets.setup_warm)
        result.verdict = judge(view, scenario.expect, obs, default_setup=default_setup)
        if scenario.expect.marker == "selfcheck":
            result.observations["selfcheck"] = True
            result.selfcheck_problem = selfcheck_mismatch(result.verdict, scenario.expect.expected_violations)
        result.timings["verdict_latency"] = round(time.monotonic() - t_verdict_start, 3)
        stamps = [line.timestamp for line in view.log_lines()]
        if stamps:  # the runner's last job-log line ≈ when it reported the result (same machine clock on the lab)
            result.timings["job_end_to_verdict"] = round(time.time() - max(stamps), 3)
        result.timings["setup_seconds"] = result.verdict.setup_seconds or 0.0
    except HarnessError as exc:
        result.error = str(exc)
    except Exception as exc:
        result.error = f"internal error: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
    finally:
        if sampler is not None and sampler.samples and "cpu" not in result.observations:
            sampler.stop()
        if activity is not None and window is not None:
            activity.end(window)
        if slow is not None:
            slow.stop()
            result.observations["slow_actions"] = slow.summary()
        want = evidence == "always" or (evidence == "on-failure" and not result.passed)
        if want:
            try:
                result.bundle = write_bundle(bundle_dir, target, scenario, handle, result, workflow, view, raw_log,
                                             runner_slice, tasks_payload, transcript_mark, sampler)
                if captured.get("goroutine_dump"):
                    Bundle(bundle_dir).text("goroutines.txt", captured["goroutine_dump"])
                if captured.get("stall_command"):
                    Bundle(bundle_dir).text("stall-command.txt", captured["stall_command"])
                if slow is not None:
                    Bundle(bundle_dir).text("slow-actions.log", slow.log() or "(no request reached it)\n")
            except OSError as exc:
                result.error = (result.error or "") + f"\n(evidence could not be written to {bundle_dir}: {exc})"
        if created and not keep_repo:
            with contextlib.suppress(HarnessError):
                target.client.delete_repo(target.owner, repo)
        if control_fired.get("signal") and lab_runner is not None:
            try:
                lab_runner.restart()
            except HarnessError as exc:
                result.error = (result.error or "") + f"\n(restarting runner {handle.key} failed: {exc})"
    return result


def write_bundle(path: Path, target: Target, scenario: Scenario, handle: RunnerHandle, result: CellResult,
                 workflow: str, view: JobView | None, raw_log: str | None, runner_slice: str | None,
                 tasks: list[Any], mark: int, sampler: cpu_obs.CpuSampler | None) -> Path:
    """Write the bundle of one cell (redacted)."""
    bundle = Bundle(path)
    lab_runner = handle.lab_runner
    outcome = "error" if result.error else ("passed" if result.passed else "failed")
    manifest = {
        "schema": SCHEMA,
        "suite_version": __version__,
        "test_id": path.name,
        "bundle_dir": str(path),
        "scenario": scenario.name,
        "outcome": outcome,
        "error": result.error,
        "selfcheck_problem": result.selfcheck_problem,
        "label": result.label,
        "repo": result.repo,
        "forgejo": {**target.info, "url_kind": "lab" if target.lab else "existing instance"},
        "runner": {"key": handle.key, "version": str(handle.version),
                   "name": lab_runner.name if lab_runner else result.observations.get("runner_from_log", {}).get("name"),
                   "labels": handle.labels,
                   "without_tools": list(lab_runner.without_tools) if lab_runner else [],
                   "config_overrides": dict(lab_runner.overrides) if lab_runner else {}},
        "expect": {"job": str(scenario.expect.job), "steps": {k: str(v) for k, v in scenario.expect.steps.items()},
                   "post_steps": list(scenario.expect.post_steps)},
        "timings": result.timings,
        "verdict": result.verdict.to_json() if result.verdict else {},
        "observations": result.observations,
        "seeded_actions": seeded_commits(target),
        "environment": environment(target.docker_host),
    }
    bundle.json("manifest.json", manifest)
    bundle.text("workflow.yml", workflow)
    bundle.text("expect.yml", (scenario.path / "expect.yml").read_text())
    bundle.copy_tree(scenario.path, f"scenario/{scenario.name}")
    if view is not None:
        bundle.json("job-view.json", dict(view.raw))
    if raw_log is not None:
        bundle.text("job.log", raw_log)
    if runner_slice is not None:
        bundle.text("runner.log", runner_slice)
    bundle.json("tasks.json", tasks)
    target.transcript.write(bundle.path / "api-transcript.jsonl", since=mark)
    if result.verdict is not None:
        bundle.json("verdict.json", result.verdict.to_json())
    if sampler is not None and sampler.samples:
        cpu_obs.write_csv(sampler.samples, bundle.path / "cpu.csv")
        why_not = cpu_obs.write_png(sampler.samples, _phase_bounds(view) if view else {}, bundle.path / "cpu.png")
        if why_not:
            bundle.text("cpu.png.txt", f"no plot: {why_not}\n")
    runner_config = lab_runner.config_file.read_text() if lab_runner else None
    if runner_config:
        bundle.text("runner-config.yaml", runner_config)
    from harness.scenarios import ACTIONS_DIR

    for use in scenario.uses():
        repo_path = use.split("@")[0]
        source = ACTIONS_DIR / repo_path
        if target.lab and source.is_dir():
            bundle.copy_tree(source, f"actions/{repo_path}")
    table = result.verdict.table() if result.verdict else f"no verdict: {result.error}"
    bundle.text("repro.md", repro_markdown(manifest, table, workflow))
    write_reproducer(bundle, scenario.name, workflow, runner_config, result.label)
    bundle.text("result.json", json.dumps(result.to_json(), indent=2, default=str))
    return path
