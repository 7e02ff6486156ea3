"""The image the Dockerfile builds: an init process, the examples opt-in, nothing unused."""

from __future__ import annotations

import time

import pytest
from engine import REPO_ROOT, Engine
from images import Images

pytestmark = pytest.mark.timeout(1200)  # may build the images (minutes on a cold cache)


def _python(engine: Engine, image: str, code: str) -> str:
    result = engine.run("run", "--rm", image, "python", "-c", code, check=False)
    return (result.stdout + result.stderr).strip()


def test_tini_runs_the_program_as_its_child(container_engine: Engine, images: Images) -> None:
    output = container_engine.run(
        "run", "--rm", images.beatkeeper, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"
    ).stdout
    assert output.startswith("/usr/bin/tini --"), output


def test_migrate_wait_stops_promptly_on_sigterm(container_engine: Engine, images: Images) -> None:
    # A wait-for-migrations init container waiting for a database that does not answer:
    # without an init process the program is PID 1, ignores SIGTERM and is killed after
    # the grace period instead.
    name = f"bkt-{time.monotonic_ns()}-sigterm"
    container_engine.run(
        "run", "--detach", "--name", name, "--network", "none",
        "--env", "BEATKEEPER_DATABASE_URL=postgresql+psycopg://nobody@192.0.2.1:5432/none",
        images.beatkeeper, "beatkeeper", "migrate", "--wait", "--timeout", "300",
    )  # fmt: skip
    try:
        started = time.monotonic()
        container_engine.run("stop", "--time", "20", name, timeout=60)
        stopped_after = time.monotonic() - started
        code = container_engine.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout
    finally:
        container_engine.run("rm", "--force", name, check=False)
    assert stopped_after < 10, f"took {stopped_after:.1f}s to stop: SIGTERM was ignored"
    assert int(code) != 137, "killed with SIGKILL after the grace period"


def test_examples_are_only_in_the_examples_image(container_engine: Engine, images: Images) -> None:
    check = "import importlib.util as u; print(u.find_spec('beatkeeper_examples') is not None)"
    assert _python(container_engine, images.beatkeeper, check) == "False"
    assert _python(container_engine, images.examples, check) == "True"
    tasks = "import beatkeeper_examples.tasks; print('ok')"
    assert _python(container_engine, images.examples, tasks) == "ok"


def test_the_kubernetes_client_is_not_installed(container_engine: Engine, images: Images) -> None:
    check = "import importlib.util as u; print(u.find_spec('kubernetes') is None)"
    assert _python(container_engine, images.beatkeeper, check) == "True"


def test_the_image_runs_as_uid_10001(container_engine: Engine, images: Images) -> None:
    user = container_engine.run(
        "image", "inspect", "--format", "{{.Config.User}}", images.beatkeeper
    ).stdout.strip()
    assert user == "10001:10001"


def test_the_dependency_layer_is_keyed_on_pyproject_toml_alone() -> None:
    # What is copied before the dependencies are installed decides when that (slow) layer
    # is rebuilt: a README edit must not reinstall every dependency.
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    builder = lines[
        : next(i for i, line in enumerate(lines) if "pip wheel --wheel-dir /wheels" in line)
    ]
    copied = [line.split()[1:-1] for line in builder if line.startswith("COPY")]
    assert copied == [["pyproject.toml"]]
