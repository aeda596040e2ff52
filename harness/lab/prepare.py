"""``lab prepare``: build once, offline, what the lab needs and no registry serves.

* the job image for the ``docker`` label: ``debootstrap --variant=minbase`` (nodejs, git,
  ca-certificates) from the machine's own apt sources, saved as a rootfs tarball;
* the binfmt image the qemu stand-in runs: busybox plus Debian's ``qemu-user-static`` binaries;
* the buildx CLI plugin: ``go install github.com/docker/buildx/cmd/buildx@<version>``;
* the buildkit image buildx's ``docker-container`` driver boots, tagged as the real one
  (``moby/buildkit:buildx-stable-1``): ``buildkitd`` and ``buildctl`` built inside the downloaded
  ``github.com/moby/buildkit`` module (``go mod download``; ``go install`` refuses its exclude
  directives), plus Debian's ``runc`` with its libraries and ``busybox-static``;
* the stand-in actions, each committed into a bare repository under ``actions/`` (keyed by content;
  a boot builds any that changed since).

Artifacts live under ``~/.cache/forgejo-runner-regress/prepared/`` keyed by their recipe, with a
``prepared.json`` manifest; images are imported into whichever engine the lab uses at ``lab up``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness.budgets import BUDGETS
from harness.errors import LabError
from harness.lab.seed import prepared_repo, stand_in_sources
from harness.paths import actions_cache_dir, prepared_dir

log = logging.getLogger(__name__)

SUITE = "bookworm"
JOB_PACKAGES = ("nodejs", "git", "ca-certificates")
BINFMT_PACKAGES = ("qemu-user-static", "busybox-static")
# The architectures tonistiigi/binfmt installs with "all" (the real action's default image).
BINFMT_ARCHES = ("aarch64", "arm", "ppc64le", "s390x", "riscv64", "mips64el", "mips64", "i386", "loongarch64")
BUILDX_MODULE = "github.com/docker/buildx/cmd/buildx"
BUILDX_VERSION = "v0.38.2"
BUILDKIT_MODULE = "github.com/moby/buildkit"
BUILDKIT_VERSION = "v0.34.2"  # the buildkit that buildx v0.38.2 requires (its go.mod)
BUILDKIT_PACKAGES = ("runc", "libseccomp2", "libc6", "busybox-static")  # Debian's runc is cgo (libseccomp)
BUILDKIT_TAG = "moby/buildkit:buildx-stable-1"  # what buildx's docker-container driver boots by default
BUILDKIT_CHANGES = (  # the image config of the real one, applied at import
    'ENTRYPOINT ["/usr/bin/buildkitd"]',
    "VOLUME /var/lib/buildkit",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
)
BUILDKIT_DIRS = ("bin", "tmp", "proc", "sys", "dev", "run/cdi", "etc/cdi", "etc/buildkit/cdi", "var/lib/buildkit")
BUILDKIT_TAGS = "osusergo netgo static_build seccomp"  # buildkitd's release build tags (CGO_ENABLED=0)
RECIPE_VERSION = "1"


@dataclass(frozen=True)
class Prepared:
    """What ``lab prepare`` produced (paths are absolute)."""

    job_image: str  # docker tag, e.g. regress-job:<key>
    job_tar: str
    binfmt_image: str
    binfmt_tar: str
    buildx: str | None  # path to the docker-buildx plugin, None when it could not be built
    buildx_error: str | None
    # the buildkit image (content-keyed, e.g. regress-buildkit:<key>; tagged BUILDKIT_TAG at import),
    # None when it could not be built, and then why (defaults: a lab.json written before it existed)
    buildkit_image: str | None = None
    buildkit_tar: str | None = None
    buildkit_tag: str = BUILDKIT_TAG
    buildkit_error: str | None = None

    @classmethod
    def load(cls, root: Path | None = None) -> Prepared | None:
        """The manifest, or None when ``lab prepare`` has not run (or its files are gone)."""
        manifest = (root or prepared_dir()) / "prepared.json"
        if not manifest.is_file():
            return None
        try:
            data = json.loads(manifest.read_text())
            prepared = cls(**data)
        except (ValueError, TypeError):
            return None
        if set(data) != {f.name for f in fields(cls)}:
            return None  # written by an older recipe (e.g. before the buildkit image): prepare again
        if not (Path(prepared.job_tar).is_file() and Path(prepared.binfmt_tar).is_file()):
            return None
        if prepared.buildkit_tar and not Path(prepared.buildkit_tar).is_file():
            return None
        return prepared


def apt_mirror() -> str:
    """The Debian mirror of this machine's apt sources (never hard-coded in the suite)."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"(?m)^(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)", text):
            uri = match[1]
            if "security" not in uri and uri.startswith(("http://", "https://", "file:")):
                return uri
    raise LabError("no Debian mirror found in /etc/apt/sources.list(.d); debootstrap needs one")


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join((RECIPE_VERSION, *parts)).encode()).hexdigest()[:12]


