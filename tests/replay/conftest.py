"""Replay tier glue: makes ``replay_server`` importable in any import mode and provides fixtures."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if "replay_server" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("replay_server", Path(__file__).with_name("replay_server.py"))
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["replay_server"] = _module
    _spec.loader.exec_module(_module)

from replay_server import RECORDINGS, ReplayServer


@pytest.fixture(scope="session", autouse=True)
def _recordings_present() -> None:
    if not (RECORDINGS / "README.md").is_file():
        pytest.fail(f"the recordings are missing: {RECORDINGS} (copy them from the recording set)", pytrace=False)


@pytest.fixture
def replay() -> Iterator[Callable[..., ReplayServer]]:
    """A factory: ``replay(exchanges_or_dir, faults=..., ...)`` → a started server, stopped after the test."""
    servers: list[ReplayServer] = []

    def start(source: Any, **kwargs: Any) -> ReplayServer:
        server = ReplayServer.from_dir(source, **kwargs) if isinstance(source, Path) else ReplayServer(source, **kwargs)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()
