"""CPU of a runner during a job: the runner process alone and its whole tree (+ its cache server).

A sampler thread reads psutil every ``interval`` seconds; phases (set up, steps, Complete job)
come from the job log's timestamps. No samples in a phase means "unavailable", never a pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
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


PHASE_COLOURS = {"setup": "#fde2e2", "steps": "#e2f0fd", "complete": "#e5fde2"}
SPARE_COLOURS = ("#fdf5e2", "#efe2fd", "#e2fdf8", "#eeeeee")
MARK_COLOURS = ("#c0392b", "#8e44ad", "#d35400", "#2c3e50")
MIN_SPAN = 0.05  # seconds: a phase shorter than this is still drawn


@dataclass(frozen=True)
class Layout:
    """What cpu.png shows, in seconds since the first sample: shaded phases, marked moments, the title."""

    title: str
    spans: tuple[tuple[str, float, float, str], ...]  # (phase, start, end, colour)
    marks: tuple[tuple[str, float, str], ...]  # (label, at, colour)


def layout(samples: Sequence[Sample], bounds: Mapping[str, tuple[float, float]], *, title: str = "",
           marks: Mapping[str, float] | None = None) -> Layout:
    """Every phase as a span at least :data:`MIN_SPAN` wide (a phase after the last sample stays: the axis
    widens to it), every mark as a labelled line."""
    t0 = samples[0].t if samples else min((a for a, _ in bounds.values()), default=0.0)
    spare = iter(SPARE_COLOURS * 4)
    spans = tuple((phase, round(start - t0, 3), round(max(end, start + MIN_SPAN) - t0, 3),
                   PHASE_COLOURS.get(phase) or next(spare)) for phase, (start, end) in bounds.items())
    lines = tuple((f"{name} ({moment - t0:.1f}s)", round(moment - t0, 3), colour)
                  for (name, moment), colour in zip((marks or {}).items(), MARK_COLOURS * 4, strict=False))
    return Layout(title, spans, lines)


def write_png(samples: Sequence[Sample], bounds: Mapping[str, tuple[float, float]], path: Path, *,
              title: str = "", marks: Mapping[str, float] | None = None) -> str | None:
    """A small plot of the samples with every phase shaded; None when written, else why not.

    ``title``: e.g. scenario, runner, version and failure class. ``marks``: named moments (epoch
    seconds) drawn as vertical lines, e.g. ``{"fault": t, "stall": t}`` (see :func:`layout`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'forgejo-runner-regress[plot]')"
    if not samples:
        return "no samples"
    plan = layout(samples, bounds, title=title, marks=marks)
    t0 = samples[0].t
    fig, ax = plt.subplots(figsize=(7, 2.8), dpi=100)
    for phase, start, end, colour in plan.spans:
        ax.axvspan(start, end, color=colour, label=phase, zorder=0)
    ax.plot([s.t - t0 for s in samples], [s.runner_pct for s in samples], label="runner", zorder=2)
    ax.plot([s.t - t0 for s in samples], [s.tree_pct for s in samples], label="runner + children + cache server",
            zorder=2)
    for label, at, colour in plan.marks:
        ax.axvline(at, color=colour, linestyle="--", linewidth=1.2, label=label, zorder=3)
    ax.set_xlabel("seconds")
    ax.set_ylabel("% of one core")
    if plan.title:
        ax.set_title(plan.title, fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
