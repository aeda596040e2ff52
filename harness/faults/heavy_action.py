"""Heavy stand-in actions: repositories shaped like the real setup actions (thousands of refs, a long
history of a large ``dist/index.js`` bundle), for measuring what the runner's action fetch costs.

A :class:`HeavySpec` names the shape (ref count and kind, commits, bundle size, churn per commit). The
repository is built once per spec into the actions cache (``heavy-<key>.git``) with ``git
fast-import`` — deterministic (fixed author, committer and dates, content from a counter-mode hash),
so the same spec gives the same commits on every machine — and is copied into a lab only when a heavy
cell runs (:func:`harness.lab.seed.seed_heavy`), never at every lab boot.

The action is a working ``node20`` action: ``dist/index.js`` prints ``heavy-action: <marker> commit
<n>`` and carries the rest of its size as comment lines; every commit rewrites ``churn`` of them (as a
new bundle release does), so the pack grows by roughly ``churn × bundle`` (hex compresses ~2:1) per
commit and deltas like a real bundle's history. Refs are spread over the history like release tags;
``v1`` and ``main`` point at the newest commit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, LabError
from harness.paths import actions_cache_dir

GENERATOR = "regress-heavy-v1"  # part of the cache key: change it when the generated content changes
FIXED_EPOCH = 1704067200  # 2024-01-01T00:00:00Z; commit n is dated FIXED_EPOCH + n minutes
IDENT = "regress <regress@example.test>"
LINE_HEX = 120  # hex characters of one comment line of the bundle (+ "// " and "\n")
REF_KINDS = ("tags", "branches")
USED_REF = "v1"


@dataclass(frozen=True)
class HeavySpec:
    """The shape of a heavy action repository."""

    refs: int = 100  # refs besides main and v1, spread over the history
    commits: int = 20
    bundle_kb: int = 800  # size of dist/index.js
    churn: float = 0.1  # fraction of the bundle's lines rewritten per commit
    ref_kind: str = "tags"  # tags (release tags) or branches
    marker: str = "heavy"  # printed by the action: `heavy-action: <marker> commit <n>`

    def __post_init__(self) -> None:
        if self.refs < 0 or self.commits < 1 or self.bundle_kb < 1:
            raise ConfigError(f"heavy action {self}: refs >= 0, commits >= 1 and bundle_kb >= 1")
        if not 0 <= self.churn <= 1:
            raise ConfigError(f"heavy action {self}: churn is a fraction of the bundle's lines (0..1)")
        if self.ref_kind not in REF_KINDS:
            raise ConfigError(f"heavy action {self}: ref_kind must be one of {REF_KINDS}")
        if not self.marker.replace("-", "").isalnum():
            raise ConfigError(f"heavy action {self}: marker must be letters, digits and dashes")

    @classmethod
    def parse(cls, data: Any, where: str) -> HeavySpec:
        """From a mapping (expect.yml ``heavy_actions.shape``, a bench option); unknown keys are an error.

        Raises:
            ConfigError: not a mapping, unknown keys or bad values (``where`` names the place).
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of {sorted(cls.__dataclass_fields__)}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(cls.__dataclass_fields__)})")
        try:
            return cls(**{k: type(getattr(cls, k))(v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @property
    def key(self) -> str:
        """The cache key: generator version and every field."""
        text = f"{GENERATOR}|{self.refs}|{self.commits}|{self.bundle_kb}|{self.churn!r}|{self.ref_kind}|{self.marker}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def lines(self) -> int:
        """Comment lines of the bundle (its size over one line's)."""
        return max(1, self.bundle_kb * 1024 // (LINE_HEX + 4))

    def ref_names(self) -> list[str]:
        """The extra refs (``refs/tags/v0.0.1`` … or ``refs/heads/release/0001`` …), in creation order."""
        if self.ref_kind == "tags":
            return [f"refs/tags/v0.{i // 100}.{i % 100}" for i in range(self.refs)]
        return [f"refs/heads/release/{i:05d}" for i in range(self.refs)]

    def describe(self) -> str:
        """``3000 tags, 400 commits of an 800 KB bundle (churn 0.12)``."""
        return f"{self.refs} {self.ref_kind}, {self.commits} commits of a {self.bundle_kb} KB bundle (churn {self.churn:g})"


ACTION_YML = """name: heavy-{marker}
description: A stand-in shaped like the real setup actions (many refs, a long history of a large bundle).
runs:
  using: node20
  main: dist/index.js
"""


def _line(seed: bytes, index: int, version: int) -> bytes:
    digest = b""
    counter = 0
    while len(digest) < LINE_HEX // 2:
        digest += hashlib.sha256(b"%s|%d|%d|%d" % (seed, index, version, counter)).digest()
        counter += 1
    return b"// " + digest[: LINE_HEX // 2].hex().encode() + b"\n"


def bundles(spec: HeavySpec) -> Iterator[bytes]:
    """``dist/index.js`` of each commit, oldest first: the marker line, then the comment lines, of which
    commit n rewrote ``churn`` of those of commit n - 1 (a sliding window, deterministic)."""
    seed = spec.key.encode()
    versions = [0] * spec.lines
    body = [_line(seed, i, 0) for i in range(spec.lines)]
    per_commit = round(spec.churn * spec.lines)
    start = 0
    for n in range(1, spec.commits + 1):
        if n > 1:
            for j in range(per_commit):
                i = (start + j) % spec.lines
                versions[i] += 1
                body[i] = _line(seed, i, versions[i])
            start = (start + per_commit) % spec.lines
        head = f'console.log("heavy-action: {spec.marker} commit {n}");\n'.encode()
        yield head + b"".join(body)


def ref_commits(spec: HeavySpec) -> list[tuple[str, int]]:
    """(ref, commit number) for each extra ref: spread evenly over the history, oldest refs on the oldest commits."""
    names = spec.ref_names()
    return [(name, 1 + (i * spec.commits) // max(1, len(names))) for i, name in enumerate(names)]


def fast_import_stream(spec: HeavySpec) -> Iterator[bytes]:
    """The ``git fast-import`` input for ``spec`` (commit n has mark n)."""
    action = ACTION_YML.format(marker=spec.marker).encode()
    for n, bundle in enumerate(bundles(spec), start=1):
        when = f"{FIXED_EPOCH + 60 * n} +0000"
        message = f"release {n}\n".encode()
        out = [b"commit refs/heads/main\n", b"mark :%d\n" % n, f"author {IDENT} {when}\n".encode(),
               f"committer {IDENT} {when}\n".encode(), b"data %d\n" % len(message), message]
        if n > 1:
            out.append(b"from :%d\n" % (n - 1))
        if n == 1:
            out += [b"M 100644 inline action.yml\n", b"data %d\n" % len(action), action]
        out += [b"M 100644 inline dist/index.js\n", b"data %d\n" % len(bundle), bundle, b"\n"]
        yield b"".join(out)
    for ref, n in ref_commits(spec):
        yield f"reset {ref}\nfrom :{n}\n\n".encode()
    yield f"reset refs/tags/{USED_REF}\nfrom :{spec.commits}\n\n".encode()


@dataclass(frozen=True)
class HeavyRepo:
    """A built heavy repository in the cache."""

    spec: HeavySpec
    path: Path
    head: str  # the commit main and v1 point at
    pack_bytes: int  # objects on disk, loose and packed (a small build stays loose)
    ref_count: int  # every ref, main and v1 included


def heavy_repo(spec: HeavySpec, cache: Path | None = None) -> HeavyRepo:
    """The bare repository for ``spec`` in the cache, built on first use.

    Raises:
        LabError: git fast-import failed (its message named).
    """
    cache = cache or actions_cache_dir()
    repo = cache / f"heavy-{spec.key}.git"
    if not (repo / "refs" / "heads" / "main").is_file() and not _packed_main(repo):
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".build-heavy-", dir=cache) as tmp:
            built = Path(tmp) / "repo.git"
            _build(spec, built)
            try:
                built.rename(repo)
            except OSError:  # built meanwhile by another process
                if not _packed_main(repo) and not (repo / "refs" / "heads" / "main").is_file():
                    raise
    return describe(spec, repo)


def describe(spec: HeavySpec, repo: Path) -> HeavyRepo:
    """What a built repository holds: its head, pack size and ref count."""
    head = _git(["rev-parse", "refs/heads/main"], repo)
    refs = _git(["for-each-ref", "--format=%(refname)"], repo).splitlines()
    counts = dict(line.split(": ", 1) for line in _git(["count-objects", "-v"], repo).splitlines())
    size = (int(counts.get("size", 0)) + int(counts.get("size-pack", 0))) * 1024  # loose + packed (KiB)
    return HeavyRepo(spec, repo, head, size, len(refs))


def _packed_main(repo: Path) -> bool:
    packed = repo / "packed-refs"
    return packed.is_file() and any(line.endswith(" refs/heads/main") for line in packed.read_text().splitlines())


def _build(spec: HeavySpec, repo: Path) -> None:
    _git(["init", "-q", "--bare", "--template=", "-b", "main", str(repo)], repo.parent)
    command = ["git", "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet", "--done"]  # a pack, with deltas
    proc = subprocess.Popen(command, cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=_env(repo))
    assert proc.stdin is not None
    try:
        for chunk in fast_import_stream(spec):
            proc.stdin.write(chunk)
        proc.stdin.write(b"done\n")
        proc.stdin.close()
    except BrokenPipeError:
        pass  # fast-import stopped early: its stderr says why
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait(timeout=600) != 0:
        raise LabError(f"git fast-import of heavy action {spec.describe()} failed: {stderr.strip()[-400:]}")
    _git(["pack-refs", "--all"], repo)  # one packed-refs file, as a served repository has
    _git(["update-server-info"], repo)


def _env(repo: Path) -> dict[str, str]:
    return {**os.environ, "GIT_DIR": str(repo), "GIT_TERMINAL_PROMPT": "0"}


def _git(args: list[str], repo: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=repo.parent if not repo.exists() else repo,
                          env=_env(repo) if repo.exists() else None, capture_output=True, text=True, timeout=600,
                          check=False)
    if proc.returncode != 0:
        raise LabError(f"git {args[0]} in {repo} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout.strip()


def copy_repo(source: Path, dest: Path) -> None:
    """Copy a built repository (hard links for the immutable pack files where the file system allows)."""
    def link_or_copy(src: str, dst: str) -> object:
        if "/objects/" in src:
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass
        return shutil.copy2(src, dst)

    shutil.copytree(source, dest, copy_function=link_or_copy)
