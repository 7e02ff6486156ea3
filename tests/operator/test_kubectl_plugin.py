"""``kubectl beatkeeper``: each command becomes one kubectl call with the right arguments."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from beatkeeper_operator import kubectl_plugin, reconcile
from beatkeeper_operator.kubectl_plugin import main


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``kubectl`` first on PATH that records its arguments (one JSON list per call)."""
    record = tmp_path / "calls.jsonl"
    script = tmp_path / "bin" / "kubectl"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(record)!r}, 'a') as out:\n"
        "    out.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(3 if 'missing' in sys.argv else 0)\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(script.parent))
    return record


def calls(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


def test_annotation_names_match_the_operator():
    assert kubectl_plugin.TRIGGER_ANNOTATION == reconcile.TRIGGER_ANNOTATION
    assert kubectl_plugin.BACKFILL_ANNOTATION == reconcile.BACKFILL_ANNOTATION


def test_trigger_annotates_a_new_token_each_time(fake_kubectl: Path):
    assert main(["trigger", "nightly", "-n", "team-a"]) == 0
    assert main(["trigger", "nightly", "-n", "team-a"]) == 0
    first, second = calls(fake_kubectl)
    assert first[:3] == ["annotate", "schedules.beatkeeper.io", "nightly"]
    assert first[3].startswith("beatkeeper.io/trigger=")
    assert first[4:] == ["--overwrite", "--namespace", "team-a"]
    assert first[3] != second[3]


def test_backfill_annotates_the_window(fake_kubectl: Path):
    argv = ["backfill", "nightly", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00Z"]
    assert main(argv) == 0
    assert calls(fake_kubectl) == [
        [
            "annotate",
            "schedules.beatkeeper.io",
            "nightly",
            "beatkeeper.io/backfill=2026-01-01T00:00:00+00:00/2026-01-02T00:00:00+00:00",
            "--overwrite",
        ]
    ]


def test_backfill_without_an_offset_is_refused(fake_kubectl: Path, capsys):
    argv = ["backfill", "nightly", "--from", "2026-01-01T00:00:00", "--to", "2026-01-02T00:00Z"]
    assert main(argv) == 2
    assert "--from must be an RFC 3339 time with an offset" in capsys.readouterr().err
    assert not fake_kubectl.exists()


@pytest.mark.parametrize(("command", "value"), [("suspend", True), ("resume", False)])
def test_suspend_and_resume_patch_the_spec(fake_kubectl: Path, command: str, value: bool):
    assert main([command, "nightly", "--namespace", "ops"]) == 0
    [call] = calls(fake_kubectl)
    assert call[:5] == ["patch", "schedules.beatkeeper.io", "nightly", "--type", "merge"]
    assert json.loads(call[6]) == {"spec": {"suspend": value}}
    assert call[7:] == ["--namespace", "ops"]


def test_kubectl_failure_is_passed_on(fake_kubectl: Path):
    assert main(["suspend", "missing"]) == 3


def test_missing_kubectl_is_a_clear_error(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["trigger", "nightly"]) == 127
    assert "kubectl was not found on PATH" in capsys.readouterr().err