def _run(cmd: list[str], what: str, log_file: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    with log_file.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  timeout=BUDGETS.prepare_step, check=False)
        except FileNotFoundError:
            raise LabError(f"{what}: {cmd[0]} is not installed (apt-get install {cmd[0]})") from None
        except subprocess.TimeoutExpired:
            raise LabError(f"{what} did not finish within prepare_step={BUDGETS.prepare_step:g}s; "
                           f"log: {log_file}") from None
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-15:]
        raise LabError(f"{what} failed (exit {proc.returncode}); log: {log_file}\n" + "\n".join(tail))


def _rootfs_tar(packages: tuple[str, ...], tar: Path, logf: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed; run: apt-get install debootstrap")
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="regress-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(root), mirror],
             f"debootstrap of {SUITE} with {','.join(packages)}", logf)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
        _pack(root, tar, logf)


def _pack(root: Path, tar: Path, logf: Path) -> None:
    """``root`` as an image tar (written aside, then renamed: a cut-short pack never looks prepared)."""
    part = tar.with_suffix(".part")
    _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(part), "."], f"packing {tar.name}", logf)
    part.rename(tar)


def _unpack_debs(packages: tuple[str, ...], what: str, root: Path, logf: Path) -> None:
    """Debian's ``packages`` downloaded (no install, no root of their own) and unpacked into ``root``."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise LabError(f"apt-get and dpkg-deb are needed to fetch {what}")
    with tempfile.TemporaryDirectory(prefix="regress-debs-") as debs:
        _run(["apt-get", "download", *packages], f"apt-get download of {what}", logf, cwd=Path(debs))
        for deb in sorted(Path(debs).glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}", logf)


def _binfmt_rootfs(tar: Path, logf: Path) -> None:
    """A small rootfs: busybox + the qemu-*-static binaries and binfmt.d entries of Debian's packages."""
    with tempfile.TemporaryDirectory(prefix="regress-binfmt-") as tmp:
        root = Path(tmp) / "rootfs"
        _unpack_debs(BINFMT_PACKAGES, "the binfmt packages (qemu-user-static, busybox-static)", root, logf)
        for binary in (root / "usr/bin").glob("qemu-*-static"):
            arch = binary.name[len("qemu-"):-len("-static")]
            if arch not in BINFMT_ARCHES:
                binary.unlink()
                for conf in (root / "usr/lib/binfmt.d").glob(f"qemu-{arch}.conf"):
                    conf.unlink()
        shutil.rmtree(root / "usr/share", ignore_errors=True)
        for d in ("bin", "proc/sys/fs/binfmt_misc", "tmp", "usr/local/bin"):
            (root / d).mkdir(parents=True, exist_ok=True)
        busybox = root / "bin" / "busybox"
        for applet in ("sh", "cat", "mount", "ls", "sed", "tr", "basename", "echo", "true"):
            (root / "bin" / applet).symlink_to("busybox")
        if not busybox.exists():
            raise LabError("busybox-static did not unpack /bin/busybox")
        script = root / "usr/local/bin/regress-binfmt"
        script.write_text(BINFMT_SCRIPT)
        script.chmod(0o755)
        _pack(root, tar, logf)


