"""The README's Kubernetes snippet works as written: image built, named, and its tasks imported."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from chart_render import Rendering, env_of, parse, template
from chart_tools import REPO_ROOT
from task_modules import registered_by

from beatkeeper.manifests import read_documents

README = (REPO_ROOT / "README.md").read_text()


def _snippet() -> list[list[str]]:
    section = README.split("## On Kubernetes", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "README: no sh block under 'On Kubernetes'"
    return [shlex.split(line) for line in block.group(1).replace("\\\n", " ").splitlines()]


def _command(prefix: tuple[str, ...]) -> list[str]:
    (found,) = [words for words in _snippet() if tuple(words[: len(prefix)]) == prefix]
    return found


def _set_values(words: list[str]) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words) if word == "--set"]


def test_the_snippet_installs_the_image_it_builds_and_loads() -> None:
    build = _command(("docker", "build"))
    assert build[build.index("--target") + 1] == "examples"
    built = build[build.index("-t") + 1]
    assert _command(("kind", "load", "docker-image"))[3] == built
    values = dict(setting.split("=", 1) for setting in _set_values(_command(("helm", "install"))))
    assert f"{values['image.repository']}:{values['image.tag']}" == built


def test_the_snippets_imports_register_the_task_it_applies(helm: Path) -> None:
    install = _command(("helm", "install"))
    result = template(helm, *[arg for s in _set_values(install) for arg in ("--set", s)])
    assert result.returncode == 0, result.stderr
    rendering = Rendering("readme", parse(result.stdout), result)
    worker = rendering.get("Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    registered = registered_by(env_of(worker)["BEATKEEPER_IMPORTS"]["value"].split(","))
    applied = _command(("kubectl", "apply", "-f"))[3]
    for document in read_documents(REPO_ROOT / applied):
        assert document.content["spec"]["task"] in registered, applied
