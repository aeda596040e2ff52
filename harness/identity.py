"""A cell's identity across runs: which session and host made it, and a hash of what it ran.

Records of several sessions (one CI job per runner version, each on its own host) are joined by
``report merge`` (:mod:`harness.merge`); that is only sound when the cells they compare ran the same
thing. :func:`scenario_hash` covers what a cell's outcome depends on besides the runner: the scenario's
files (workflow, expect, README), the stand-in actions its workflow uses, the condition it ran under and
the suite's version.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import __version__
from harness.scenarios import ACTIONS_DIR, DEFAULT_EXPECT_TEXT, Scenario

SCENARIO_FILES = ("workflow.yml", "expect.yml", "README.md")


def host() -> str:
    """This machine's name, as records carry it."""
    return socket.gethostname()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def scenario_hash(scenario: Scenario, condition: Mapping[str, Any] | None = None) -> str:
    """``sha256:<hex>`` of the scenario's files, the stand-in actions it uses, the condition's block and the
    suite's version (the same for the same cell on any machine with the same checkout)."""
    digest = hashlib.sha256(f"forgejo-runner-regress {__version__}\n".encode())
    for name in SCENARIO_FILES:
        path = scenario.path / name
        if path.is_file():
            digest.update(f"\0{name}\0".encode() + path.read_bytes())
        elif name == "expect.yml":
            digest.update(b"\0expect.yml\0" + DEFAULT_EXPECT_TEXT.encode())
    for uses in scenario.uses():
        action = ACTIONS_DIR / uses.split("@", 1)[0]
        if action.is_dir():  # a stand-in the lab seeds (a real action from elsewhere has no files here)
            for path in _files(action):
                digest.update(f"\0{uses}:{path.relative_to(action)}\0".encode() + path.read_bytes())
    if condition:
        digest.update(b"\0condition\0" + json.dumps(dict(condition), sort_keys=True, default=str).encode())
    return f"sha256:{digest.hexdigest()}"


def stamp(session: str, repeat: int, repeats: int, scenario_hash_: str | None) -> dict[str, Any]:
    """The identity fields of a cell record."""
    return {"session": session, "host": host(), "repeat": repeat, "repeats": repeats, "scenario_hash": scenario_hash_}
