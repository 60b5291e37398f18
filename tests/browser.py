"""A real browser for the dashboard's tests: Debian's chromium, driven by Playwright.

``scripts/test.sh`` installs chromium when it is missing; Playwright is pointed at it
(no browser download). With ``RESC_DASHBOARD_SCREENSHOTS=<dir>`` the tests save the
screenshots of docs/dashboard.md there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
#: As root, in a closed network: no sandbox, no background connections.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def shot(page: Page, name: str) -> None:
    """Save a screenshot for the docs when asked to (RESC_DASHBOARD_SCREENSHOTS)."""
    directory = os.environ.get("RESC_DASHBOARD_SCREENSHOTS")
    if directory:
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)
