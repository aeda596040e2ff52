"""User commands that observe runners the suite did not start (log fetch, stall capture)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandOutput:
    """What a user command gave: its output, or why there is none."""

    text: str | None
    unavailable: str | None


def run_template(template: str, *, timeout: float = 60.0, **values: str) -> CommandOutput:
    """Run ``template`` (placeholders filled in) through ``sh -c``; failures are reasons, never raised."""
    command = template.format(**values)
    try:
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return CommandOutput(None, f"`{command}` did not finish within {timeout:g}s")
    except OSError as exc:
        return CommandOutput(None, f"`{command}` could not run: {exc}")
    if proc.returncode != 0:
        return CommandOutput(None, f"`{command}` exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    if not proc.stdout.strip():
        return CommandOutput(None, f"`{command}` printed nothing")
    return CommandOutput(proc.stdout, None)
