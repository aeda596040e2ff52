"""Conditions: ``--condition NAME=FILE`` puts every regression scenario under one more circumstance.

A condition file holds ONE block in expect.yml's vocabulary:

- ``fault:`` without ``expect`` (mode, delay, rpcs, trigger: :func:`harness.scenarios.parse_fault`): the cell
  runs on a private runner behind the fault proxy, as a fault scenario does;
- ``slow_actions: {delay, bandwidth_kbps}``: every ``uses: owner/name@ref`` of the workflow is fetched through
  the slow action server on loopback. The action's URL changes, and with it 11.x's action-cache key (the
  clone's directory is a hash of the URL): such a cell starts cold.

and optionally ``known_bug:`` (as in expect.yml; it applies to the condition's cells only) and ``about:`` (a
line for the header). A condition cell expects what its scenario expects. Cells are scenario × runner ×
condition; the condition is its own field of every record, never part of the runner key.

The budgets that would fire before the condition's own times are raised for its cells: ``fault_quiet`` (the
aftermath watch), ``runner_stalled`` and ``final_log`` above the hold, and the lab's ``ZOMBIE_TASK_TIMEOUT``
above the longest silence of a runner that waits out the holds (two back to back), so that a runner that only
waits is never stopped by the lab's own short zombie check.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.budgets import Budgets
from harness.errors import ConfigError
from harness.faults.proxy import TIMING_MODES
from harness.scenarios import SLOW_ACTIONS_PLACEHOLDER, FaultSpec, KnownBug, Scenario, known_bug_block, parse_fault

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,29}")
KEYS = ("fault", "slow_actions", "known_bug", "about")
ZOMBIE_MARGIN = 30.0  # seconds above a waiting runner's longest silence
_USES = re.compile(r"^(\s*-?\s*uses:\s*['\"]?)(?!\./|docker://|" + re.escape(SLOW_ACTIONS_PLACEHOLDER) +
                   r")([\w.-]+/[\w./-]+@)", re.M)


@dataclass(frozen=True)
class Condition:
    """One ``--condition NAME=FILE``, parsed."""

    name: str
    source: str  # the file it came from (shown in the header and kept in the manifest)
    block: Mapping[str, Any]  # the file's YAML: a bundle's manifest keeps it, so ``rerun`` repeats the condition
    fault: FaultSpec | None = None
    slow_delay: float | None = None
    slow_bandwidth: float | None = None
    known_bug: KnownBug | None = None
    about: str = ""

    def describe(self) -> str:
        """``fault abort-upstream 12s from job-log line '⭐ Run Post x' reported`` / ``slow actions: +2s a request``."""
        if self.fault is not None:
            return f"fault {self.fault.fault.describe()} from {self.fault.trigger.describe()}"
        bandwidth = f", {self.slow_bandwidth:g} KB/s" if self.slow_bandwidth else ""
        return f"slow actions: +{self.slow_delay:g}s a request{bandwidth}"

    @property
    def hold(self) -> float:
        """Seconds one report (or answer) is held; 0 for the modes that do not hold."""
        return hold_of(self.fault)

    def zombie_timeout(self) -> float | None:
        """The lab's ZOMBIE_TASK_TIMEOUT this condition needs at least (None: any)."""
        return 2 * self.hold + ZOMBIE_MARGIN if self.hold else None

    def budgets(self, budgets: Budgets) -> Budgets:
        """``budgets`` with those that would fire before the condition's own times raised."""
        return hold_budgets(self.fault, budgets)

    def raised(self, budgets: Budgets) -> list[str]:
        """What :meth:`budgets` raised, for the header: ``runner_stalled 15→17s``."""
        after = self.budgets(budgets)
        return [f"{f.name} {getattr(budgets, f.name):g}→{getattr(after, f.name):g}s" for f in dataclasses.fields(budgets)
                if getattr(after, f.name) != getattr(budgets, f.name)]

    def apply(self, scenario: Scenario) -> Scenario:
        """The scenario under this condition: its expectation plus the condition's block (and known bug), the
        workflow's actions fetched through the slow server for ``slow_actions``.

        Raises:
            ConfigError: the scenario already carries a block of that kind (a fault scenario under a fault
                condition), or it has no action to fetch slowly.
        """
        expect = scenario.expect
        if self.fault is not None:
            if expect.fault is not None:
                raise ConfigError(f"condition {self.name}: scenario {scenario.name} has a fault of its own")
            expect = dataclasses.replace(expect, fault=self.fault)
        template = scenario.template
        if self.slow_delay is not None:
            if expect.slow_actions is not None:
                raise ConfigError(f"condition {self.name}: scenario {scenario.name} fetches its actions slowly already")
            template = through_slow_server(template)
            if template == scenario.template:
                raise ConfigError(f"condition {self.name}: scenario {scenario.name} uses no remote action to fetch "
                                  "slowly")
            expect = dataclasses.replace(expect, slow_actions=self.slow_delay, slow_bandwidth=self.slow_bandwidth)
        if self.known_bug is not None:
            expect = dataclasses.replace(expect, known_bug=self.known_bug)
        return dataclasses.replace(scenario, expect=expect, template=template, condition=self.name)

    def to_json(self) -> dict[str, Any]:
        """For records and the manifest: the name, what it does and its block (enough to repeat it)."""
        return {"name": self.name, "describe": self.describe(), "source": self.source, "block": dict(self.block)}


