"""What `beatkeeper dev` makes of a PostgreSQL lock file a previous stack left behind."""

from __future__ import annotations

import os
from pathlib import Path

from beatkeeper.dev import servers


def write_lock_file(folder: Path, pid: int, status: str = "ready") -> Path:
    lines = [str(pid), str(folder), "1712346200", "5432", "/tmp", "", "0 0", status]
    path = folder / "postmaster.pid"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_no_lock_file_means_no_server(tmp_path: Path) -> None:
    assert servers._postmaster_status(tmp_path / "postmaster.pid") is None


def test_a_lock_file_naming_a_process_that_is_not_postgres_is_stale(tmp_path: Path) -> None:
    path = write_lock_file(tmp_path, os.getpid())  # this test process: alive, not postgres
    assert servers._postmaster_status(path) == "stale"


def test_a_stale_lock_file_is_removed_before_the_server_starts(tmp_path: Path) -> None:
    path = write_lock_file(tmp_path, os.getpid(), status="stopping")
    servers._settle_previous_postmaster(tmp_path, timeout=5)
    assert not path.exists()


def test_a_garbled_lock_file_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "postmaster.pid"
    path.write_text("not a pid\n")
    assert servers._postmaster_status(path) == "stale"
