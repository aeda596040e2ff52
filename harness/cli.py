"""A small CLI for what is useful outside pytest: ``lab prepare|up|status|down``, ``rerun``, ``bisect``,
``classify``, ``diagnose``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from filelock import FileLock, Timeout

from harness import config
from harness.errors import ConfigError, HarnessError
from harness.lab import booting
from harness.lab import lab as labs
from harness.lab.forgejo import ZombieSettings
from harness.lab.inventory import inventory, prune, remove_stale_locks
from harness.lab.prepare import prepare
from harness.lab.seed import parse_seed_option
from harness.paths import labs_dir
from harness.runners import binaries
from harness.versions import Version

DEFAULT_LAB = "default"


def _versions(values: Sequence[str] | None, kind: str) -> list[Version]:
    if values:
        try:
            return [Version.key(v) if kind == "forgejo-runner" else Version.parse(v) for v in values]
        except ValueError as exc:
            raise HarnessError(str(exc)) from None
    found = binaries.available(kind)
    if not found:
        raise HarnessError(f"no {kind} binary in {binaries.bin_dir()} and no version given")
    return found if kind == "forgejo-runner" else [found[-1]]


def _explicit(values: Sequence[str] | None) -> dict[Version, object]:
    result: dict[Version, object] = {}
    for value in values or ():
        version, sep, path = value.partition("=")
        if not sep:
            raise HarnessError(f"--runner-binary {value!r}: expected VERSION=PATH")
        result[Version.key(version)] = Path(path)
    return result


def _print(text: str) -> None:
    print(text, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    labs.lab_dir_for(args.lab)  # a bad id is refused before anything is created
    if args.actions_url:
        args.actions_url = config.check_actions_url(args.actions_url, "--actions-url", seeded=bool(args.seed_action))
    if args.zombie_timeout:
        args.zombie_timeout = config.check_zombie_timeout(args.zombie_timeout.strip(), "lab up")
    labs_dir().mkdir(parents=True, exist_ok=True)
    # the lock a pytest session takes too; `lab prune` leaves a locked lab alone (and removes stale locks)
    with FileLock(str(labs_dir() / f"{args.lab}.lock")):
        return _up(args)


def _up(args: argparse.Namespace) -> int:
    directory = labs.lab_dir_for(args.lab)
    if (directory / "lab.json").exists():
        existing = labs.Lab.load(directory)
        problem = existing.healthy()
        wanted = {str(v) for v in _versions(args.runner_version, "forgejo-runner")}
        same_actions = existing.forgejo.actions_url == (args.actions_url or "self")
        zombie = _zombie(args)
        same_zombie = existing.forgejo.zombie.zombie_timeout == zombie.zombie_timeout
        if problem is None and wanted <= set(existing.runners) and same_actions and same_zombie:
            _print(f"reusing the healthy lab {args.lab}")
            return _show(existing, args.json)
        why = problem or ("other runner versions requested" if same_actions and same_zombie else
                          f"actions URL {existing.forgejo.actions_url} there, {args.actions_url or 'self'} requested"
                          if not same_actions else f"ZOMBIE_TASK_TIMEOUT {existing.forgejo.zombie.zombie_timeout} "
                          f"there, {zombie.zombie_timeout} requested")
        _print(f"replacing lab {args.lab}: {why}")
        with existing:  # down on exit: what it leaves is raised (a new boot would collide with it)
            pass
    forgejo_version = _versions([args.forgejo_version] if args.forgejo_version else None, "forgejo")[0]
    forgejo = binaries.resolve("forgejo", forgejo_version,
                               explicit={forgejo_version: Path(args.forgejo_binary)} if args.forgejo_binary else None)
    explicit = _explicit(args.runner_binary)
    specs = [labs.RunnerSpec(binaries.resolve("forgejo-runner", v, explicit=explicit))  # type: ignore[arg-type]
             for v in _versions(args.runner_version, "forgejo-runner")]
    lab = booting.boot(args.lab, forgejo, specs, capacity=args.capacity, seed_sources=parse_seed_option(args.seed_action),
                    zombie=_zombie(args), actions_url=args.actions_url, notify=_print)
    return _show(lab, args.json)


def _zombie(args: argparse.Namespace) -> ZombieSettings:
    """The lab's zombie settings: ``--zombie-timeout`` when given, else the lab's own (30s)."""
    return ZombieSettings(zombie_timeout=args.zombie_timeout) if args.zombie_timeout else ZombieSettings()


def _show(lab: labs.Lab, as_json: bool) -> int:
    data = lab.to_json()
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    fj = data["forgejo"]
    _print(f"lab {data['id']} ({data['dir']})")
    _print(f"  Forgejo {fj['version']} {fj['url']} pid {fj['pid']} log {fj['log']}")
    _print(f"  token file {fj['token_file']} (user {fj['user']}, password file {fj['password_file']})")
    if fj.get("actions_url", "self") != "self":
        _print(f"  actions from {fj['actions_url']} (DEFAULT_ACTIONS_URL; nothing seeded)")
    zombie = fj.get("zombie") or {}
    _print(f"  ZOMBIE_TASK_TIMEOUT {zombie.get('timeout', '?')} (cron {zombie.get('cron', '?')})")
    if data["engine"]:
        e = data["engine"]
        whose = f"ours, pid {e['pid']}" if e["ours"] else "the user's"
        _print(f"  Docker {e['version']} at {e['host']} ({whose}) bridge {e['bridge_ip']} runtime {e['runtime']}")
    for _key, r in data["runners"].items():
        _print(f"  runner {r['name']} v{r['version']} pid {r['pid']} alive={r['alive']} log {r['log']}")
        _print(f"    labels: {', '.join(r['labels'].values())}")
        c = r["cache_server"]
        _print(f"    cache server pid {c['pid']} port {c['port']} (proxy {c['proxy_port']}) dir {c['dir']}")
    for _key, r in data["private_runners"].items():
        _print(f"  private runner {r['name']} v{r['version']} pid {r['pid']} alive={r['alive']} log {r['log']}")
        _print(f"    labels: {', '.join(r['labels'].values())}; cache server port {r['cache_server']['port']}")
    for s in data["seeded"]:
        _print(f"  seeded {s['repo']} @ {s['commit'][:12]} refs {', '.join(s['refs'])}")
    _print("  listeners:")
    for listener in data["listeners"]:
        _print(f"    {listener['address']}:{listener['port']} {listener['process']} (pid {listener['pid']})")
    _print("  firewall:" + ("" if data["firewall"] else f" none ({data['firewall_note'] or 'not installed'})"))
    for rule in data["firewall"]:
        _print(f"    {rule}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    lab = labs.Lab.load(labs.lab_dir_for(args.lab))
    problem = lab.healthy()
    code = _show(lab, args.json)
    if not args.json:
        _print(f"  health: {problem or 'ok'}")
    return code if problem is None else 1


def cmd_down(args: argparse.Namespace) -> int:
    directory = labs.lab_dir_for(args.lab)
    if not directory.exists():
        _print(f"no lab {args.lab} is up")
        return 0
    try:
        lab = labs.Lab.load(directory)
    except HarnessError as exc:  # no lab.json (a failed or killed boot) or a corrupt one
        lab = None
        _print(f"lab {args.lab}: {str(exc).split(';')[0]}; stopping what carries its id")
    if lab is not None:
        leaks = lab.down(notify=_print)
    else:
        lock = FileLock(str(labs_dir() / f"{args.lab}.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise HarnessError(f"lab {args.lab} is booting (its lock {lock.lock_file} is held); not touched") from None
        try:
            leaks = labs.teardown_dir(args.lab, notify=_print)
        finally:
            lock.release()
    if leaks:
        _print("leak check FAILED, still present:\n  " + "\n  ".join(leaks))
        return 1
    remove_stale_locks()
    _print("leak check: nothing left")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    entries = inventory()
    if args.json:
        print(json.dumps([{**e.__dict__, "dir": str(e.dir)} for e in entries], indent=2))
        return 0
    if not entries:
        _print(f"no lab dirs in {labs_dir()}")
    for entry in entries:
        _print(entry.describe())
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    if args.older_than < 0:
        raise HarnessError(f"--older-than {args.older_than:g}: expected hours ≥ 0")
    removed = prune(inventory(), older_than_hours=args.older_than, dry_run=args.dry_run, notify=_print)
    _print(f"{'would remove' if args.dry_run else 'removed'} {len(removed)} lab dir(s)")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    prepared = prepare(with_buildx=not args.no_buildx, notify=_print)
    _print(f"job image {prepared.job_image} ({prepared.job_tar})")
    _print(f"binfmt image {prepared.binfmt_image} ({prepared.binfmt_tar})")
    _print(f"buildx plugin: {prepared.buildx or 'not available: ' + str(prepared.buildx_error)}")
    _print(f"buildkit image: {prepared.buildkit_image} as {prepared.buildkit_tag} ({prepared.buildkit_tar})"
           if prepared.buildkit_image else f"buildkit image: not available: {prepared.buildkit_error}")
    return 0


def _settings(args: argparse.Namespace, extra: dict[str, object] | None = None) -> config.Settings:
    values = {"forgejo-version": getattr(args, "forgejo_version", None),
              "runner-binary": getattr(args, "runner_binary", None) or [],
              "seed-action": getattr(args, "seed_action", None) or [], **(extra or {})}
    raw = config.resolve_raw(lambda dest: values.get(dest.removeprefix("regress_").replace("_", "-")))
    return config.build(raw)


def cmd_rerun(args: argparse.Namespace) -> int:
    from harness.outcome import Outcome
    from harness.rerun import changed_actions, read_bundle, rerun_values, run_on_lab, same_verdict

    bundle = read_bundle(Path(args.bundle))
    version = Version.key(args.runner_version) if args.runner_version else bundle.runner_version
    given = {"forgejo-version": args.forgejo_version, "runner-binary": args.runner_binary,
             "seed-action": args.seed_action, "runner-config": args.runner_config, "actions-url": args.actions_url,
             "condition": args.condition,
             "warm-up-repos": args.warm_up_repos, "no-warm-up": args.no_warm_up}
    values = rerun_values(bundle, given)
    if not args.forgejo_version and bundle.forgejo_version not in binaries.available("forgejo"):
        values["forgejo-version"] = None  # the bundled Forgejo is not here: the newest one that is
    if version != bundle.runner_version:
        values["runner-without"] = [f"{version}={tool}" for tool in bundle.without_tools]
    _print(f"re-running {bundle.scenario.name} (bundled outcome {bundle.outcome}, violations "
           f"{list(bundle.rules) or 'none'}) on runner {version}")
    for name, value in values.items():
        if value and value is not True:  # --warm-up goes with --warm-up-repos
            _print(f"  --{name} {' '.join(value) if isinstance(value, list) else value}"
                   + ("" if given.get(name) else " (from the bundle)"))
    key = bundle.runner_key.replace(str(bundle.runner_version), str(version), 1)
    result = run_on_lab(config.build(config.resolve_raw(lambda dest: values.get(
        dest.removeprefix("regress_").replace("_", "-")))), bundle.scenario, [version], notify=_print)[key]
    if result.verdict is not None:
        _print(result.verdict.table())
    new_bundle = f"\nnew bundle: {result.bundle}" if result.bundle else ""
    if result.outcome in (Outcome.INCONCLUSIVE, Outcome.SKIPPED):
        _print(f"{str(result.outcome).upper()}: {result.reason} (this re-run says nothing about the runner){new_bundle}")
        return 2
    same, why = same_verdict(bundle, result)
    changed = changed_actions(bundle, result.bundle)
    if changed:
        _print("other actions ran this time: " + "; ".join(changed))
    _print(why + new_bundle)
    return 0 if same else 1


def cmd_bisect(args: argparse.Namespace) -> int:
    from harness.outcome import Outcome
    from harness.rerun import bisect
    from harness.scenarios import load

    good, bad = Version.parse(args.good), Version.parse(args.bad)
    listed = sorted({Version.parse(v) for v in (args.versions or "").split(",") if v.strip()} | {good, bad})
    candidates = [v for v in listed if good <= v <= bad]
    usable = [v for v in candidates if v in binaries.available("forgejo-runner")]
    skipped = [str(v) for v in candidates if v not in usable]
    if good not in usable or bad not in usable:
        raise HarnessError(f"bisect needs binaries for {good} and {bad} in {binaries.bin_dir()}")
    if skipped:
        _print(f"no binary for {', '.join(skipped)}: left out")
    found = bisect(_settings(args), load(args.scenario), usable, notify=_print)
    tested = ", ".join(f"{v} {p.outcome}" + (f" ({p.reason})" if p.reason else "") for v, p in found.tested.items())
    _print(f"tested: {tested}")
    if found.exact:
        _print(f"first bad version: {found.first_bad}")
        return 0
    if found.first_bad is None and found.tested[str(bad)].outcome is Outcome.PASS:
        _print(found.note)
        return 1
    _print(f"INCONCLUSIVE: {found.note}")  # an inconclusive version is never reported as bad
    return 2


def cmd_classify(args: argparse.Namespace) -> int:
    """Each bundle's class line, then the lines and timings that decided it."""
    from harness.bundle_class import classify_bundle

    for bundle in args.bundles:
        found = classify_bundle(Path(bundle))
        _print(f"{bundle}: {found.line() if found else 'class: none — every expectation held'}")
        for line in found.evidence if found else ():
            _print(f"  {line}")
        if found and found.timings:
            _print("  timings: " + ", ".join(f"{k}={v}" for k, v in found.timings.items()))
    return 0


