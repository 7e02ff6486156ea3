"""`beatkeeper dev` advertises its servers' URLs in its state folder only while it runs."""

from __future__ import annotations

import stat
from pathlib import Path

from beatkeeper.dev.servers import advertised, running_stack


def test_the_urls_are_readable_while_the_block_runs_and_gone_after(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert running_stack(state) == {}
    database, broker = "postgresql://me:secret@db:5432/app", "redis://127.0.0.1:6380/0"
    with advertised(state, database_url=database, broker_url=broker) as path:
        assert running_stack(state) == {
            "BEATKEEPER_DATABASE_URL": database,
            "BEATKEEPER_BROKER_URL": broker,
        }
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert running_stack(state) == {}
    assert not path.exists()


def test_a_file_without_urls_advertises_nothing(tmp_path: Path) -> None:
    (tmp_path / "servers.env").write_text("# emptied by hand\nBEATKEEPER_DATABASE_URL=\n")
    assert running_stack(tmp_path) == {}