_DASH_USES = re.compile(r"^(\s*)-(\s+)uses:(\s*)(['\"]?)([\w.-]+/[\w./-]+@[^\s'\"]+)\4\s*$")
_NAME = re.compile(r"^\s*-?\s*name:")


def through_slow_server(template: str) -> str:
    """The workflow with every remote ``uses: owner/name@ref`` fetched through the slow action server. A step whose
    only name was its ``uses:`` gets that text as its ``name:``, so its row, its post step and the scenario's
    expectations keep their names (a step row is named after the ``uses:`` string, which now holds the URL)."""
    lines = template.splitlines(keepends=True)
    out: list[str] = []
    for i, line in enumerate(lines):
        dash = _DASH_USES.match(line.rstrip("\n"))
        if dash is None:
            out.append(_USES.sub(lambda m: f"{m[1]}{SLOW_ACTIONS_PLACEHOLDER}/{m[2]}", line))
            continue
        indent, gap, space, quote, uses = dash.groups()
        keys = " " * (len(indent) + 1 + len(gap))
        rest = []
        for follow in lines[i + 1:]:
            if follow.strip() and (len(follow) - len(follow.lstrip())) <= len(indent):
                break
            rest.append(follow)
        named = any(_NAME.match(f) and len(f) - len(f.lstrip()) == len(keys) for f in rest)
        moved = f"uses:{space}{quote}{SLOW_ACTIONS_PLACEHOLDER}/{uses}{quote}\n"
        out.append(f"{indent}-{gap}{moved}" if named else f"{indent}-{gap}name: {uses}\n{keys}{moved}")
    return "".join(out)


def hold_of(fault: FaultSpec | None) -> float:
    """Seconds a timing fault holds one report (or answer); 0 for none and for the modes that do not hold."""
    return fault.fault.delay if fault is not None and fault.fault.mode in TIMING_MODES else 0.0


def hold_budgets(fault: FaultSpec | None, budgets: Budgets) -> Budgets:
    """``budgets`` with those that would fire before a timing fault's own times raised above its hold (a fault
    scenario's or a condition's): the aftermath watch, the stall budget and the wait for the final log."""
    hold = hold_of(fault)
    if not hold:
        return budgets
    return dataclasses.replace(budgets, fault_quiet=max(budgets.fault_quiet, hold + 30.0),
                               runner_stalled=max(budgets.runner_stalled, hold + 5.0),
                               final_log=max(budgets.final_log, hold + 15.0),
                               fault_aftermath=max(budgets.fault_aftermath, 3 * hold + 60.0))


def parse(name: str, block: Any, source: str) -> Condition:
    """A condition from its YAML block (``source`` names the file in every error).

    Raises:
        ConfigError: not exactly one of ``fault`` / ``slow_actions``, an ``expect`` in the fault, or a bad key.
    """
    def fail(message: str) -> ConfigError:
        return ConfigError(f"--condition {name}={source}: {message}")

    if not NAME.fullmatch(name):
        raise ConfigError(f"--condition {name}={source}: NAME must be a-z, 0-9, - (up to 30 characters)")
    if not isinstance(block, Mapping):
        raise fail("not a YAML mapping; it holds one block: fault: {mode, delay, at, …} or slow_actions: {delay, …}")
    unknown = set(block) - set(KEYS)
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)} (a condition takes {', '.join(KEYS)})")
    kinds = [k for k in ("fault", "slow_actions") if block.get(k) is not None]
    if len(kinds) != 1:
        raise fail("holds exactly one of fault: or slow_actions:")
    fault = delay = bandwidth = None
    if kinds == ["fault"]:
        if isinstance(block["fault"], Mapping) and "expect" in block["fault"]:
            raise fail("a condition's fault takes no expect: its cells expect what their scenario expects")
        fault = parse_fault(block["fault"], fail)
    else:
        slow = block["slow_actions"]
        if not isinstance(slow, Mapping) or "delay" not in slow or set(slow) - {"delay", "bandwidth_kbps"}:
            raise fail("slow_actions takes delay (seconds added to each request) and optionally bandwidth_kbps")
        try:
            delay = float(slow["delay"])
            bandwidth = float(slow["bandwidth_kbps"]) if slow.get("bandwidth_kbps") is not None else None
        except (TypeError, ValueError):
            raise fail("slow_actions.delay and bandwidth_kbps are numbers") from None
        if delay < 0 or (bandwidth is not None and bandwidth <= 0):
            raise fail("slow_actions.delay must be ≥ 0 and bandwidth_kbps positive")
    return Condition(name, source, dict(block), fault, delay, bandwidth, known_bug_block(block.get("known_bug"), fail),
                     str(block.get("about") or ""))


def load(name: str, path: Path) -> Condition:
    """``--condition NAME=FILE``.

    Raises:
        ConfigError: the file is unreadable or not a condition (one line naming it).
    """
    try:
        block = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--condition {name}={path}: {str(exc).splitlines()[0]}") from None
    return parse(name, block, str(path))


def load_all(conditions: Mapping[str, Path]) -> dict[str, Condition]:
    """Every condition of the session, by name."""
    return {name: load(name, path) for name, path in conditions.items()}


def lab_zombie_timeout(conditions: Sequence[Condition]) -> float | None:
    """The zombie timeout the session's conditions need at least (None: the lab's own is fine)."""
    needs = [c.zombie_timeout() for c in conditions]
    found = [n for n in needs if n is not None]
    return max(found) if found else None