def cmd_report_merge(args: argparse.Namespace) -> int:
    """One gate over several runs: exit 0 passed, 1 failed or inconclusive, 2 bad input."""
    from harness import merge, report

    settings = config.build(config.resolve_raw(lambda dest: {
        "regress_baseline": args.baseline, "regress_candidate": args.candidate, "regress_gate_on": args.gate_on,
        "regress_compare_baseline": args.compare_baseline}.get(dest)))
    gate = report.gate_request(settings.baseline, settings.candidate, settings.gate_on, settings.compare_baseline)
    try:
        merged = merge.merge([Path(p) for p in args.runs], Path(args.out), gate)
    except ValueError as exc:  # an unreadable golden baseline
        raise ConfigError(f"--compare-baseline: {exc}") from None
    for line in (Path(args.out) / "report.md").read_text().splitlines()[2:]:
        _print(line)
    for line in merge.summary(merged, gate):
        _print(line)
    _print(f"report: {Path(args.out) / 'report.md'} (and report.json, index.md)")
    return merged.exit_status


def cmd_diagnose(args: argparse.Namespace) -> int:
    """A runner's stores: sizes, clones, cache entries, findings with their clean-up (exit 1 when any)."""
    from harness.diagnose import diagnose
    from harness.diagnose import layout as layouts
    from harness.diagnose.render import as_json, text

    dirs = {"--workdir": args.workdir, "--cache-dir": args.cache_dir}
    if args.config:
        given = [name for name, value in dirs.items() if value]
        if given:
            raise HarnessError(f"diagnose: --config and {' '.join(given)} exclude each other (the config names the "
                               "stores; --home may go with it)")
        where = layouts.from_config(Path(args.config), Path(args.cwd) if args.cwd else None,
                                    Path(args.home) if args.home else None)
    else:
        missing = [name for name, value in {**dirs, "--home": args.home}.items() if not value]
        if len(missing) == 3:
            raise HarnessError("diagnose: give --config FILE (a runner's config), or --workdir DIR --cache-dir DIR "
                               "--home DIR")
        if missing:
            raise HarnessError(f"diagnose: {' '.join(missing)} missing (without --config, give --workdir, --cache-dir "
                               "and --home)")
        if args.cwd:
            raise HarnessError("diagnose: --cwd goes with --config (relative paths of the config resolve against it)")
        where = layouts.from_dirs(Path(args.workdir), Path(args.cache_dir), Path(args.home))
    found = diagnose(where, check_upstream=args.check_upstream)
    print(as_json(found) if args.json else text(found), flush=True)
    return found.exit_code


