"""Evidence bundles: everything a maintainer needs, redacted, written even when a test errors.

``<evidence-dir>/<run-id>/<test-id>/``: manifest.json, workflow.yml and expect.yml as used,
job-view.json (raw), job.log, runner.log (the task's slice), api-transcript.jsonl, verdict.json,
cpu.csv, seeded actions, repro.md and ``reproducer/`` (the end-to-end suite's form).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import __version__
from harness.redact import redact, redact_obj

SCHEMA = "forgejo-runner-regress/bundle/1"


def safe_name(text: str) -> str:
    """A file-system safe name for a test id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:150] or "test"


class Bundle:
    """One test's evidence directory; every write is redacted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)

    def text(self, name: str, content: str) -> Path:
        """Write a text file (redacted)."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(redact(content))
        return target

    def json(self, name: str, data: Any) -> Path:
        """Write JSON (keys and strings redacted)."""
        return self.text(name, json.dumps(redact_obj(data), indent=2, ensure_ascii=False, default=str) + "\n")

    def copy_tree(self, source: Path, name: str) -> None:
        """Copy a directory (text files redacted, others verbatim)."""
        for file in sorted(source.rglob("*")):
            if file.is_file() and ".git" not in file.parts:
                rel = Path(name) / file.relative_to(source)
                try:
                    self.text(str(rel), file.read_text())
                except UnicodeDecodeError:
                    (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, self.path / rel)


def environment(docker_host: str | None = None, runner_env: Mapping[str, str] | None = None,
                where: str = "") -> dict[str, Any]:
    """Machine facts for the manifest (Docker engine/CLI/buildx, kernel, CPUs, git, node).

    The tools are probed in ``runner_env`` when given: the lab runner's environment as it starts it
    (its ``HOME``, ``DOCKER_CONFIG`` with the buildx plugin, ``PATH``), which is what its jobs see;
    ``where`` says whose environment it was.
    """
    env = dict(runner_env) if runner_env is not None else {**os.environ}
    if docker_host and "DOCKER_HOST" not in env:
        env["DOCKER_HOST"] = docker_host

    def run(cmd: list[str], *, first_line: bool = False) -> str | None:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False, env=env)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = out.stdout.strip() or (out.stderr.strip() if first_line else "")
        if out.returncode != 0 or not text:
            return None
        return text.splitlines()[0] if first_line else text

    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tools_probed_in": where or "the test process's environment",
        "git": run(["git", "--version"], first_line=True),
        "node": run(["node", "--version"], first_line=True),
        "docker_cli": run(["docker", "version", "--format", "{{.Client.Version}}"]),
        "docker_engine": run(["docker", "version", "--format", "{{.Server.Version}}"]),
        "buildx": run(["docker", "buildx", "version"], first_line=True),
    }


