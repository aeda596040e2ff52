"""Our dockerd runs `docker exec` into a --privileged container (buildx's docker-container driver needs it).

On hosts whose capability bounding set lacks capabilities (this sandbox lacks CAP_SYS_RESOURCE) runc refused
the exec before the capdrop runtime filtered the exec's process file too ("unable to apply caps").
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from harness.lab import engine as engines
from harness.lab.capdrop import missing_caps
from harness.lab.prepare import Prepared

pytestmark = pytest.mark.docker


@pytest.fixture
def our_engine():
    if shutil.which("dockerd") is None:
        pytest.skip("Debian's dockerd is not installed (apt-get install docker.io)")
    prepared = Prepared.load()
    if prepared is None:
        pytest.skip("the job image is not prepared: python -m harness lab prepare")
    lab_id = f"exec-{uuid.uuid4().hex[:6]}"
    engine = engines.acquire_dockerd(lab_id)
    try:
        engines.ensure_image(engine, prepared.job_image, Path(prepared.job_tar))
        yield engine, prepared.job_image
    finally:
        engines.release(lab_id)


def test_docker_exec_into_a_privileged_container(our_engine):
    engine, image = our_engine
    client = engine.client()
    container = client.containers.run(image, ["sleep", "60"], privileged=True, detach=True,
                                      labels={"regress.test": "engine-exec"})
    try:
        code, output = container.exec_run(["sh", "-c", "grep CapEff /proc/self/status"])
        assert code == 0, output.decode(errors="replace")
        effective = int(output.decode().split()[1], 16)
        lacking = len(missing_caps())
        assert effective, "the exec ran without capabilities"
        assert bin(effective).count("1") >= 30 - lacking  # privileged: (nearly) every capability the host allows
    finally:
        container.remove(force=True)
