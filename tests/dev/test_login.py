"""The dev Flower's login file: generated once, reused, owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

from beatkeeper.dev.login import USER, flower_login


def test_a_login_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = flower_login(tmp_path / "dev")
    again = flower_login(tmp_path / "dev")
    assert first == again
    assert first.user == USER
    assert len(first.password) >= 20
    assert first.path == tmp_path / "dev" / "flower-login"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert flower_login(tmp_path / "other").password != first.password


def test_a_login_file_widened_by_hand_is_narrowed_again(tmp_path: Path) -> None:
    login = flower_login(tmp_path)
    login.path.chmod(0o644)
    assert flower_login(tmp_path) == login
    assert stat.S_IMODE(login.path.stat().st_mode) == 0o600


def test_an_unusable_login_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "flower-login").write_text("no separator\n")
    login = flower_login(tmp_path)
    assert login.user == USER
    assert (tmp_path / "flower-login").read_text() == f"{USER}:{login.password}\n"
