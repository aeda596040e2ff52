"""Shared helpers for the unit tests: the recorded Forgejo × runner payloads in ``tests/data/recordings``.

A test that takes the ``recording`` argument runs once per recorded scenario (see ``pytest_generate_tests``);
``recording_at`` returns one named recording.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

RECORDINGS = Path(__file__).resolve().parent.parent / "data" / "recordings"


@dataclass(frozen=True)
class Recording:
    """One ``forgejo-<ver>/runner-<ver>/<scenario>/`` folder."""

    path: Path

    @property
    def forgejo(self) -> str:
        return self.path.parent.parent.name.removeprefix("forgejo-")

    @property
    def runner(self) -> str:
        return self.path.parent.name.removeprefix("runner-")

    @property
    def scenario(self) -> str:
        return self.path.name

    @property
    def id(self) -> str:
        return f"f{self.forgejo}-r{self.runner}-{self.scenario}"

    @cached_property
    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / "meta.json").read_text())

    @cached_property
    def exchanges(self) -> list[dict[str, Any]]:
        lines = (self.path / "exchanges.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def view_responses(self) -> list[dict[str, Any]]:
        """Every stored 200 answer of a POST under ``/actions/runs/`` (job views and the cancel)."""
        return [r for r in self.exchanges
                if r["method"] == "POST" and "/actions/runs/" in r["url_path"] and r["status"] == 200]

    def job_view_payloads(self) -> list[dict[str, Any]]:
        """The stored job-view polls (200), in order."""
        return [r["response_body"] for r in self.view_responses() if "/jobs/" in r["url_path"]]

    def last_view_payload(self) -> dict[str, Any]:
        return self.job_view_payloads()[-1]

    def api(self, suffix: str, method: str = "GET") -> list[dict[str, Any]]:
        """Exchanges whose path ends with ``suffix``."""
        return [r for r in self.exchanges if r["method"] == method and r["url_path"].endswith(suffix)]

    @property
    def job_log(self) -> str:
        return (self.path / "job.log").read_text()

    @property
    def runner_log(self) -> str:
        return (self.path / "runner.log").read_text()

    @property
    def workflow(self) -> str:
        return (self.path / "workflow.yml").read_text()


def all_recordings() -> list[Recording]:
    return [Recording(p) for p in sorted(RECORDINGS.glob("forgejo-*/runner-*/*")) if (p / "meta.json").is_file()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "recording" in metafunc.fixturenames:
        found = all_recordings()
        metafunc.parametrize("recording", found, ids=[r.id for r in found])


@pytest.fixture
def recording_at() -> Callable[[str], Recording]:
    """``recording_at("forgejo-11.0.15/runner-12.1.2/native-post")``."""

    def get(relative: str) -> Recording:
        path = RECORDINGS / relative
        assert (path / "meta.json").is_file(), f"no recording {relative}"
        return Recording(path)

    return get


@pytest.fixture(scope="session")
def recordings() -> list[Recording]:
    found = all_recordings()
    assert len(found) == 20, f"expected the 20 recorded scenarios in {RECORDINGS}, found {len(found)}"
    return found
