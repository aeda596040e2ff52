"""A :class:`~harness.diagnose.Diagnosis` as text a maintainer reads without the code, or as JSON; both pass
through :func:`harness.redact.redact` (no secret of ``.runner`` or the config is printed)."""

from __future__ import annotations

import json

from harness.diagnose import Diagnosis
from harness.diagnose.cache_entries import per_repository
from harness.redact import redact
from harness.runners import clones


def size(n: int) -> str:
    """Bytes for a human (decimal units)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def age(seconds: float) -> str:
    """An age for a human."""
    seconds = max(0.0, seconds)
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f} {unit}"
    return f"{seconds:.0f} s"


def text(d: Diagnosis) -> str:
    """The report."""
    lay = d.layout
    lines = [f"runner stores ({lay.source}); owner: "
             + ({"12.x": "12.x (12.x clones present)", "11.x": "11.x (only 11.x work trees)"}.get(d.owner or "")
                or "unknown (no action clone)")]
    for name, store in d.stores.items():
        state = "absent" if not store.exists else f"{size(store.bytes)} in {store.files} files, {store.entries} entries"
        extra = f"; {store.note}" if store.note else ""
        if not store.used:
            extra = f"; NOT USED: {store.note}"
        lines.append(f"  {name:<14} {store.path}: {state}{extra}")
    big = [(name, e) for name, s in d.stores.items() for e in s.biggest if e.bytes]
    if big:
        lines.append("biggest entries (age: since last written, a cache entry: since last used):")
        lines += [f"  {name:<14} {size(e.bytes):>9}  {age(d.now - e.mtime):>6}  {e.name}" for name, e in big]
    if d.clones:
        lines.append(f"action clones ({len(d.clones)}):")
        for c in d.clones:
            used = "" if c.used_by_owner else f"  NOT READ by {d.owner}"
            extra = (f", {c.refs} refs" if c.refs else "") + (", prunable" if c.prunable else "")
            if c.kind == clones.V12_BARE and not c.confirmed:
                extra += ", path is not sha256(its URL)"
            lines.append(f"  {c.kind:<12} {c.name[:14]}…  {size(c.bytes):>9}  ref {c.ref}"
                         + (f"  remote {c.remote}" if c.remote and c.kind != clones.V12_BARE else "") + extra + used)
    if d.cache_entries:
        lines.append(f"cache server entries ({len(d.cache_entries)}) per repository:")
        lines += [f"  {t.repo or '(none)'}: {t.entries} entries, {size(t.bytes)}" for t in per_repository(d.cache_entries)]
    for s in d.same_key:
        lines.append(f"same key saved once per repository: {s.key!r} ({s.version[:12]}) {len(s.repos)} copies, "
                     f"{size(s.bytes)} ({size(s.extra_bytes)} beyond one)")
    if d.upstream is not None:
        lines.append("upstream (--check-upstream):")
        for r in d.upstream:
            name = f"{r.clone.parent.name}/{r.clone.name[:10]}…"
            if r.error:
                lines.append(f"  {name} {r.remote}: unknown ({r.error})")
                continue
            stale = [t for t in r.tags if t.stale]
            lines.append(f"  {name} {r.remote}: ls-remote {r.seconds:.2f}s, {len(r.tags)} tags, {len(stale)} stale")
            for t in stale:
                lines.append(f"    tag {t.tag}: cached {t.cached}, remote {t.upstream}, descends: "
                             + ("unknown" if t.descends is None else "yes" if t.descends else "NO"))
    cleanable = [f for f in d.findings if f.cleanable]
    total = sum(f.bytes for f in cleanable)
    lines.append(f"findings: {len(d.findings)}" + (f" ({size(total)} to reclaim)" if cleanable else ""))
    for f in d.findings:
        cost = size(f.bytes) + (f", {f.seconds:.2f}s" if f.seconds is not None else "")
        lines.append(f"  [{f.kind}] {f.what} ({cost})")
        lines.append(("    stop the runner first, then: " if f.stop_runner_first else "    ") + f.command)
    if not d.findings:
        lines.append("  nothing to clean")
    return redact("\n".join(lines))


def as_json(d: Diagnosis) -> str:
    """The ``--json`` document, redacted."""
    return redact(json.dumps(d.to_json(), indent=2))
