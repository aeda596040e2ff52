"""Where the suite keeps things outside the repo (binaries, prepared images, lab work dirs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``REGRESS_CACHE_DIR`` or ``~/.cache/forgejo-runner-regress``."""
    return Path(os.environ.get("REGRESS_CACHE_DIR") or Path.home() / ".cache" / "forgejo-runner-regress")


def bin_dir() -> Path:
    """``REGRESS_BIN_DIR`` or ``<cache>/bin``: files named ``forgejo-<ver>`` and ``forgejo-runner-<ver>``."""
    return Path(os.environ.get("REGRESS_BIN_DIR") or cache_root() / "bin")


def prepared_dir() -> Path:
    """Artifacts of ``lab prepare`` (job image, binfmt image, buildx plugin), keyed by content."""
    return cache_root() / "prepared"


def actions_cache_dir() -> Path:
    """Bare repositories of the stand-in actions, one per content hash (seeding copies them)."""
    return cache_root() / "actions"


def labs_dir() -> Path:
    """Work dirs of labs (one per lab id)."""
    return cache_root() / "labs"


def dockerd_data_root() -> Path:
    """Data root of the dockerd the lab starts when no engine answers (kept: holds the imported images)."""
    return cache_root() / "dockerd"
