"""Root conftest: intentionally empty.

The pytest glue lives in ``harness.pytest_plugin`` and is loaded through its ``pytest11`` entry point;
registering it here as well would make pytest refuse the double registration.
"""
