"""Websocket endpoints: the moderators' live feed and the public wall's.

Both check Origin at the handshake (aiohttp has no built-in check); the moderators'
also needs the session. Each counts against the cap on open sockets in all, and a
wall's also against the cap per client address (`limits.py`): one over a cap is closed
at once with 1013 or 1008. After that the hub serves the connection: resume from the
store, then live items, the wall's through its view.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from backchannel.core import wire
from backchannel.errors import PayloadError
from backchannel.hub import (
    DASHBOARD,
    AiohttpConnection,
    Backlog,
    BacklogReader,
    Channel,
    WallChannel,
    websocket_response,
)
from backchannel.server.keys import HUB, STORE, WALLS, known_event
from backchannel.server.limits import SOCKET_COUNTS
from backchannel.server.security import client_address, current_login, origin_allowed
from backchannel.server.sessions import Login, track_socket


def backlog_reader(app: web.Application) -> BacklogReader:
    store = app[STORE]

    async def read(event: str, *, after_seq: int | None, limit: int) -> Backlog:
        def load() -> Backlog:
            info = store.event(event, create=False)
            if after_seq is None or after_seq >= info.last_seq or info.last_seq - after_seq > limit:
                return Backlog(info.epoch, info.last_seq)
            return Backlog(info.epoch, info.last_seq, store.backlog(event, after_seq, limit=limit))

        return await asyncio.to_thread(load)

    return read


async def _serve(request: web.Request, channel: Channel, login: Login | None) -> web.StreamResponse:
    event = request.match_info["event"]
    try:
        resume = wire.parse_resume(request.query)
    except PayloadError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    counts = request.app[SOCKET_COUNTS]
    address = client_address(request)
    refusal = counts.admit(address, anonymous=login is None)
    if refusal is not None:
        # Accepted to say why in a close code a browser can read (an HTTP status on a
        # refused handshake reaches no script), then closed: the descriptor comes back.
        ws = websocket_response(heartbeat=None)
        await ws.prepare(request)
        await ws.close(code=refusal.code, message=refusal.reason.encode())
        return ws
    try:
        return await _serve_admitted(request, event, channel, login, resume)
    finally:
        counts.release(address)


async def _serve_admitted(
    request: web.Request, event: str, channel: Channel, login: Login | None, resume: wire.Resume
) -> web.StreamResponse:
    ws = websocket_response()
    await ws.prepare(request)
    if login is None:
        await _attach(request, ws, event, channel, resume)
        return ws
    # Registered by session: closed when it ends (see sessions.py).
    with track_socket(request.app, login, AiohttpConnection(ws, request.transport)):
        await _attach(request, ws, event, channel, resume)
    return ws


async def _attach(
    request: web.Request, ws: web.WebSocketResponse, event: str, channel: Channel, resume: wire.Resume
) -> None:
    await request.app[HUB].attach(
        request, ws, event=event, channel=channel, resume=resume, backlog=backlog_reader(request.app)
    )


async def moderator_feed(request: web.Request) -> web.StreamResponse:
    if not origin_allowed(request):
        raise web.HTTPForbidden(text="cross-origin websocket refused")
    login = await current_login(request)
    if login is None:
        raise web.HTTPUnauthorized(text="login required")
    await known_event(request)
    return await _serve(request, DASHBOARD, login)


async def wall_feed(request: web.Request) -> web.StreamResponse:
    if not origin_allowed(request):
        raise web.HTTPForbidden(text="cross-origin websocket refused")
    event = (await known_event(request)).name
    walls = request.app[WALLS]
    channel = walls.get(event)
    if channel is None:
        rules = await asyncio.to_thread(request.app[STORE].wall_rules, event)
        channel = walls.setdefault(event, WallChannel(rules, name=f"wall:{event}"))
    return await _serve(request, channel, None)


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/ws/events/{event}", moderator_feed),
        web.get("/ws/wall/{event}", wall_feed),
    ]