def repro_markdown(manifest: Mapping[str, Any], verdict_table: str, workflow: str) -> str:
    """``repro.md``: an upstream bug report, complete on its own."""
    m = manifest
    runner = m.get("runner", {})
    forgejo = m.get("forgejo", {})
    violations = m.get("verdict", {}).get("violations") or []
    observed = "\n".join(f"- `{v['rule']}`: {v['message']}" for v in violations) or "- no violation"
    expected = m.get("expect", {})
    who = runner.get("name") or "(unknown: the job log names no runner)"
    files = m.get("files") or []
    listed = ", ".join(f"`{name}`" for name in files if name not in ("repro.md",)) or "none"
    config_note = ("config in `runner-config.yaml` of this bundle, secrets redacted" if "runner-config.yaml" in files
                   else "its config is not part of this bundle: the suite did not start this runner")
    reason = f"\n\n**Why:** {m['reason']}" if m.get("reason") else ""
    title = f"forgejo-runner {runner.get('version', '?')}: scenario `{m.get('scenario')}` — {m.get('outcome', '?')}"
    return f"""{class_line(m)}

# {title}{reason}

## What was run
A fresh repository received one commit with the workflow below (`.forgejo/workflows/{m.get('scenario')}.yml`);
the push started the run, which runner `{who}` (version {runner.get('version_from_log') or runner.get('version', '?')},
label `{m.get('label')}`) picked up. Forgejo {forgejo.get('version', '?')} ({forgejo.get('url_kind', '')}).
Suite: forgejo-runner-regress {__version__}.

```yaml
{workflow.rstrip()}
```

## Expected
Job `{expected.get('job', 'success')}`; steps {json.dumps(expected.get('steps', {}), ensure_ascii=False)};
post steps {', '.join(expected.get('post_steps', [])) or 'none listed'} end in success; "Set up job" within budget.

## Observed
{observed}
{class_evidence(m)}
```
{verdict_table}
```

## Versions and environment
- Forgejo: {forgejo.get('version')} ([actions] {json.dumps(forgejo.get('actions', {}))})
- Runner: {who} {runner.get('version_from_log') or runner.get('version')} ({config_note})
- Environment: {json.dumps(m.get('environment', {}))}
- Timings: {json.dumps(m.get('timings', {}))}
{existing_runner_note(m)}
## How to re-run
```
{rerun_command(m)}
```
or by hand: `reproducer/` holds the workflow, the runner config and setup/teardown scripts in the
form of Forgejo's end-to-end suite (`end-to-end/actions/<name>/`).
{actions_note(m)}
Files in this bundle: {listed}.
"""


def existing_runner_note(manifest: Mapping[str, Any]) -> str:
    """repro.md's section on an admin's runner (``--runner-process``): the process, its figures, the diagnose after
    the cell ("" for other runners)."""
    obs = manifest.get("observations") or {}
    who = obs.get("existing_runner")
    if not isinstance(who, Mapping):
        return ""
    cpu = {phase: (v or {}).get("runner_pct") for phase, v in (obs.get("cpu") or {}).items() if isinstance(v, Mapping)}
    shared = obs.get("shared_runner_with")
    diag = obs.get("diagnose") or {}
    found = diag.get("findings") or []
    stores = ", ".join(f"{name} {s.get('bytes', 0) / 1e6:.1f} MB ({s.get('entries', 0)} entries)"
                       for name, s in (diag.get("stores") or {}).items() if isinstance(s, Mapping))
    lines = [
        "\n## Your runner (--runner-process)",
        f"- Process: {who.get('name') or '?'} ({who.get('source')}), config {who.get('config') or 'none'}, "
        f"DOCKER_HOST {who.get('docker_host') or 'default'}" + (f"; a cache server, PID {who['cache_server_pid']}"
                                                                if who.get("cache_server_pid") else ""),
        f"- CPU (% of a core, runner and children) per phase: {json.dumps(cpu)}",
        f"- Store growth (MB): {json.dumps(obs.get('store_growth_mb', {}))}",
        "- Other jobs on it meanwhile: " + (f"{shared} (its CPU and store figures are report-only)" if shared else
                                            "none (its log shows only this task)"),
        *(f"- Note: {n}" for n in who.get("notes") or ()),
        f"- diagnose after the cell: {stores or diag.get('unavailable', 'not taken')}; "
        f"{len(found)} finding(s), {diag.get('bytes_to_reclaim', 0) / 1e6:.1f} MB to reclaim"
        + (" — " + "; ".join(found[:5]) if found else "") + " (the whole report: `diagnose.txt`)",
        "",
    ]
    return "\n".join(lines)


def class_line(manifest: Mapping[str, Any]) -> str:
    """repro.md's first line: ``class: <name> — <why>`` (harness.classify), ``class: none`` for a clean pass."""
    name = manifest.get("class")
    if not name:
        return "class: none — every expectation held"
    why = (manifest.get("class_evidence") or {}).get("why")
    return f"class: {name} — {why}" if why else f"class: {name}"


