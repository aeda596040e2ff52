"""CPU of a runner during a job: the runner process alone and its whole tree (+ its cache server).

A sampler thread reads psutil every ``interval`` seconds; phases (set up, steps, Complete job)
come from the job log's timestamps. No samples in a phase means "unavailable", never a pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Sample:
    """One sample: wall time, % of one core for the runner process and for its tree."""

    t: float
    runner_pct: float
    tree_pct: float


class CpuSampler:
    """Samples the runner (pid) and its descendants plus ``extra`` pids until :meth:`stop`."""

    def __init__(self, pid: int | None, extra: Sequence[int | None] = (), interval: float = 0.1) -> None:
        self.pid = pid
        self.extra = [p for p in extra if p]
        self.interval = interval
        self.samples: list[Sample] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="regress-cpu", daemon=True)
        self._procs: dict[int, psutil.Process] = {}

    def start(self) -> CpuSampler:
        """Start sampling."""
        if not self.pid:
            self.error = "no runner PID (not a lab runner)"
            return self
        self._thread.start()
        return self

    def _proc(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)  # prime
            except psutil.Error:
                return None
            self._procs[pid] = proc
            return None  # first reading is meaningless
        return proc

    def _run(self) -> None:
        assert self.pid
        while not self._stop.wait(self.interval):
            try:
                root = psutil.Process(self.pid)
                tree = [self.pid, *(c.pid for c in root.children(recursive=True)), *self.extra]
            except psutil.Error:
                self.error = f"runner process {self.pid} is gone"
                return
            runner = total = 0.0
            for pid in tree:
                proc = self._proc(pid)
                if proc is None:
                    continue
                try:
                    pct = proc.cpu_percent(None)
                except psutil.Error:
                    continue
                total += pct
                if pid == self.pid:
                    runner = pct
            self.samples.append(Sample(time.time(), runner, total))

    def stop(self) -> list[Sample]:
        """Stop and return the samples."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return self.samples


PhaseStats = dict[str, dict[str, float | int | None]]


def phase_means(samples: Sequence[Sample], bounds: dict[str, tuple[float, float]], interval: float = 0.1) -> PhaseStats:
    """Mean % per phase for the runner and the tree; ``None`` where no sample covers the phase.

    A sample taken at ``t`` measures ``(t - interval, t]``, so it covers a phase ``[a, b]`` when
    ``a <= t <= b + interval``.
    """
    result: PhaseStats = {}
    for phase, (start, end) in bounds.items():
        inside = [s for s in samples if start <= s.t <= end + interval]
        result[phase] = {
            "samples": len(inside),
            "runner_pct": round(sum(s.runner_pct for s in inside) / len(inside), 1) if inside else None,
            "tree_pct": round(sum(s.tree_pct for s in inside) / len(inside), 1) if inside else None,
        }
    return result


def write_csv(samples: Sequence[Sample], path: Path) -> None:
    """``cpu.csv``: t, runner_pct, tree_pct."""
    path.write_text("t,runner_pct,tree_pct\n" + "".join(f"{s.t:.3f},{s.runner_pct:.1f},{s.tree_pct:.1f}\n" for s in samples))


def write_png(samples: Sequence[Sample], bounds: dict[str, tuple[float, float]], path: Path) -> str | None:
    """A small plot of the samples with the phases shaded; None when written, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'forgejo-runner-regress[plot]')"
    if not samples:
        return "no samples"
    t0 = samples[0].t
    fig, ax = plt.subplots(figsize=(6, 2.4), dpi=100)
    ax.plot([s.t - t0 for s in samples], [s.runner_pct for s in samples], label="runner")
    ax.plot([s.t - t0 for s in samples], [s.tree_pct for s in samples], label="runner + children + cache server")
    for (phase, (start, end)), color in zip(bounds.items(), ("#fde2e2", "#e2f0fd", "#e5fde2"), strict=False):
        ax.axvspan(start - t0, max(end, start + 0.05) - t0, color=color, label=phase)
    ax.set_xlabel("seconds")
    ax.set_ylabel("% of one core")
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
