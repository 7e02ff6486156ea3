"""Every benchmark script starts the way the README runs it.

A script runs with its own folder first on ``sys.path``, so a benchmark named like a
standard-library module (``operator.py``) breaks every other script in the folder before it
parses an argument; ``--help`` catches that and any import error without measuring anything.
The overhead benchmark's verdict (medians, ratios, the goal) is checked on made-up rounds.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _overhead_rows() -> Any:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("_rows")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _round(row: str, per_second: float, worker: float, database: float = 0.0) -> dict[str, Any]:
    return {
        "row": row,
        "per_second": per_second,
        "cpu_ms_per_task": {"worker": worker, "database": database},
    }


def test_overhead_summary_compares_medians_of_four_rows() -> None:
    rows = _overhead_rows()
    rounds = [
        *(_round("bare", rate, 1.0) for rate in (1000, 1200, 900)),
        *(_round("tracked", rate, 1.1, 0.1) for rate in (950, 100, 870)),
        *(_round("database_backend", rate, 5.0, 1.0) for rate in (300, 320, 310)),
        *(_round("redis_backend", rate, 1.4) for rate in (860, 900, 800)),
    ]
    summary = rows.summary(rounds)
    assert summary["rows"]["bare"]["per_second"] == 1000
    assert summary["rows"]["tracked"]["ratio_to_bare"] == 0.87  # median 870, not the mean
    assert summary["rows"]["tracked"]["cpu_ratio_to_bare"] == 1.2
    assert summary["goal"] == {
        "tracked_at_least_times_bare": 0.85,
        "tracked_ratio_to_bare": 0.87,
        "within_goal_of_bare": True,
        "ahead_of_database_backend": True,
        "ahead_of_redis_backend": True,
        "met": True,
    }


def test_overhead_goal_fails_behind_a_result_backend() -> None:
    rows = _overhead_rows()
    rounds = [
        _round("bare", 1000, 1.0),
        _round("tracked", 900, 1.1),
        _round("redis_backend", 950, 1.4),
    ]
    goal = rows.summary(rounds)["goal"]
    assert goal["within_goal_of_bare"] is True
    assert goal["ahead_of_redis_backend"] is False
    assert goal["met"] is False
