"""Fixtures for the lab's own tests: they need the lab binaries and skip with the reason otherwise."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.runners import binaries
from harness.versions import Version

RUNNERS = (Version(11, 3, 1), Version(12, 1, 2))
FORGEJOS = (Version(11, 0, 15), Version(13, 0, 5))


def resolve_or_skip(kind: str, version: Version) -> binaries.Binary:
    """The binary, or skip the test naming what is missing and how to provide it."""
    try:
        return binaries.resolve(kind, version, download=False)
    except HarnessError as exc:
        pytest.skip(f"lab binary missing: {str(exc).splitlines()[0]} (put {kind}-{version} in {binaries.bin_dir()})")


def newest_forgejo() -> binaries.Binary:
    """The newest of the lab's Forgejo versions whose binary is here (skip naming the newest otherwise)."""
    here = [v for v in FORGEJOS if v in binaries.available("forgejo")]
    return resolve_or_skip("forgejo", here[-1] if here else FORGEJOS[-1])


@pytest.fixture
def runner_binaries() -> list[binaries.Binary]:
    return [resolve_or_skip("forgejo-runner", v) for v in RUNNERS]


@pytest.fixture(scope="module")
def binaries_present() -> None:
    """Both runner versions and Forgejo 13.0.5 are in the bin dir (else the test is skipped naming what is missing)."""
    for v in RUNNERS:
        resolve_or_skip("forgejo-runner", v)
    resolve_or_skip("forgejo", Version(13, 0, 5))
