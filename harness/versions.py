"""Version strings as Forgejo and the runner print them, normalised to comparable tuples."""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+~].*)?$")


@dataclass(frozen=True, order=True)
class Version:
    """A ``MAJOR.MINOR.PATCH`` version; build metadata such as ``+gitea-1.22.0`` is dropped."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``11.0.15+gitea-1.22.0``, ``v12.1.2`` or ``12.1.2``.

        Raises:
            ValueError: the text is not such a version.
        """
        match = _VERSION.match(text.strip())
        if not match:
            raise ValueError(f"not a version: {text!r} (expected MAJOR.MINOR.PATCH, e.g. 12.1.2)")
        return cls(int(match[1]), int(match[2]), int(match[3]))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def find_version(text: str) -> Version | None:
    """The first ``X.Y.Z`` version found anywhere in ``text`` (e.g. ``--version`` output)."""
    match = re.search(r"v?(\d+\.\d+\.\d+)", text)
    return Version.parse(match[1]) if match else None
