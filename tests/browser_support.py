"""Helpers for the browser tests and the dashboard benchmark: a real server on a free
port in this event loop, Debian's Chromium driven by Playwright, and a watch on each
page for dialogs, Content-Security-Policy violations and script errors.

Playwright cannot download its own browser here: we drive `/usr/bin/chromium`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from backchannel.core.models import Message
from backchannel.server.app import create_app, pipeline_for
from backchannel.sources.replay import replay
from backchannel.store import Store

CHROMIUM = Path(os.environ.get("BACKCHANNEL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        return f"playwright is not installed ({exc})"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


class LiveServer:
    """The whole app (pages, API, websockets) served on 127.0.0.1 on a free port."""

    def __init__(self, store: Store, **kwargs: Any) -> None:
        self.store = store
        self.app = create_app(store, **kwargs)
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=2)
        self.url = ""

    async def __aenter__(self) -> LiveServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def replay(self, event: str, messages: Iterable[Message], *, speed: float = 0) -> int:
        """Feed messages through this app's live pipeline, as a source would."""
        return await replay(list(messages), pipeline_for(self.app, event, batch_size=50), speed=speed)


@dataclass
class PageWatch:
    """What a page did that a test must see: dialogs, CSP reports, script errors."""

    dialogs: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> Any:
        async def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        def on_console(message: Any) -> None:
            text = message.text
            if "Content Security Policy" in text or "Content-Security-Policy" in text:
                self.csp.append(text)
            elif (
                message.type == "error" and "WebSocket" not in text and "Failed to load resource" not in text
            ):
                self.errors.append(text)

        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        return page

    def check(self) -> None:
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        assert not self.csp, f"Content-Security-Policy violations: {self.csp}"
        assert not self.errors, f"script errors: {self.errors}"


async def launch(playwright: Any) -> Any:
    return await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


async def login(page: Any, base_url: str, username: str, password: str, next_path: str = "/") -> None:
    await page.goto(f"{base_url}/login?next={next_path}")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
