"""The regression scenarios: every fixtures/workflows/<name> on every runner version under test.

Parametrised by the plugin (ids like ``qemu-buildx-12.1.2``); markers ``regression`` or
``selfcheck``, ``lab`` and ``docker`` come from each scenario's ``expect.yml``.
"""

from harness.pytest_plugin import assert_cell


def test_scenario(regress_run):
    assert_cell(regress_run)
