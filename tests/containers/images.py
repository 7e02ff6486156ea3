"""The images the suite runs: beatkeeper's own, built from the Dockerfile, and stand-ins.

- The Python base: the Dockerfile's default (``python:3.12-slim``) when the engine can pull
  it; otherwise one made from Debian packages with debootstrap and imported into the engine,
  its root filesystem cached as a tarball under ``.cache/containers/`` keyed by its recipe.
- ``beatkeeper`` (the Dockerfile's default target) and ``beatkeeper-examples`` (its
  ``examples`` target), built on that base with the engine's layer cache.
- Stand-ins for the chart's PostgreSQL and Redis from Debian packages on the same base
  (``recipes/*/Containerfile`` says where each differs from the official image).

A rerun reuses every layer, so building takes seconds once the cache is warm.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from engine import CACHE_DIR, REPO_ROOT, Engine, EngineError

DEFAULT_BASE = "docker.io/library/python:3.12-slim"
RECIPES = Path(__file__).resolve().parent / "recipes"
#: What the Debian-made base contains: the python image's essentials.
DEBIAN_PACKAGES = ("ca-certificates", "python3", "python3-pip", "python3-venv", "python-is-python3")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: pip inside a build trusts the host's CA bundle (a TLS-inspecting proxy's CA, say).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Images:
    """The image references the suite hands to the chart."""

    base: str
    beatkeeper: str
    examples: str
    postgresql: str
    redis: str


def build_all(engine: Engine) -> Images:
    base = python_base(engine)
    return Images(
        base=base,
        beatkeeper=build_project(engine, base, target="production", name="beatkeeper"),
        examples=build_project(engine, base, target="examples", name="beatkeeper-examples"),
        postgresql=build_stand_in(engine, base, "postgresql"),
        redis=build_stand_in(engine, base, "redis"),
    )


def python_base(engine: Engine) -> str:
    """The default base if it can be had, else the Debian-made one."""
    if engine.exists("image", DEFAULT_BASE):
        return DEFAULT_BASE
    if engine.run("pull", "--quiet", DEFAULT_BASE, check=False, timeout=300).returncode == 0:
        return DEFAULT_BASE
    return debian_base(engine)


def build_project(engine: Engine, base: str, *, target: str, name: str) -> str:
    tag = f"localhost/{name}:containers-test"
    with _build_mounts(engine) as mounts:
        engine.run(
            "build",
            *mounts,
            "--file", str(REPO_ROOT / "Dockerfile"),
            "--target", target,
            "--build-arg", f"PYTHON_IMAGE={base}",
            "--tag", tag,
            str(REPO_ROOT),
            timeout=1800,
        )  # fmt: skip
    return tag


def build_stand_in(engine: Engine, base: str, service: str) -> str:
    tag = f"localhost/beatkeeper-test-{service}:containers-test"
    engine.run(
        "build",
        "--build-arg", f"BASE_IMAGE={base}",
        "--tag", tag,
        str(RECIPES / service),
        timeout=1200,
    )  # fmt: skip
    return tag


@dataclass(frozen=True)
class DebianRecipe:
    """What the Debian-made base is built from; its hash names the cached root filesystem."""

    suite: str
    mirror: str
    packages: tuple[str, ...] = DEBIAN_PACKAGES
    variant: str = "minbase"

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def debian_base(engine: Engine) -> str:
    """A Python base made from Debian packages, imported from a cached root filesystem."""
    recipe = DebianRecipe(suite=_host_codename(), mirror=_apt_mirror())
    tag = f"localhost/beatkeeper-test-python-base:{recipe.key}"
    if engine.exists("image", tag):
        return tag
    tarball = CACHE_DIR / f"python-base-{recipe.key}.tar"
    if not tarball.exists():
        _debootstrap(recipe, tarball)
    engine.run(
        "import",
        "--change", f"ENV PATH={PATH}",
        "--change", "ENV LANG=C.UTF-8",
        "--change", 'CMD ["python3"]',
        str(tarball),
        tag,
        timeout=600,
    )  # fmt: skip
    return tag


def _debootstrap(recipe: DebianRecipe, tarball: Path) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise EngineError(
            f"{DEFAULT_BASE} cannot be pulled and debootstrap is not installed to build a "
            "Python base from Debian packages (apt-get install debootstrap)"
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="beatkeeper-rootfs-", dir=CACHE_DIR) as workdir:
        rootfs = Path(workdir) / "rootfs"
        subprocess.run(
            [debootstrap, f"--variant={recipe.variant}", f"--include={','.join(recipe.packages)}",
             recipe.suite, str(rootfs), recipe.mirror],
            check=True, capture_output=True, timeout=1200,
        )  # fmt: skip
        # As in the official python images: pip installs into the system environment.
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.replace(tarball)


@contextlib.contextmanager
def _build_mounts(engine: Engine) -> Iterator[list[str]]:
    """Build-time mounts that let pip inside a podman build trust the host's CA bundle."""
    if not engine.is_podman or not HOST_CA_BUNDLE.exists():
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="beatkeeper-build-") as workdir:
        pip_conf = Path(workdir) / "pip.conf"
        pip_conf.write_text("[global]\ncert = /run/host-ca.crt\n")
        yield [
            "--volume", f"{HOST_CA_BUNDLE}:/run/host-ca.crt:ro",
            "--volume", f"{pip_conf}:/etc/pip.conf:ro",
        ]  # fmt: skip


def _host_codename() -> str:
    """The host's Debian release, so the base matches the mirror apt already uses."""
    os_release = Path("/etc/os-release")
    if os_release.exists():
        for line in os_release.read_text().splitlines():
            if line.startswith("VERSION_CODENAME=") and line.split("=", 1)[1].strip():
                return line.split("=", 1)[1].strip().strip('"')
    return "bookworm"


def _apt_mirror() -> str:
    """The Debian mirror apt's own sources name (deb822 or one-line format)."""
    sources = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in line:
                return next(word for word in words[1:] if "://" in word)
    return "http://deb.debian.org/debian"
