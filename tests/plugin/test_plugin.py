"""The pytest plugin seen from outside: options, usage errors, skips with reasons, cheap collection."""

from __future__ import annotations

import pytest

SCENARIO_TEST = """
from harness.pytest_plugin import assert_cell

def test_scenario(regress_run):
    assert_cell(regress_run)
"""


@pytest.fixture
def empty_bin(pytester, monkeypatch, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("REGRESS_BIN_DIR", str(bindir))
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("REGRESS_RUNNER_VERSION", "REGRESS_FORGEJO_URL", "REGRESS_EVIDENCE"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_scen=SCENARIO_TEST)
    return bindir


def test_collect_only_is_cheap_and_names_cells(pytester, empty_bin, tmp_path):
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--runner-version", "12.1.2",
                                           "--runner-version", "11.3.1")
    result.stdout.fnmatch_lines(["*test_scenario[[]native-checkout-11.3.1[]]*"])
    result.stdout.fnmatch_lines(["*test_scenario[[]qemu-buildx-12.1.2[]]*"])
    assert result.ret == 0
    assert not (tmp_path / "cache" / "labs").exists(), "collection must not boot a lab"


def test_regression_run_without_target_is_a_usage_error(pytester, empty_bin):
    result = pytester.runpytest_subprocess("-m", "regression", "--runner-version", "12.1.2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*regression run was requested but neither --forgejo-url nor the lab binaries*",
                                 "*no forgejo binary*"])
    assert "Traceback" not in result.stderr.str()


def test_lab_tests_skip_with_reason_elsewhere(pytester, empty_bin):
    result = pytester.runpytest_subprocess("-rs", "--runner-version", "12.1.2")
    assert result.ret == 0
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) >= 3 and not outcomes.get("passed") and not outcomes.get("failed")
    result.stdout.fnmatch_lines(["*SKIPPED*lab binaries missing: no forgejo binary*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--setup-budget", "fast"], "*--setup-budget*is not N or cold=N,warm=M*"),
        (["--runner-label", "12.1.2=x"], "*--runner-label*is not VERSION:KIND=LABEL*"),
        (["--forgejo-url", "ftp://host"], "*must start with http:// or https://*"),
        (["--baseline", "12.1.2", "--candidate", "12.1.2"], "*both 12.1.2: nothing to compare*"),
        (["--evidence", "sometimes"], "*is not always, on-failure or never*"),
        (["--runner-version", "twelve"], "*not a version*"),
        (["--repeat", "0"], "*--repeat*must be at least 1*"),
        (["--forgejo-url", "http://127.0.0.1:9"], "*needs a token*"),
        (["--evidence-dir", "/proc/regress-evidence"], "*--evidence-dir*is not writable*"),
        (["--compare-baseline", "/nonexistent/golden.json", "--candidate", "12.1.2"], "*golden.json does not exist*"),
        (["--runner-config", "Bad Name=x.yaml"], "*is not NAME=FILE*"),
    ],
)
def test_bad_options_are_usage_errors(pytester, empty_bin, args, message):
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_environment_and_ini_feed_options_cli_wins(pytester, empty_bin, monkeypatch):
    monkeypatch.setenv("REGRESS_EVIDENCE", "always")
    pytester.makeini("[pytest]\nregress_setup_budget = 45\n")
    result = pytester.runpytest_subprocess("--collect-only", "--runner-version", "12.1.2", "--evidence", "never")
    result.stdout.fnmatch_lines(["*setup-budget=45 (ini regress_setup_budget)*"])
    result.stdout.fnmatch_lines(["*evidence=never (command line)*"])
    monkeypatch.setenv("REGRESS_SETUP_BUDGET", "30")
    result = pytester.runpytest_subprocess("--collect-only", "--runner-version", "12.1.2")
    result.stdout.fnmatch_lines(["*setup-budget=30 (env REGRESS_SETUP_BUDGET)*"])
    result.stdout.fnmatch_lines(["*evidence=always (env REGRESS_EVIDENCE)*"])


def test_unreachable_instance_fails_with_a_reason_not_a_traceback(pytester, empty_bin, tmp_path):
    token = tmp_path / "token"
    token.write_text("not-a-real-token-0123456789\n")
    result = pytester.runpytest_subprocess("-m", "regression", "-k", "native-checkout", "--forgejo-url",
                                           "http://127.0.0.1:9", "--forgejo-token-file", str(token),
                                           "--runner-label", "12.1.2:native=some-runner")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*the target could not be set up*no Forgejo answers /api/v1/version*"])
    assert "not-a-real-token-0123456789" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_markers_are_registered(pytester, empty_bin):
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.regression:*", "@pytest.mark.selfcheck:*", "@pytest.mark.lab:*",
                                 "@pytest.mark.docker:*"])
