"""The stubbed lab that pytester projects of the plugin tests share: no binaries, two fake runners.

A project's conftest defines ``fake_run_cell`` and appends :data:`STUB_LAB`; its test file is
:data:`SCENARIO_TEST` (plus tests of its own). :func:`isolate` keeps the outer session's settings out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

STUB_LAB = '''

plugin.run_cell = fake_run_cell
plugin.plan_lab = lambda settings, versions: SimpleNamespace(not_applicable=())


@pytest.fixture(scope="session")
def regress_target():
    return SimpleNamespace(server_version="11.0.15", lab=None,
                           runners={k: SimpleNamespace(key=k) for k in ("11.3.1", "12.1.2")})
'''

SCENARIO_TEST = '''
from harness.pytest_plugin import assert_cell


def test_scenario(regress_run):
    assert_cell(regress_run)
'''

_OUTER = ("REGRESS_RUNNER_VERSION", "REGRESS_FORGEJO_URL", "REGRESS_EVIDENCE", "REGRESS_EVIDENCE_DIR")


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, also: Iterable[str] = ()) -> None:
    """No setting of the outer session (``REGRESS_*``, ``also`` too) reaches the project; an empty bin dir and a
    cache dir of its own."""
    for name in (*_OUTER, *also):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("REGRESS_BIN_DIR", str(tmp_path / "bin"))
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path / "cache"))
