"""An OCI runtime wrapper: drop from the spec the capabilities this host's bounding set lacks.

Some sandboxes run dockerd without e.g. ``CAP_SYS_RESOURCE`` in the capability bounding set; runc
then fails every ``--privileged`` container ("operation not permitted" applying capabilities).
Used as dockerd's default runtime, this rewrites ``config.json`` of the bundle on ``create``/``run``, and
the process file of ``exec --process FILE`` (a ``docker exec`` into a ``--privileged`` container carries the
full capability sets too: buildx's docker-container driver talks to buildkitd that way), then execs the
real ``runc`` with the same arguments. Stdlib only: dockerd's shim runs it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

# Linux capability numbers → names (capability.h), as runc spells them.
CAP_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def bounding_set(status: str | None = None) -> int:
    """The ``CapBnd`` mask of this process."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return (1 << len(CAP_NAMES)) - 1


def missing_caps(mask: int | None = None) -> list[str]:
    """Capability names known to runc that the bounding set lacks (empty on a normal host)."""
    mask = bounding_set() if mask is None else mask
    return [name for bit, name in enumerate(CAP_NAMES) if not mask & (1 << bit)]


def filter_spec(spec: dict, missing: list[str]) -> bool:
    """Remove ``missing`` from every capability set of the spec; True when something changed."""
    return filter_process(spec.get("process") or {}, missing)


def filter_process(process: dict, missing: list[str]) -> bool:
    """Remove ``missing`` from every capability set of one OCI process (``exec --process``'s file)."""
    caps = process.get("capabilities") or {}
    changed = False
    for key, values in caps.items():
        if isinstance(values, list):
            kept = [v for v in values if v not in missing]
            if len(kept) != len(values):
                caps[key] = kept
                changed = True
    return changed


def _bundle(args: list[str]) -> Path:
    for i, arg in enumerate(args):
        if arg in ("--bundle", "-b") and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--bundle="):
            return Path(arg.split("=", 1)[1])
    return Path.cwd()


def _process_file(args: list[str]) -> Path | None:
    for i, arg in enumerate(args):
        if arg in ("--process", "-p") and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--process="):
            return Path(arg.split("=", 1)[1])
    return None


def _rewrite(path: Path | None, edit: Callable[[dict, list[str]], bool], missing: list[str]) -> None:
    if path is None or not path.is_file():
        return
    data = json.loads(path.read_text())
    if edit(data, missing):
        path.write_text(json.dumps(data))


def main(argv: list[str] | None = None) -> None:
    """Rewrite the bundle's spec when creating a container (the process file on exec), then exec runc."""
    args = list(sys.argv[1:] if argv is None else argv)
    runc = os.environ.get("REGRESS_REAL_RUNC", "runc")
    missing = missing_caps()
    if missing and any(a in ("create", "run") for a in args):
        _rewrite(_bundle(args) / "config.json", filter_spec, missing)
    elif missing and "exec" in args:
        _rewrite(_process_file(args), filter_process, missing)
    os.execvp(runc, [runc, *args])


if __name__ == "__main__":
    main()
