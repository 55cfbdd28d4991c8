"""A real headless Chromium (Debian's ``chromium``), driven by Playwright, for page tests.

Chromium starts with a fresh profile and without the background networking a
closed network refuses; console errors and page errors are collected so a
test can assert there were none. Screenshots go under ``tests/artifacts/``
(ignored by git), where CI keeps them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.integration import skip_or_fail

#: Where screenshots go (not kept in git).
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


@dataclass
class Browser:
    """An open page and what its console said."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as ``tests/artifacts/<name>.png``; its path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def browser(width: int = 1280, height: int = 800) -> Iterator[Browser]:
    """A page in headless Chromium at ``width`` x ``height``."""
    executable = chromium_path()
    if executable is None:
        skip_or_fail("Chromium is not installed (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = chromium.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            opened = Browser(page)
            page.on(
                "console",
                lambda message: (
                    opened.errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.on("pageerror", lambda error: opened.errors.append(str(error)))
            yield opened
        finally:
            chromium.close()
