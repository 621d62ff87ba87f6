"""Fake upstream servers for the tests: one module per network.

Each fake is a small aiohttp app served on 127.0.0.1, port 0, answering with the
payloads, headers and errors the real API documents, and driven by the test (add a
post, fail the next requests, drop a stream). Nothing here reaches a real network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web

# One bound for every wait on something asynchronous; generous for a slow CI machine.
TIMEOUT = 10.0


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on 127.0.0.1 on a free port; return its runner and base URL."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"http://127.0.0.1:{port}"


async def eventually(check: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    """Wait until `check()` is true, looking every few milliseconds, at most `timeout` s.

    For state another task or process changes: a bounded poll, never a bare sleep.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.01)