BINFMT_SCRIPT = r"""#!/bin/sh
# Registers qemu-user-static binfmt handlers (what tonistiigi/binfmt --install all does).
# A sandboxed kernel may refuse: that is reported, not an error.
set -u
mnt=/proc/sys/fs/binfmt_misc
if [ ! -w "$mnt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$mnt" 2>/dev/null || true
fi
ok=0; refused=0
for conf in /usr/lib/binfmt.d/qemu-*.conf; do
  [ -f "$conf" ] || continue
  name=$(basename "$conf" .conf)
  if [ -e "$mnt/$name" ]; then ok=$((ok+1)); continue; fi
  if cat "$conf" > "$mnt/register" 2>/dev/null; then ok=$((ok+1)); else refused=$((refused+1)); fi
done
echo "binfmt: $ok handlers registered, $refused refused by the kernel"
ls /usr/bin/qemu-*-static | sed 's#.*/qemu-##; s#-static##' | tr '\n' ' '; echo
exit 0
"""


def _go(what: str) -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise LabError(f"go is not installed; {what} is built with go")
    return go


def _build_buildx(dest: Path, logf: Path) -> None:
    go = _go("the buildx plugin")
    with tempfile.TemporaryDirectory(prefix="regress-buildx-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
        _run([go, "install", f"{BUILDX_MODULE}@{BUILDX_VERSION}"], f"go install buildx {BUILDX_VERSION}", logf, env=env)
        shutil.copy2(Path(gobin) / "buildx", dest)
        dest.chmod(0o755)


def _module_dir(go: str, module: str, version: str, logf: Path) -> Path:
    """``go mod download -json module@version``: the module's (read-only) dir in the module cache."""
    cmd = [go, "mod", "download", "-json", f"{module}@{version}"]
    with tempfile.TemporaryDirectory(prefix="regress-gomod-") as tmp:  # outside any module: no go.mod to obey
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=BUDGETS.prepare_step,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise LabError(f"go mod download {module}@{version} did not finish within "
                           f"prepare_step={BUDGETS.prepare_step:g}s") from None
    with logf.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    try:
        info = json.loads(proc.stdout)
    except ValueError:
        info = {}
    if proc.returncode != 0 or info.get("Error") or not info.get("Dir"):
        why = info.get("Error") or proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise LabError(f"go mod download {module}@{version} failed: {why if isinstance(why, str) else why[0]}; "
                       f"log: {logf}")
    return Path(info["Dir"])


def _build_buildkit_binaries(dest: Path, logf: Path) -> None:
    """``buildkitd`` and ``buildctl`` into ``dest``, built inside a writable copy of the downloaded module."""
    go = _go("the buildkit image")
    source = _module_dir(go, BUILDKIT_MODULE, BUILDKIT_VERSION, logf)
    with tempfile.TemporaryDirectory(prefix="regress-buildkit-src-") as tmp:
        src = Path(tmp) / "buildkit"
        shutil.copytree(source, src)
        for path in (src, *src.rglob("*")):  # the module cache is read-only; the copy must be removable
            path.chmod(path.stat().st_mode | 0o200)
        pkg = BUILDKIT_MODULE
        ldflags = f"-X {pkg}/version.Version={BUILDKIT_VERSION} -X {pkg}/version.Package={pkg}"
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
        _run([go, "build", "-trimpath", "-tags", BUILDKIT_TAGS, "-ldflags", ldflags, "-o", f"{dest}/",
              "./cmd/buildkitd", "./cmd/buildctl"],
             f"go build of buildkitd and buildctl {BUILDKIT_VERSION}", logf, env=env, cwd=src)


def _buildkit_rootfs(tar: Path, logf: Path) -> None:
    """buildkitd + buildctl (static Go) and Debian's runc with its libraries, busybox for a shell."""
    with tempfile.TemporaryDirectory(prefix="regress-buildkit-") as tmp:
        root = Path(tmp) / "rootfs"
        (root / "usr/bin").mkdir(parents=True)
        _build_buildkit_binaries(root / "usr/bin", logf)
        _unpack_debs(BUILDKIT_PACKAGES, "runc and its libraries", root, logf)
        shutil.rmtree(root / "usr/share", ignore_errors=True)
        for d in BUILDKIT_DIRS:  # the real image's, the CDI dirs included (buildkitd watches them)
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "var/run").symlink_to("../run")
        (root / "tmp").chmod(0o1777)
        if not (root / "bin/busybox").exists() or not (root / "usr/sbin/runc").exists():
            raise LabError(f"{', '.join(BUILDKIT_PACKAGES)} did not unpack /bin/busybox and /usr/sbin/runc")
        for applet in ("sh", "cat", "ls", "mount", "umount", "ps", "true"):
            if not (root / "bin" / applet).exists():
                (root / "bin" / applet).symlink_to("busybox")
        _pack(root, tar, logf)


