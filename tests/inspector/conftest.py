"""Fixtures for the inspector: a real server on 127.0.0.1 and Debian's headless Chromium
driven by Playwright for Python (never a downloaded browser)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import ThreadServer

CHROMIUM = os.environ.get("FLOWSTATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(
    os.environ.get("FLOWSTATE_SCREENSHOTS", Path(__file__).resolve().parent / "screenshots")
)
"""Where the browser tests write a screenshot of each view (git-ignored)."""
TOKEN = "inspector-test-token"


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped, not session-scoped: while Playwright's sync API runs it holds an event
    loop in this thread, so the tests after these (``asyncio.run``) must not share it."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A 1280x800 page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[str], Page]]:
    pages: list[Page] = []

    def make(base: str) -> Page:
        p = Page(browser, base)
        pages.append(p)
        return p

    yield make
    for p in pages:
        p.close()


def wait_status(
    client: httpx.Client, task_id: str, want: set[str], timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get(f"/v1/tasks/{task_id}").json()
        if doc["status"] in want:
            return doc
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} is {doc['status']}, not {want}")
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ThreadServer, httpx.Client]]:
    """The task service with the inspector, token-protected, over a fresh database."""
    from flowstate.service import create_app

    from .graphs import registry

    app = create_app(registry(), db=str(tmp_path / "runs.db"), token=TOKEN)
    with ThreadServer(app) as server:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            yield server, client
