"""Flower in a real browser: headless Chromium, logged in with the stack's Flower login,
opens the dev stack's task list and sees an example task succeed.

Chromium is driven over its DevTools protocol (a WebSocket, through ``websocket-client``),
so no chromedriver or selenium is needed. Without a Chromium binary the test skips and says
how to install one; CI installs it (``apt-get install -y chromium``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dev_support import TASK, DevStack
from waiting import wait_for

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


class Page:
    """One browser tab, spoken to over the DevTools protocol."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; the reply carries our id
            reply: dict[str, Any] = json.loads(self._socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def text(self) -> str:
        result = self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''"
        )
        return str(result.get("result", {}).get("value", ""))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; asked for before ``dev_stack`` so a skip starts no stack."""
    configured = os.environ.get("CHROMIUM")
    found = configured or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not found:
        pytest.skip(
            "the browser check needs Chromium: apt-get install -y chromium "
            "(or set CHROMIUM=/path/to/chrome)"
        )
    return found


@pytest.fixture
def page(chromium: str, tmp_path: Path) -> Iterator[Page]:
    websocket = pytest.importorskip("websocket", reason="the browser check needs websocket-client")
    profile = tmp_path / "profile"
    browser = subprocess.Popen(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout=30,
              what="Chromium's DevTools port")  # fmt: skip
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as listing:
            target = next(t for t in json.load(listing) if t["type"] == "page")
        socket = websocket.create_connection(
            target["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
        )
        try:
            yield Page(socket)
        finally:
            socket.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGTERM)
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()


def test_flower_shows_an_example_task_succeeded(
    chromium: str, dev_stack: DevStack, page: Page
) -> None:
    wait_for(dev_stack.succeeded, timeout=60, what=f"{TASK} to succeed (Flower's API)")
    # The dev Flower asks for its login: what the browser sends once the user has typed it.
    page.call("Network.enable")
    page.call("Network.setExtraHTTPHeaders", headers={"Authorization": dev_stack.authorization()})

    def success_row() -> str | None:
        page.call("Page.navigate", url=f"{dev_stack.flower}/tasks")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the table is filled by the page's own requests
            rows = [line for line in page.text().splitlines() if TASK in line]
            if any("SUCCESS" in row for row in rows):
                return next(row for row in rows if "SUCCESS" in row)
            time.sleep(0.2)
        return None

    row = wait_for(success_row, timeout=60, what=f"Flower's task page to list {TASK} as SUCCESS")
    print(f"\nFlower in Chromium: {row.split(chr(9))[:3]}")
