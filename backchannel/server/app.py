"""The aiohttp application: pages, JSON API and websocket hub on one origin.

`create_app` wires the store, the hub, the templates and the security middleware
together; long-lived tasks (a replay, later the pollers) run in `cleanup_ctx` so they
start and stop with the app. `run` serves it until interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from backchannel.core.models import StoredMessage
from backchannel.fanout import RedisFanout
from backchannel.hub import Hub
from backchannel.pipeline import Pipeline
from backchannel.server import api, limits, pages, ws
from backchannel.server.keys import (
    FANOUT,
    HUB,
    STATS,
    STORE,
    TEMPLATES,
    WALLS,
    WRITE_LOCKS,
    deliver,
    publish,
    store_reader,
    write_lock,
)
from backchannel.server.security import SecuritySettings, setup_security
from backchannel.server.stats_cache import StatsCache
from backchannel.store import Store

log = logging.getLogger(__name__)

Background = Callable[[web.Application], Coroutine[Any, Any, None]]


def create_app(
    store: Store,
    *,
    security: SecuritySettings | None = None,
    hub: Hub | None = None,
    background: list[Background] | None = None,
    fanout: RedisFanout | None = None,
) -> web.Application:
    """`fanout` carries live items across processes; without it the hub is in-process."""
    app = web.Application(client_max_size=64 * 1024)
    app[STORE] = store
    app[HUB] = hub or Hub()
    app[TEMPLATES] = pages.template_environment()
    app[STATS] = StatsCache(store)
    app[WALLS] = {}
    app[WRITE_LOCKS] = {}
    if fanout is not None:
        app[FANOUT] = fanout
        app.cleanup_ctx.append(_fanout_context)
    security = security or SecuritySettings()
    setup_security(app, security)
    api.setup(app)
    limits.setup(app, max_sockets=security.max_sockets, per_address=security.max_sockets_per_address)
    app.add_routes(pages.routes() + api.routes() + ws.routes())
    for job in background or ():
        app.cleanup_ctx.append(_as_context(job))
    app.on_shutdown.append(_close_sockets)
    return app


def pipeline_for(app: web.Application, event: str, **kwargs: Any) -> Pipeline:
    """A pipeline whose new messages reach this app's dashboards and walls."""
    return _ServedPipeline(app, event, **kwargs)


class _ServedPipeline(Pipeline):
    """Writes and publishes each batch under the event's write lock, so its messages
    reach the hub in seq order with the moderators' changes (see `keys.write_lock`)."""

    def __init__(self, app: web.Application, event: str, **kwargs: Any) -> None:
        super().__init__(app[STORE], event, publish=lambda e, added: publish(app, e, added), **kwargs)
        self._app = app

    async def flush(self) -> list[StoredMessage]:
        async with write_lock(self._app, self.event):
            return await super().flush()


async def _fanout_context(app: web.Application) -> AsyncIterator[None]:
    # Started before the background jobs (which may publish), stopped after them.
    fanout = app[FANOUT]
    await fanout.start(lambda event, items, rules: deliver(app, event, items, rules), store_reader(app))
    yield
    await fanout.close()


def _as_context(job: Background) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(job(app))
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("background job failed")

    return context


async def _close_sockets(app: web.Application) -> None:
    # 1001 "going away": clients reconnect and resume from the store.
    await app[HUB].close()


def run(app: web.Application, host: str, port: int, on_ready: Callable[[], None] | None = None) -> None:
    async def started(_app: web.Application) -> None:
        if on_ready:
            on_ready()

    app.on_startup.append(started)
    # Our own listening sockets: they keep asyncio from logging a storm on EMFILE.
    sockets = limits.listening_sockets(host, port)
    web.run_app(app, sock=sockets, print=None, handle_signals=True, shutdown_timeout=5)
