"""forgejo-runner-regress: a reproduction and regression suite for Forgejo Actions runners.

The library never imports pytest; the pytest glue lives in :mod:`harness.pytest_plugin`.
"""

__version__ = "0.1.0"
