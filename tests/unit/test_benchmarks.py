"""Every benchmark script starts the way the README runs it.

A script runs with its own folder first on ``sys.path``, so a benchmark named like a
standard-library module (``operator.py``) breaks every other script in the folder before it
parses an argument; ``--help`` catches that and any import error without measuring anything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
SCRIPTS = sorted(path for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))


def test_no_benchmark_shadows_a_standard_library_module() -> None:
    shadowing = [
        path.stem for path in BENCHMARKS.glob("*.py") if path.stem in sys.stdlib_module_names
    ]
    assert shadowing == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_benchmark_script_starts(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