def _try_buildkit(tar: Path, logf: Path, build: bool, notify: Callable[[str], None]) -> str | None:
    """Build the buildkit image's rootfs into ``tar``; None when built, else why not (never raised: the
    scenarios that need it are not runnable with that reason)."""
    if not build:
        return "not built (lab prepare --no-buildx)"
    notify(f"building the buildkit image {BUILDKIT_VERSION} (go build of buildkitd and buildctl, Debian's runc; "
           f"a few minutes the first time); log: {logf}")
    try:
        _buildkit_rootfs(tar, logf)
    except LabError as exc:
        why = str(exc).splitlines()[0]
        notify(f"buildkit image not available: {why}")
        return why
    return None


def prepare(root: Path | None = None, *, with_buildx: bool = True, notify: Callable[[str], None] = print) -> Prepared:
    """Build (or reuse) every artifact; idempotent and keyed by recipe.

    Raises:
        LabError: a build step failed; names the step and its log.
    """
    root = root or prepared_dir()
    root.mkdir(parents=True, exist_ok=True)
    logf = root / "prepare.log"
    job_key = _key("job", SUITE, *JOB_PACKAGES)
    job_tar = root / f"job-{job_key}.tar"
    if not job_tar.is_file():
        notify(f"building the job image rootfs ({SUITE} minbase + {', '.join(JOB_PACKAGES)}); log: {logf}")
        _rootfs_tar(JOB_PACKAGES, job_tar, logf)
    binfmt_key = _key("binfmt", *BINFMT_PACKAGES, *BINFMT_ARCHES, BINFMT_SCRIPT)
    binfmt_tar = root / f"binfmt-{binfmt_key}.tar"
    if not binfmt_tar.is_file():
        notify(f"building the binfmt image ({', '.join(BINFMT_PACKAGES)}); log: {logf}")
        _binfmt_rootfs(binfmt_tar, logf)
    buildx: str | None = None
    buildx_error: str | None = None
    plugin = root / f"docker-buildx-{BUILDX_VERSION}"
    if plugin.is_file():
        buildx = str(plugin)
    elif with_buildx:
        notify(f"building the buildx plugin {BUILDX_VERSION} with go install; log: {logf}")
        try:
            _build_buildx(plugin, logf)
            buildx = str(plugin)
        except LabError as exc:
            buildx_error = str(exc).splitlines()[0]
            notify(f"buildx not available: {buildx_error}")
    buildkit_key = _key("buildkit", BUILDKIT_MODULE, BUILDKIT_VERSION, BUILDKIT_TAGS, *BUILDKIT_PACKAGES,
                        *BUILDKIT_CHANGES, *BUILDKIT_DIRS)
    buildkit_file = root / f"buildkit-{buildkit_key}.tar"
    buildkit_error = None if buildkit_file.is_file() else _try_buildkit(buildkit_file, logf, with_buildx, notify)
    buildkit_tar = None if buildkit_error else buildkit_file
    stand_ins = stand_in_sources()
    for source in stand_ins.values():  # each one commit in a cached bare repository (seeding copies it)
        prepared_repo(source)
    notify(f"stand-in actions committed: {', '.join(stand_ins)} (in {actions_cache_dir()})")
    prepared = Prepared(
        job_image=f"regress-job:{job_key}",
        job_tar=str(job_tar),
        binfmt_image=f"regress-binfmt:{binfmt_key}",
        binfmt_tar=str(binfmt_tar),
        buildx=buildx,
        buildx_error=buildx_error if buildx is None else None,
        buildkit_image=f"regress-buildkit:{buildkit_key}" if buildkit_tar else None,
        buildkit_tar=str(buildkit_tar) if buildkit_tar else None,
        buildkit_error=buildkit_error,
    )
    (root / "prepared.json").write_text(json.dumps(asdict(prepared), indent=2))
    return prepared
