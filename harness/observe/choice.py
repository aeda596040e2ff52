"""Which observers a cell gets: those its runner allows (a lab runner's, an admin's runner process, a runner the
suite can only read through the user's commands), in the order their findings must be taken."""

from __future__ import annotations

from dataclasses import dataclass

from harness.faults.proxy import FaultProxy
from harness.observe import leaks as leak_obs
from harness.observe.base import CellScope, Observer
from harness.observe.existing import ExistingRunnerWatch, JournalRunnerLog
from harness.observe.observers import (
    CommandRunnerLog,
    Cpu,
    FaultInjection,
    JobLogSignatures,
    LabRunnerLog,
    Leftovers,
    NoRunnerLog,
    Overlap,
    RunnerControl,
    RunnerIdentity,
    SlowActions,
    Stall,
    Stores,
    command_stall_capture,
    lab_stall_capture,
    runner_step,
)
from harness.runners import existing


@dataclass(frozen=True)
class Commands:
    """The user's commands for runners the suite did not start."""

    log: str | None = None
    stall: str | None = None
    kill_for_dump: bool = False  # --runner-process: a stall is dumped with SIGQUIT (the runner exits)


def choose(cell: CellScope, commands: Commands, slow: SlowActions | None,
           fault: FaultProxy | None = None) -> list[Observer]:
    """The observers this cell's runner allows (the fault proxy's first: its fault is released at the verdict)."""
    runner = cell.handle.lab_runner
    observers: list[Observer] = [slow] if slow is not None else []
    if cell.scenario.expect.heavy is not None:  # seeds and runs its baseline before the other observers' snapshots
        from harness.observe.heavy import HeavyActionsObserver

        observers.append(HeavyActionsObserver(cell.scenario.expect.heavy, (lambda: slow.url) if slow is not None
                                              else lambda: None))  # the slow server starts in its own before()
    if fault is not None and runner is not None and cell.scenario.expect.fault is not None:
        observers.insert(0, FaultInjection(fault, cell.scenario.expect.fault, runner))
    observers.append(RunnerIdentity(str(cell.handle.version).split("+")[0], check=runner is None))
    observers.append(JobLogSignatures())
    if runner is not None:
        stores = Stores(runner)
        log = LabRunnerLog(runner)
        observers += [log, stores, Cpu(runner, lambda: stores.cold),
                      Overlap(runner.dir, f"{cell.scenario.name}-{cell.handle.key}"),
                      Stall(None if cell.scenario.expect.fault or cell.scenario.condition  # a fault or condition cell
                            else lab_stall_capture(runner, cell),
                            lambda: runner_step(runner.log_file, log.offset, cell))]  # watches its runner, unsignalled
        control_spec = cell.scenario.expect.control
        if control_spec is not None:
            observers.append(RunnerControl(runner, control_spec.on_log, control_spec.signal))
    elif cell.handle.existing is not None:
        observers += existing_observers(cell, commands)
    else:
        observers.append(CommandRunnerLog(commands.log) if commands.log else NoRunnerLog())
        stall = command_stall_capture(commands.stall, cell.handle.key) if commands.stall else None
        observers.append(Stall(stall))
    lab = cell.target.lab
    if lab is not None and lab.engine is not None:
        observers.append(Leftovers(lab.engine.client()))
    return observers


def existing_observers(cell: CellScope, commands: Commands) -> list[Observer]:
    """An admin's runner process (``--runner-process``): its log (the command, else the unit's journal), stores,
    CPU, the overlap ledger in the suite's own cache, a stall captured without a signal (unless
    ``--kill-for-dump``), identity and sharing, Docker leftovers on its engine when that answers."""
    runner = cell.handle.existing
    assert runner is not None
    log: CommandRunnerLog | None = CommandRunnerLog(commands.log) if commands.log else (
        JournalRunnerLog(runner.unit) if runner.unit else None)
    stores = Stores(runner)  # type: ignore[arg-type]
    capture = existing.kill_for_dump if commands.kill_for_dump else existing.capture
    found: list[Observer] = [log if log is not None else NoRunnerLog(), stores,
                             Cpu(runner, lambda: stores.cold),  # type: ignore[arg-type]
                             Overlap(runner.ledger_dir, f"{cell.scenario.name}-{cell.handle.key}"),
                             Stall(lambda: capture(runner)), ExistingRunnerWatch(runner, log)]
    client = leak_obs.engine_client(runner.docker_host)
    if client is not None:
        found.append(Leftovers(client))
    return found
