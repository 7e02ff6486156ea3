"""Session fixtures for the chart tests: the helm binary and each scenario rendered once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from chart_render import SCENARIO_FILES, Rendering, render_scenario
from chart_tools import ToolUnavailableError, locate


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return locate("helm")
    except ToolUnavailableError as error:
        pytest.skip(f"chart tests need helm: {error}")


@pytest.fixture(scope="session")
def renderings(helm: Path) -> dict[str, Rendering]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda scenario: render_scenario(helm, scenario), SCENARIO_FILES)
        return {rendering.scenario: rendering for rendering in results}


@pytest.fixture(params=sorted(SCENARIO_FILES))
def rendering(request: pytest.FixtureRequest, renderings: dict[str, Rendering]) -> Rendering:
    """Each scenario in turn."""
    return renderings[request.param]
