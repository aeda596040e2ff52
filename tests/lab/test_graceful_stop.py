"""Issue 12 finding 2's paths (a) and (b) on real 11.3.1 and 12.1.2 runners (unmodified).

(b) A graceful stop (SIGTERM, ``runner.shutdown_timeout: 0s``) while a main step runs: the job's context is
cancelled, the cell is classified ``context-cancelled`` (``term-during-main``).
(a) A runner whose ``log.job_level`` is not a level: the config loads (``internal/pkg/config/config.go`` never
parses it) and the daemon polls, but ``internal/app/run/runner.go`` ``run`` parses it for every task after the
task's first lines and returns the error before the job executor starts; ``Run``'s deferred ``reporter.Close``
then has no job result: RESULT_FAILURE, every step cancelled, the error as last words
(``internal/pkg/report/reporter.go`` ``Close``): ``report-gave-up``. Expectation written from the sources
(11.3.1 = 92465a94 runner.go:373-378, 12.1.2 = 01e6bada runner.go:377-382) before the first run."""

from __future__ import annotations

import uuid

import pytest

from harness import classify
from harness.cell import run_cell
from harness.lab.booting import boot
from harness.lab.lab import RunnerSpec
from harness.scenarios import load
from harness.target import open_lab
from harness.versions import Version

from .conftest import newest_forgejo, resolve_or_skip

pytestmark = [pytest.mark.lab]

RUNNERS = (Version(11, 3, 1), Version(12, 1, 2))
BAD_LEVEL = "badlevel"


@pytest.fixture(scope="module")
def target():
    forgejo = newest_forgejo()
    binaries_ = [resolve_or_skip("forgejo-runner", v) for v in RUNNERS]
    specs = [RunnerSpec(b) for b in binaries_]
    specs += [RunnerSpec(b, BAD_LEVEL, {"log": {"job_level": "bogus"}}) for b in binaries_]
    lab = boot(f"gs-{uuid.uuid4().hex[:6]}", forgejo, specs, use_docker=False)
    yield open_lab(lab)
    assert not lab.down()


@pytest.mark.parametrize("version", [str(v) for v in RUNNERS])
def test_term_during_main_is_context_cancelled(target, tmp_path, version):
    handle = target.runners[version]
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


@pytest.mark.parametrize("version", [str(v) for v in RUNNERS])
def test_a_run_error_before_the_job_starts_is_report_gave_up(target, tmp_path, version):
    handle = target.runners[f"{version}-{BAD_LEVEL}"]
    result = run_cell(target, load("native-checkout"), handle, tmp_path / "bundle", evidence="always")
    assert result.error is None, result.error
    assert not result.passed
    assert result.classification.name == classify.REPORT_GAVE_UP, result.classification
    evidence = "\n".join(result.classification.evidence)
    assert "not a valid logrus Level" in evidence, evidence  # the run error, the reporter's last words
    assert "cancelled steps: [" in evidence, evidence
    assert (tmp_path / "bundle" / "repro.md").read_text().startswith(f"class: {classify.REPORT_GAVE_UP} — ")