def class_evidence(manifest: Mapping[str, Any]) -> str:
    """The lines and timings that decided the class, as a list ("" when there are none)."""
    evidence = manifest.get("class_evidence") or {}
    lines = [f"- {line}" for line in evidence.get("lines") or []]
    timings = evidence.get("timings") or {}
    if timings:
        lines.append("- timings: " + ", ".join(f"{k}={v}" for k, v in timings.items()))
    if not lines:
        return ""
    return f"\nWhat decided the class `{manifest.get('class')}`:\n" + "\n".join(lines) + "\n"


def rerun_command(manifest: Mapping[str, Any]) -> str:
    """The ``python -m harness rerun`` command with every option that shaped the cell (the re-run takes them
    from manifest.json by default too; written out so a reader sees what runs)."""
    bundle = str(manifest.get("bundle_dir") or "<this bundle>")
    o = manifest.get("rerun") or {}
    version = o.get("runner_version") or manifest.get("runner", {}).get("version") or "VERSION"
    words = ["python", "-m", "harness", "rerun", bundle, f"--runner-version={version}"]
    if o.get("forgejo_version"):
        words.append(f"--forgejo-version={o['forgejo_version']}")
    if o.get("runner_binary"):
        words.append(f"--runner-binary={version}={o['runner_binary']}")
    words += [f"--seed-action={item}" for item in o.get("seed_action") or ()]
    words += [f"--runner-config={name}={bundle}/{file}" for name, file in (o.get("runner_config") or {}).items()]
    if o.get("actions_url"):
        words.append(f"--actions-url={o['actions_url']}")
    words += [f"--runner-without={version}={tool}" for tool in o.get("runner_without") or ()]
    words += [f"--condition={name}={bundle}/{file}" for name, file in (o.get("condition") or {}).items()]
    return " ".join(shlex.quote(w) for w in words)


def actions_note(manifest: Mapping[str, Any]) -> str:
    """What ran for each ``uses:`` (commit, stand-in or seeded copy and from where), for repro.md."""
    actions = manifest.get("actions") or []
    if not actions:
        return ""
    lines = [f"- `{a['uses']}`: {a.get('commit') or 'commit unknown'} ({a.get('kind')}"
             + (f" from `{a['from']}`" if a.get("from") else "")
             + (f"; read from the {a['commit_from']})" if a.get("commit") else f"; {a.get('commit_from')})")
             for a in actions]
    return "\nActions that ran (the files of each commit are in `actions/`):\n" + "\n".join(lines) + "\n"


def write_reproducer(bundle: Bundle, scenario_name: str, workflow: str, runner_config: str | None, label: str) -> None:
    """``reproducer/``: workflow + runner config + setup/teardown scripts (end-to-end suite form)."""
    base = "reproducer"
    bundle.text(f"{base}/.forgejo/workflows/{scenario_name}.yml", workflow)
    if runner_config:
        bundle.text(f"{base}/runner-config.yaml", runner_config)
    bundle.text(f"{base}/setup.sh", f"""#!/bin/sh
# Set-up for the reproducer of {scenario_name}: a runner with the label below must be registered.
# label: {label}
set -e
command -v git >/dev/null || echo "warning: runner 12.x needs git on PATH" >&2
""")
    bundle.text(f"{base}/teardown.sh", "#!/bin/sh\n# nothing to tear down: the repository is throwaway\ntrue\n")
    for script in ("setup.sh", "teardown.sh"):
        (bundle.path / base / script).chmod(0o755)


def write_index(root: Path) -> Path:
    """``index.md`` linking every bundle under ``root`` with its verdict."""
    rows = []
    for manifest in sorted(root.glob("*/manifest.json")):
        try:
            m = json.loads(manifest.read_text())
        except ValueError:
            continue
        rules = ", ".join(v["rule"] for v in m.get("verdict", {}).get("violations", [])) or "-"
        rows.append(f"| [{m.get('test_id')}]({manifest.parent.name}/repro.md) | {m.get('outcome')} | "
                    f"{m.get('class') or '-'} | {rules} |")
    index = root / "index.md"
    index.write_text("# Evidence bundles\n\n| test | outcome | class | violations |\n|---|---|---|---|\n"
                     + "\n".join(rows) + "\n")
    return index