def _diagnose_usage_error(message: str) -> NoReturn:
    """diagnose's usage errors: one line, exit 2."""
    print(f"error: diagnose: {message} (python -m harness diagnose --help)", file=sys.stderr)
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("lab", help="Throwaway Forgejo + runners + Docker engine.")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_sub.add_parser("up", help="Boot (or reuse) the lab; prints its URL, token file and runners.")
    up.add_argument("--forgejo-version")
    up.add_argument("--forgejo-binary")
    up.add_argument("--runner-version", action="append")
    up.add_argument("--runner-binary", action="append", metavar="VERSION=PATH")
    up.add_argument("--seed-action", action="append", default=[], metavar="OWNER/NAME=PATH")
    up.add_argument("--capacity", type=int, default=2)
    up.add_argument("--actions-url", metavar="URL", help="the runners fetch every action from URL (Forgejo's "
                    "DEFAULT_ACTIONS_URL; nothing is seeded), e.g. a mirror forge")
    up.add_argument("--zombie-timeout", metavar="DURATION", help="the lab Forgejo's ZOMBIE_TASK_TIMEOUT (a Go "
                    "duration; default 30s, Forgejo's own 10m); a lab with another one is replaced")
    for p in (up, lab_sub.add_parser("status", help="Show the lab (exit 1 when unhealthy)."),
              lab_sub.add_parser("down", help="Stop and remove everything the lab started.")):
        p.add_argument("--lab", default=DEFAULT_LAB, help="Lab id (default: %(default)s).")
        p.add_argument("--json", action="store_true")
    lab_sub.add_parser("list", help="Every lab dir here: up, stopped or failed boot; age and size.").add_argument(
        "--json", action="store_true")
    prune_p = lab_sub.add_parser("prune", help="Remove the dirs of labs that no longer run (failed boots, killed "
                                               "sessions), after the clean-up `down` does.")
    prune_p.add_argument("--older-than", type=float, default=0.0, metavar="HOURS")
    prune_p.add_argument("--dry-run", action="store_true")
    prep = lab_sub.add_parser("prepare", help="Build the job, binfmt and buildkit images and the buildx plugin (offline).")
    prep.add_argument("--no-buildx", action="store_true", help="skip the Go builds (buildx plugin, buildkit image)")
    rerun = sub.add_parser("rerun", help="Re-run a bundle's scenario on a fresh lab and compare the verdict.")
    rerun.add_argument("bundle")
    rerun.add_argument("--runner-version")
    rerun.add_argument("--forgejo-version")
    rerun.add_argument("--runner-binary", action="append", metavar="VERSION=PATH")
    rerun.add_argument("--seed-action", action="append", metavar="OWNER/NAME=PATH",
                       help="seed this copy instead of the bundle's (default: the bundle's seeded copies)")
    rerun.add_argument("--runner-config", action="append", metavar="NAME=FILE",
                       help="default: the bundle's config axis (its runner-config-overrides.yaml)")
    rerun.add_argument("--actions-url", metavar="URL", help="default: the bundle's actions URL, if any")
    rerun.add_argument("--condition", action="append", metavar="NAME=FILE",
                       help="default: the bundle's condition (its condition.yml), if it ran under one")
    rerun.add_argument("--warm-up-repos", metavar="K", help="default: the bundle's, when it was a --warm-up cell "
                       "(K-1 warm-up runs, then the measured one, on the same runner)")
    rerun.add_argument("--no-warm-up", action="store_true", help="re-run a --warm-up cell cold, without warm-up runs")
    rep = sub.add_parser("report", help="Reports over runs: `report merge` joins the runs of several sessions.")
    rep_sub = rep.add_subparsers(dest="report_command", required=True)
    mer = rep_sub.add_parser("merge", help="One table and one gate over several run dirs (a CI matrix), decided as a "
                             "session decides. Exit 0: passed; 1: failed or inconclusive; 2: bad input.")
    mer.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run dirs (<evidence dir>/<run id>/)")
    mer.add_argument("--out", required=True, metavar="DIR", help="where report.md, report.json, index.md, gate.json go")
    mer.add_argument("--baseline", metavar="VERSION")
    mer.add_argument("--candidate", metavar="VERSION")
    mer.add_argument("--gate-on", metavar="LIST", help="setup,cache,cpu,leftovers as in a session")
    mer.add_argument("--compare-baseline", metavar="FILE", help="a golden baseline file, as in a session")
    klass = sub.add_parser("classify", help="The failure class of evidence bundles, from their files alone.")
    klass.add_argument("bundles", nargs="+", metavar="BUNDLE")
    bis = sub.add_parser("bisect", help="Find the first runner version that fails a scenario.")
    bis.add_argument("--good", required=True)
    bis.add_argument("--bad", required=True)
    bis.add_argument("--versions", default="", help="Comma list of versions between good and bad.")
    bis.add_argument("--scenario", required=True)
    bis.add_argument("--forgejo-version")
    diag = sub.add_parser("diagnose",
                          help="A runner's stores: sizes, action clones, cache entries, what to clean (read-only).",
                          description="Read a runner's stores and say what to clean, with the commands to copy (never "
                          "run). Exit 0: nothing to clean; 1: something to clean; 2: bad input.")
    diag.add_argument("--config", metavar="FILE", help="the runner's config (its defaults apply where a key is absent)")
    diag.add_argument("--cwd", metavar="DIR", help="the runner's working directory: relative paths of the config "
                      "resolve against it (default: the config's directory)")
    diag.add_argument("--workdir", metavar="DIR", help="host.workdir_parent (action clones, tool cache)")
    diag.add_argument("--cache-dir", metavar="DIR", help="cache.dir (the cache server's bolt.db and cache/)")
    diag.add_argument("--home", metavar="DIR", help="the runner's HOME (default with --config: $HOME)")
    diag.add_argument("--json", action="store_true", help="one JSON document: checks, stores, clones, cache_entries, "
                      "upstream, findings")
    diag.add_argument("--check-upstream", action="store_true", help="online: git ls-remote of each clone's remote; "
                      "a tag whose cached commit is not the remote's, and whether the remote's descends from it")
    diag.error = _diagnose_usage_error  # type: ignore[method-assign]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command == "diagnose":
            _diagnose_usage_error(f"unrecognized arguments: {' '.join(extra)}")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {"up": cmd_up, "status": cmd_status, "down": cmd_down, "prepare": cmd_prepare, "list": cmd_list,
                "prune": cmd_prune}
    try:
        if args.command == "rerun":
            return cmd_rerun(args)
        if args.command == "bisect":
            return cmd_bisect(args)
        if args.command == "classify":
            return cmd_classify(args)
        if args.command == "diagnose":
            return cmd_diagnose(args)
        if args.command == "report":
            return cmd_report_merge(args)
        return handlers[args.lab_command](args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `… | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
