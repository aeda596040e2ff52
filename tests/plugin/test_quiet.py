"""The plugin is installed in the venv and so loads in every pytest run: it must stay quiet in a
project that is not ours, work without xdist, and read the project's ini with the README's option form."""

from __future__ import annotations

import os

import pytest

SPY = '''
import os

from harness.runners import binaries

_available = binaries.available


def _spy(*args, **kwargs):
    with open(os.environ["SCAN_LOG"], "a") as log:
        log.write(f"scanned {args}\\n")
    return _available(*args, **kwargs)


binaries.available = _spy
'''

USER_TESTS = '''
import pytest


def test_plain():
    assert 1 + 1 == 2


@pytest.mark.regression
def test_marked_with_one_of_our_markers():
    pass
'''


def _tree(root):
    """Every path under ``root`` but pytester's own (its basetemp and captured output files)."""
    paths = (p.relative_to(root) for p in root.rglob("*"))
    return sorted(str(p) for p in paths
                  if not p.parts[0].startswith("runpytest-") and p.parts[0] not in ("stdout", "stderr"))


@pytest.fixture
def user_project(pytester, monkeypatch, tmp_path):
    """Somebody else's project: a test file, a spy conftest that logs bin dir scans outside the project."""
    for name in [n for n in os.environ if n.startswith("REGRESS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REGRESS_BIN_DIR", str(tmp_path / "bin"))
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SCAN_LOG", str(tmp_path / "scans.log"))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    pytester.makeconftest(SPY)
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.makefile(".ini", pytest="[pytest]\naddopts = --strict-markers -p no:cacheprovider\n")
    return tmp_path


@pytest.mark.parametrize("extra", [(), ("-p", "no:xdist")])
def test_an_unrelated_project_gets_nothing_created_or_scanned(pytester, user_project, extra):
    before = _tree(pytester.path)
    result = pytester.runpytest_subprocess(*extra)
    result.assert_outcomes(passed=2)  # our markers are registered: --strict-markers accepts them
    assert result.ret == pytest.ExitCode.OK
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert _tree(pytester.path) == before, "the plugin created files in a project that is not ours"
    assert not (user_project / "scans.log").exists(), "the plugin scanned the bin dir"
    assert not (user_project / "cache").exists()
    assert "forgejo-runner-regress:" not in result.stdout.str()  # no header, no report


def test_an_option_of_ours_wakes_the_plugin(pytester, user_project):
    """The control for the test above: the spy does see a scan once the plugin has work."""
    result = pytester.runpytest_subprocess("--runner-version", "12.1.2")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["forgejo-runner-regress: target lab*runner versions 12.1.2"])
    assert "scanned" in (user_project / "scans.log").read_text()
    assert (pytester.path / "artifacts" / "evidence").is_dir()


def test_scenario_cells_without_xdist(pytester, user_project):
    pytester.makepyfile(test_scen="""
        from harness.pytest_plugin import assert_cell

        def test_scenario(regress_run):
            assert_cell(regress_run)
    """)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-rs", "--runner-version", "12.1.2", "-k", "checkout")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*SKIPPED*lab binaries missing*"])
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize(("form", "ini_read"), [("equals", True), ("space", False)])
def test_option_paths_in_the_readme_form_keep_the_ini(pytester, user_project, tmp_path_factory, form, ini_read):
    """README: write `--forgejo-token-file=PATH`. With a space, pytest takes PATH as a test path
    while looking for the ini file (our options are not known yet then) and misses pytest.ini."""
    token = tmp_path_factory.mktemp("elsewhere") / "token"
    token.write_text("not-a-real-token-0123456789\n")
    pytester.makefile(".ini", pytest="[pytest]\nregress_setup_budget = 45\n")
    file_opt = [f"--forgejo-token-file={token}"] if form == "equals" else ["--forgejo-token-file", str(token)]
    result = pytester.runpytest_subprocess("--collect-only", "-p", "no:cacheprovider",
                                           "--forgejo-url=http://127.0.0.1:9", *file_opt,
                                           "--runner-label=12.1.2:native=some-runner")
    assert result.ret == pytest.ExitCode.OK
    read = "setup-budget=45 (ini regress_setup_budget)" in result.stdout.str()
    assert read == ini_read, ("pytest's ini lookup changed: update the README's note on --opt=PATH"
                              if form == "space" else "pytest.ini was not read with the README's option form")
    if ini_read:
        result.stdout.fnmatch_lines(["configfile: pytest.ini"])
