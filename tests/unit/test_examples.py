"""examples/pre-upgrade-gate.yml: a matrix job per runner version, then the merge as the gate; its commands are the
ones the README documents, and they parse as this suite's options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from harness import config
from harness.cli import build_parser

ROOT = Path(__file__).parents[2]
WORKFLOW = yaml.safe_load((ROOT / "examples" / "pre-upgrade-gate.yml").read_text())


def commands(job: str, word: str) -> list[str]:
    found = [line.strip() for step in WORKFLOW["jobs"][job]["steps"] for line in str(step.get("run", "")).splitlines()
             if word in line]
    assert found, f"job {job} runs no {word!r}"
    return found


def test_the_matrix_runs_each_version_and_keeps_its_run_dir():
    run = WORKFLOW["jobs"]["run"]
    assert run["strategy"]["matrix"]["version"] == ["${{ inputs.baseline }}", "${{ inputs.candidate }}"]
    assert run["strategy"]["fail-fast"] is False  # one version's failure must not cancel the other's run
    keep = next(s for s in run["steps"] if "upload-artifact" in str(s.get("uses")))
    assert keep["if"] == "always()" and keep["with"]["path"] == "runs/"
    gate = WORKFLOW["jobs"]["gate"]
    assert gate["needs"] == "run" and gate["if"] == "always()"  # the gate decides, also over a failed run
    assert any("download-artifact" in str(s.get("uses")) for s in gate["steps"])


def test_its_commands_are_the_readme_s_and_parse_as_the_suite_s_options():
    readme = (ROOT / "README.md").read_text()
    (pytest_line,) = commands("run", "pytest ")
    (merge_line,) = commands("gate", "report merge")
    for line in (pytest_line, merge_line):
        assert line in readme, f"the README does not document {line!r}"
    words = shlex.split(re.sub(r"\$(\w+)", lambda m: {"VERSION": "12.1.2", "BASELINE": "11.3.1",
                                                       "CANDIDATE": "12.1.2"}[m[1]], pytest_line))
    assert words[:3] == ["pytest", "-m", "regression"]
    given: dict[str, object] = {}
    for word in words[3:]:
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            given[name] = value
        else:
            given[next(reversed(given))] = word
    settings = config.build(config.resolve_raw(lambda dest: (
        [given[dest.removeprefix("regress_").replace("_", "-")]] if dest == "regress_runner_version"
        else given.get(dest.removeprefix("regress_").replace("_", "-"))), environ={}))
    assert [str(v) for v in settings.runner_versions] == ["12.1.2"] and settings.evidence == "always"
    merge = build_parser().parse_args(shlex.split(merge_line.replace('"$BASELINE"', "11.3.1")
                                                  .replace('"$CANDIDATE"', "12.1.2"))[3:])
    assert (merge.command, merge.report_command, merge.out) == ("report", "merge", "merged")
    assert (merge.baseline, merge.candidate, merge.gate_on) == ("11.3.1", "12.1.2", "setup,cache")
