"""Resolve ``forgejo`` and ``forgejo-runner`` binaries by version.

Order: explicit path → the bin dir (``forgejo-<ver>``, ``forgejo-runner-<ver>``) → the official
release URL (a template; the published SHA-256 is verified when there is one; the result is cached
in the bin dir; only when downloads are allowed, since a careful admin tool fetches nothing unasked).
``--version`` of what was found must match, or it is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from harness.errors import BinaryNotFound, ConfigError
from harness.paths import bin_dir, cache_root
from harness.versions import Version, find_version

KINDS = ("forgejo", "forgejo-runner")
DEFAULT_URLS = {
    "forgejo": "https://codeberg.org/forgejo/forgejo/releases/download/v{version}/forgejo-{version}-linux-amd64",
    "forgejo-runner": (
        "https://code.forgejo.org/forgejo/runner/releases/download/v{version}/forgejo-runner-{version}-linux-amd64"
    ),
}


@dataclass(frozen=True)
class Binary:
    """A resolved binary and where it came from (``path``, ``bin-dir`` or ``download``)."""

    kind: str
    version: Version
    path: Path
    source: str


def _file_name(kind: str, version: Version) -> str:
    return f"{kind}-{version}"


def available(kind: str, directory: Path | None = None) -> list[Version]:
    """Versions of ``kind`` present in the bin dir, sorted ascending."""
    directory = directory or bin_dir()
    if not directory.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(kind)}-(\d+\.\d+\.\d+)$")
    found = {Version.parse(m[1]) for p in directory.iterdir() if (m := pattern.match(p.name)) and os.access(p, os.X_OK)}
    return sorted(found)


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _version_cache() -> Path:
    return cache_root() / "versions.json"


def _cached_version(path: Path) -> Version | None:
    """What ``--version`` printed for this very file before (same inode, size and times), if anything."""
    try:
        entry = json.loads(_version_cache().read_text()).get(str(path.resolve()))
        if entry and entry["identity"] == _identity(path):
            return Version.parse(entry["version"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable or not a mapping
        pass
    return None


def _remember_version(path: Path, version: Version) -> None:
    cache = _version_cache()
    try:
        known = json.loads(cache.read_text()) if cache.is_file() else {}
        if not isinstance(known, dict):
            known = {}
        known[str(path.resolve())] = {"identity": _identity(path), "version": str(version)}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(cache)
    except (OSError, ValueError):
        pass  # a cache only: the next resolve asks the binary again


def reported_version(kind: str, path: Path) -> Version | None:
    """The version the binary prints with ``--version`` (None when it prints none).

    Remembered per file identity (inode, size, modification and change times): a Forgejo binary
    takes a tenth of a second to print it, and a replaced or rebuilt file is asked again.
    """
    cached = _cached_version(path)
    if cached is not None:
        return cached
    try:
        proc = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False,
                              env={**os.environ, "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{kind} binary {path} cannot be run: {exc}") from None
    version = find_version(proc.stdout + proc.stderr)
    if version is not None:
        _remember_version(path, version)
    return version


def _check(kind: str, version: Version, path: Path, source: str) -> Binary:
    """The binary for ``version``; a key with a suffix (``12.1.2+fix``) must print its release (12.1.2)."""
    got = reported_version(kind, path)
    if got != version.release:
        of = f" (the release of the build {version})" if version.suffix else ""
        raise ConfigError(
            f"{kind} binary {path} (from {source}) reports version {got or 'none'}, not {version.release}{of}; "
            "refusing a mismatch"
        )
    return Binary(kind, version, path, source)


def _download(kind: str, version: Version, url: str, dest: Path) -> str | None:
    """Download to ``dest``; None on success, else why not."""
    try:
        response = requests.get(url, timeout=(5, 120), stream=True)
    except requests.RequestException as exc:
        return f"{url}: {type(exc).__name__}"
    if response.status_code != 200:
        return f"{url}: HTTP {response.status_code}"
    expected: str | None = None
    try:
        sums = requests.get(url + ".sha256", timeout=(5, 30))
        if sums.status_code == 200 and (m := re.search(r"\b([0-9a-f]{64})\b", sums.text)):
            expected = m[1]
    except requests.RequestException:
        expected = None
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    with part.open("wb") as out:
        for chunk in response.iter_content(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if expected and digest.hexdigest() != expected:
        part.unlink()
        return f"{url}: SHA-256 mismatch (published {expected}, got {digest.hexdigest()})"
    part.chmod(0o755)
    part.rename(dest)
    return None


def resolve(
    kind: str,
    version: Version,
    *,
    explicit: Mapping[Version, Path] | None = None,
    directory: Path | None = None,
    url_template: str | None = None,
    download: bool | None = None,
) -> Binary:
    """Find the binary for ``kind`` at ``version``.

    Raises:
        BinaryNotFound: nowhere had it; the message lists every place tried and how to provide it.
        ConfigError: a binary was found but reports another version.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown binary kind {kind!r}")
    directory = directory or bin_dir()
    tried: list[str] = []
    if explicit and version in explicit:
        path = explicit[version]
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"{kind} binary for {version} given as {path}: not an executable file")
        return _check(kind, version, path, "path")
    option = "--forgejo-binary PATH" if kind == "forgejo" else f"--runner-binary {version}=PATH"
    tried.append(f"explicit path: none given ({option})")
    candidate = directory / _file_name(kind, version)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return _check(kind, version, candidate, "bin-dir")
    tried.append(f"bin dir: {candidate} does not exist")
    template = url_template or os.environ.get(f"REGRESS_{kind.upper().replace('-', '_')}_URL") or DEFAULT_URLS[kind]
    if download is None:
        download = os.environ.get("REGRESS_ALLOW_DOWNLOAD", "") not in ("", "0", "false", "no")
    if version.suffix:
        tried.append(f"download: {version} is a build of {version.release} (a suffix): only a release is published")
    elif not download:
        tried.append(f"download: not allowed (--allow-download or REGRESS_ALLOW_DOWNLOAD=1 fetches {template})")
    else:
        url = template.format(version=version)
        why = _download(kind, version, url, candidate)
        if why is None:
            return _check(kind, version, candidate, "download")
        tried.append(f"download: {why}")
    raise BinaryNotFound(
        f"no {kind} binary for version {version}. Tried:\n  - " + "\n  - ".join(tried)
        + f"\nProvide it with {option}, or put it in the bin dir as {candidate} "
        "(REGRESS_BIN_DIR changes the dir)."
    )
