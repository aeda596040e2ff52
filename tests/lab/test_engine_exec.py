"""Our dockerd runs `docker exec` into a --privileged container (buildx's docker-container driver needs it),
and a job boots buildx's docker-container builder on it from the buildkit image `lab prepare` builds.

On hosts whose capability bounding set lacks capabilities (this sandbox lacks CAP_SYS_RESOURCE) runc refused
the exec before the capdrop runtime filtered the exec's process file too ("unable to apply caps").
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from harness.forgejo.models import Status
from harness.lab import engine as engines
from harness.lab.booting import boot
from harness.lab.capdrop import missing_caps
from harness.lab.lab import RunnerSpec
from harness.lab.prepare import Prepared
from harness.runners.process import label_name
from harness.versions import Version

from .conftest import newest_forgejo, resolve_or_skip
from .helpers import push, workflow

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


EXEC_AND_BUILDX = """\
      - name: exec into a privileged container
        run: |
          docker run -d --privileged --name exec-{id} --label regress.lab={lab} regress-job:latest sleep 300
          docker exec exec-{id} sh -c 'grep CapEff /proc/self/status'
      - name: boot a docker-container builder
        run: |
          docker buildx create --name builder-{id} --driver docker-container --bootstrap --use
          docker buildx inspect builder-{id}
      - name: build through it
        run: |
          mkdir ctx && echo hello > ctx/f && printf 'FROM scratch\\nCOPY f /f\\n' > ctx/Dockerfile
          docker buildx build --builder builder-{id} --progress plain ctx
      - name: clean up
        if: always()
        run: |
          docker rm -f exec-{id}
          docker buildx rm builder-{id}
"""


@pytest.mark.lab
def test_a_workflow_execs_into_a_privileged_container_and_boots_a_buildkit_builder():
    """Under the lab's own dockerd, a job's `docker exec` into a --privileged container and buildx's
    docker-container driver (buildkitd booted from the prepared image, reached through `docker exec`)
    both work: job success, every step green."""
    forgejo = newest_forgejo()
    runner = resolve_or_skip("forgejo-runner", Version(12, 1, 2))
    prepared = Prepared.load()
    if prepared is None or not prepared.buildx or not prepared.buildkit_image:
        why = "not prepared" if prepared is None else prepared.buildkit_error or prepared.buildx_error
        pytest.skip(f"the buildx plugin or buildkit image is not prepared ({why}): python -m harness lab prepare")
    if engines.find_existing() is not None:
        pytest.skip("a Docker engine answers on DOCKER_HOST or the default socket: the lab would use it, not its own")
    lab = boot(f"bkexec-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(runner)])
    try:
        assert lab.engine is not None and lab.engine.ours, lab.engine
        (lab_runner,) = lab.runners.values()
        label = label_name(lab_runner.labels["native"])
        steps = EXEC_AND_BUILDX.format(id=uuid.uuid4().hex[:8], lab=lab.id)
        view = push(lab, workflow("exec-buildx", label, steps), label, "exec-buildx").watch().view
        log = "\n".join(line.message for line in view.log_lines())
        assert view.job_status() is Status.SUCCESS, f"{view.summary()}\n{log[-3000:]}"
        assert {s.name: s.status for s in view.steps if not s.synthetic} == {
            "exec into a privileged container": Status.SUCCESS, "boot a docker-container builder": Status.SUCCESS,
            "build through it": Status.SUCCESS, "clean up": Status.SUCCESS}, view.summary()
        assert "CapEff:" in log and "using local image moby/buildkit:buildx-stable-1" in log, log[-3000:]
        assert "Driver:        docker-container" in log and "DONE" in log
        client = lab.engine.client()
        assert client.containers.list(all=True, filters={"name": "buildx_buildkit_builder-"}) == []
    finally:
        leaks = lab.down()
    assert not leaks, leaks
