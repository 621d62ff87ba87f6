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
from backchannel.server.keys import HUB, SOCKETS, STORE, WALLS, known_event
from backchannel.server.limits import SOCKET_COUNTS
from backchannel.server.security import current_user, origin_allowed

# Private-use close code (4000-4999): the server ended the feed because the user logged out.
CLOSE_LOGGED_OUT = 4001


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


async def _serve(request: web.Request, channel: Channel, user: str | None) -> web.StreamResponse:
    event = request.match_info["event"]
    try:
        resume = wire.parse_resume(request.query)
    except PayloadError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    counts = request.app[SOCKET_COUNTS]
    address = request.remote or "?"
    refusal = counts.admit(address, anonymous=user is None)
    if refusal is not None:
        # Accepted to say why in a close code a browser can read (an HTTP status on a
        # refused handshake reaches no script), then closed: the descriptor comes back.
        ws = websocket_response(heartbeat=None)
        await ws.prepare(request)
        await ws.close(code=refusal.code, message=refusal.reason.encode())
        return ws
    try:
        return await _serve_admitted(request, event, channel, user, resume)
    finally:
        counts.release(address)


async def _serve_admitted(
    request: web.Request, event: str, channel: Channel, user: str | None, resume: wire.Resume
) -> web.StreamResponse:
    ws = websocket_response()
    await ws.prepare(request)
    if user is None:
        await _attach(request, ws, event, channel, resume)
        return ws
    by_user = request.app[SOCKETS]
    conn = AiohttpConnection(ws, request.transport)
    by_user.setdefault(user, set()).add(conn)
    try:
        await _attach(request, ws, event, channel, resume)
    finally:
        # Forget the socket, and the user once their last socket is gone.
        sockets = by_user.get(user)
        if sockets is not None:
            sockets.discard(conn)
            if not sockets:
                del by_user[user]
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
    user = await current_user(request)
    if user is None:
        raise web.HTTPUnauthorized(text="login required")
    await known_event(request)
    return await _serve(request, DASHBOARD, user)


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


async def close_user_sockets(app: web.Application, user: str) -> None:
    """At logout: the user's open dashboards lose their feed at once.

    All at once, each close bounded in time (a client that does not read is cut off),
    so no client can hold up the logout.
    """
    conns = app[SOCKETS].pop(user, set())
    await asyncio.gather(*(conn.close(CLOSE_LOGGED_OUT, "logged out") for conn in conns))


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/ws/events/{event}", moderator_feed),
        web.get("/ws/wall/{event}", wall_feed),
    ]
