"""A graceful stop (SIGTERM, ``runner.shutdown_timeout: 0s``) while a main step runs, on real 11.3.1 and 12.1.2
runners: the job's context is cancelled (issue 12 finding 2, path (b)), the cell is classified
``context-cancelled`` with the runner's cancelled-step line as evidence, and the runner exits after the job."""

from __future__ import annotations

import uuid

import pytest

from harness import classify
from harness.cell import run_cell
from harness.lab.lab import RunnerSpec, boot
from harness.runners import binaries
from harness.scenarios import load
from harness.target import open_lab
from harness.versions import Version

from .conftest import FORGEJOS, resolve_or_skip

pytestmark = [pytest.mark.lab]

RUNNERS = (Version(11, 3, 1), Version(12, 1, 2))


@pytest.fixture(scope="module")
def target():
    here = [v for v in FORGEJOS if v in binaries.available("forgejo")]
    forgejo = resolve_or_skip("forgejo", here[-1] if here else FORGEJOS[-1])
    specs = [RunnerSpec(resolve_or_skip("forgejo-runner", v)) for v in RUNNERS]
    lab = boot(f"gs-{uuid.uuid4().hex[:6]}", forgejo, specs, use_docker=False)
    yield open_lab(lab)
    assert not lab.down()


@pytest.mark.parametrize("version", [str(v) for v in RUNNERS])
def test_term_during_main_is_context_cancelled(target, tmp_path, version):
    handle = next(h for h in target.runners.values() if str(h.version) == version)
    result = run_cell(target, load("term-during-main"), handle, tmp_path / "bundle", evidence="always")
    assert result.error is None, result.error
    assert result.observations["runner_control"]["signal"] == "TERM"
    assert result.observations["private_runner"] != handle.lab_runner.name  # the signal ends a runner of its own
    assert result.passed, result.selfcheck_problem or (result.verdict and result.verdict.table())
    assert result.classification.name == classify.CONTEXT_CANCELLED, result.classification
    evidence = "\n".join(result.classification.evidence)
    assert "cancelled steps: ['after the slow step']" in evidence, result.classification
    if version == "12.1.2":  # 11.3.1 does not log the step's error into the job view while steps run
        assert "this step has been cancelled: ctx: context canceled" in evidence, result.classification
    assert (tmp_path / "bundle" / "repro.md").read_text().startswith(f"class: {classify.CONTEXT_CANCELLED} — ")
