"""Version strings as Forgejo and the runner print them, normalised to comparable tuples."""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+~].*)?$")
_KEY = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:\+([A-Za-z0-9][A-Za-z0-9_.]{0,31}))?$")


@dataclass(frozen=True, order=True)
class Version:
    """A ``MAJOR.MINOR.PATCH`` version; build metadata such as ``+gitea-1.22.0`` is dropped.

    A runner *key* may carry a suffix naming a build of that release (``12.1.2+fix``: a maintainer's
    patched 12.1.2, :meth:`key`): it is another runner for tables, reports and the gate, and its
    ``--version`` must print the release (:attr:`release`).
    """

    major: int
    minor: int
    patch: int
    suffix: str = ""

    @classmethod
    def key(cls, text: str) -> Version:
        """Parse a runner key: ``12.1.2`` or ``12.1.2+SUFFIX`` (letters, digits, ``_`` and ``.``).

        Raises:
            ValueError: the text is not such a key.
        """
        match = _KEY.match(text.strip())
        if not match:
            raise ValueError(f"not a version: {text!r} (expected MAJOR.MINOR.PATCH, e.g. 12.1.2, or a runner build "
                             "of it with a suffix, e.g. 12.1.2+fix)")
        return cls(int(match[1]), int(match[2]), int(match[3]), match[4] or "")

    @property
    def release(self) -> Version:
        """The release this key is a build of (itself when it has no suffix)."""
        return Version(self.major, self.minor, self.patch)

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
        return f"{self.major}.{self.minor}.{self.patch}" + (f"+{self.suffix}" if self.suffix else "")


def find_version(text: str) -> Version | None:
    """The first ``X.Y.Z`` version found anywhere in ``text`` (e.g. ``--version`` output)."""
    match = re.search(r"v?(\d+\.\d+\.\d+)", text)
    return Version.parse(match[1]) if match else None
