"""The JSON API behind the dashboard and the wall.

Moderator routes need the session (and, for writes, the CSRF token and our own
origin); the wall's routes are public and read-only and apply the wall rules. Store
calls run in a worker thread. Every change is published to the hub after it is
committed, so the store stays the truth and the hub only carries news of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from backchannel.core import wire
from backchannel.core.models import Change, Network, Status
from backchannel.core.moderation import Action, EventAction, WallRules
from backchannel.errors import PayloadError, StoreError
from backchannel.server.keys import STATS, STORE, known_event, publish, write_lock
from backchannel.server.security import csrf_token, require_moderator
from backchannel.store import Store
from backchannel.store.queries import MessageQuery

MAX_PAGE = 200
WALL_PAGE = 50
# Ids per moderation request (before duplicates are dropped): a bulk action on one
# screenful of messages, while one request stays one short write-lock hold.
MAX_BULK = 500


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _bool(value: str | None) -> bool | None:
    if value in (None, ""):
        return None
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise web.HTTPBadRequest(text=f"expected true or false, got {value!r}")


def _int(value: object, name: str) -> int:
    """A client's integer (see `wire.client_int`), or 400."""
    try:
        return wire.client_int(value, name)
    except PayloadError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _query_int(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    return default if value in (None, "") else _int(value, name)


def query_from_params(params: Any) -> MessageQuery:
    try:
        status = Status(params["status"]) if params.get("status") else None
        network = Network(params["network"]) if params.get("network") else None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return MessageQuery(
        text=(params.get("q") or None),
        author=(params.get("author") or None),
        question=_bool(params.get("question")),
        has_link=_bool(params.get("has_link")),
        status=status,
        network=network,
        starred=_bool(params.get("starred")),
        answered=_bool(params.get("answered")),
    )


async def session_info(request: web.Request) -> web.Response:
    """The logged-in moderator and the CSRF token their scripts send with every write.

    Safe to serve as JSON: another site cannot read it (no CORS), and the session cookie
    is SameSite=Strict, so a cross-site request does not even carry the session.
    """
    user = await require_moderator(request)
    response = json_response({"user": user, "csrf": await csrf_token(request)})
    response.headers["Cache-Control"] = "no-store"
    return response


async def list_messages(request: web.Request) -> web.Response:
    await require_moderator(request)
    info = await known_event(request)
    query = query_from_params(request.query)
    limit = _query_int(request, "limit", 50) or 0
    if not 1 <= limit <= MAX_PAGE:
        # SQLite reads a negative LIMIT as none at all: the whole event in one response.
        raise web.HTTPBadRequest(text=f"limit must be 1 to {MAX_PAGE}")
    before = _query_int(request, "before")
    oldest_first = request.query.get("order") == "oldest"
    page = await asyncio.to_thread(
        request.app[STORE].search, info.name, query, before_seq=before, limit=limit, oldest_first=oldest_first
    )
    return json_response(
        {
            "event": info.name,
            "epoch": info.epoch,
            "last_seq": info.last_seq,
            "premoderation": info.premoderation,
            "items": [wire.message_item(m) for m in page],
        }
    )


async def list_questions(request: web.Request) -> web.Response:
    await require_moderator(request)
    info = await known_event(request)
    answered = _bool(request.query.get("answered"))
    query = MessageQuery(question=True, answered=False if answered is None else answered)
    page = await asyncio.to_thread(
        request.app[STORE].search, info.name, query, limit=MAX_PAGE, oldest_first=True
    )
    return json_response({"items": [wire.message_item(m) for m in page]})


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > 64 * 1024:
        raise web.HTTPRequestEntityTooLarge(max_size=64 * 1024, actual_size=request.content_length)
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _action_id(body: dict[str, Any]) -> str | None:
    value = body.get("action_id")
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 100:
        raise web.HTTPBadRequest(text="action_id must be a string of 1 to 100 characters")
    return value


async def moderate(request: web.Request) -> web.Response:
    user = await require_moderator(request, write=True)
    info = await known_event(request)
    body = await _json_body(request)
    try:
        action = Action(body.get("action", ""))
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"unknown action; use one of {', '.join(a.value for a in Action)}"
        ) from None
    given = body.get("ids")
    if not isinstance(given, list) or not 1 <= len(given) <= MAX_BULK:
        raise web.HTTPBadRequest(text=f"ids must be a list of 1 to {MAX_BULK} message ids")
    # Each id once: a repeated id would be one more change (and one more broadcast).
    ids = list(dict.fromkeys(_int(i, "ids") for i in given))
    action_id = _action_id(body)
    store = request.app[STORE]

    done: list[Change] = []

    def apply_all() -> None:
        for i, message_id in enumerate(ids):
            key = f"{action_id}:{i}" if action_id else None
            done.append(store.moderate(info.name, message_id, action, actor=user, action_id=key))

    async with write_lock(request.app, info.name):
        try:
            await asyncio.to_thread(apply_all)
        except StoreError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        finally:
            # Each id commits on its own: those before a failing one are applied, and
            # every dashboard must hear of them even though the request as a whole failed.
            publish(request.app, info.name, _applied_now(done))
    return json_response({"changes": [wire.change_item(c) for c in done]})


def _applied_now(changes: list[Change]) -> list[Change]:
    """The changes this request committed, leaving out the ones a retried `action_id`
    read back from the log: those were published when first applied, and a second
    copy would reach every dashboard again."""
    return [c for c in changes if not c.replayed]


async def moderate_event(request: web.Request) -> web.Response:
    user = await require_moderator(request, write=True)
    info = await known_event(request)
    body = await _json_body(request)
    try:
        action = EventAction(body.get("action", ""))
    except ValueError:
        known = ", ".join(a.value for a in EventAction)
        raise web.HTTPBadRequest(text=f"unknown action; use one of {known}") from None
    subject = body.get("subject", "")
    if not isinstance(subject, str):
        raise web.HTTPBadRequest(text="subject must be a string")
    store = request.app[STORE]
    action_id = _action_id(body)

    def apply() -> tuple[Change, WallRules]:
        change = store.moderate_event(info.name, action, subject, actor=user, action_id=action_id)
        return change, store.wall_rules(info.name)

    async with write_lock(request.app, info.name):
        try:
            change, rules = await asyncio.to_thread(apply)
        except StoreError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        publish(request.app, info.name, _applied_now([change]), wall_rules=rules)
    return json_response({"changes": [wire.change_item(change)]})


async def settings(request: web.Request) -> web.Response:
    await require_moderator(request)
    info = await known_event(request)
    rules = await asyncio.to_thread(request.app[STORE].wall_rules, info.name)
    return json_response(
        {
            "premoderation": rules.premoderation,
            "blocked": sorted(f"{n}:{h}" for n, h in rules.blocked),
            "muted": list(rules.muted),
        }
    )


async def stats(request: web.Request) -> web.Response:
    await require_moderator(request)
    info = await known_event(request)
    current = await request.app[STATS].get(info.name)
    return json_response(current.as_json())


async def sources(request: web.Request) -> web.Response:
    """The live sources collecting for this event, their states, and the spans they missed."""
    await require_moderator(request)
    info = await known_event(request)
    store = request.app[STORE]

    def read() -> dict[str, Any]:
        return {
            "sources": [
                {
                    "source": s.source,
                    "state": s.state,
                    "detail": s.detail,
                    "last_error": s.last_error,
                    "next_try": s.next_try.isoformat() if s.next_try else None,
                    "collected": s.collected,
                    "updated_at": s.updated_at.isoformat(),
                }
                for s in store.source_states(info.name)
            ],
            "gaps": [
                {
                    "source": g.source,
                    "from": g.gap_from.isoformat(),
                    "to": g.gap_to.isoformat(),
                    "reason": g.reason,
                }
                for g in store.gaps(info.name)
            ],
        }

    return json_response(await asyncio.to_thread(read))


class WallSnapshots:
    """The public wall's snapshot, built by one request at a time per event and shared
    by every request that arrived before that build began.

    However many anonymous clients ask, an event costs at most one build at a time,
    and every answer is fresh: its head and rules were read after the request
    arrived. Fresh matters: a wall told to reset after its hello loads a snapshot and
    takes live items after the snapshot's `last_seq` from then on, so a snapshot older
    than the hello would lose what came in between; and after an event action (a
    block, a mute) an older snapshot would show what the action removed.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._latest: dict[str, tuple[float, bytes]] = {}  # event -> (build began, body)
        self._building: dict[str, asyncio.Lock] = {}

    async def get(self, event: str) -> bytes:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        async with self._building.setdefault(event, asyncio.Lock()):
            latest = self._latest.get(event)
            if latest is not None and latest[0] >= arrived:
                return latest[1]
            began = loop.time()
            body = await asyncio.to_thread(self._build, event)
            self._latest[event] = (began, body)
            return body

    def _build(self, event: str) -> bytes:
        # The head first: anything committed while the page is read is then either in it
        # or after `last_seq`, where the wall's websocket resumes from.
        head = self.store.event(event, create=False)
        rules = self.store.wall_rules(event)
        shown = self.store.wall(event, rules, limit=WALL_PAGE)
        pinned = self.store.wall(event, rules, limit=1, pinned=True)
        return orjson.dumps(
            {
                "event": event,
                "epoch": head.epoch,
                "last_seq": head.last_seq,
                "items": [wire.wall_item(m, rules) for m in shown],
                "pinned": wire.wall_item(pinned[0], rules) if pinned else None,
            }
        )


WALL_SNAPSHOTS = web.AppKey("wall_snapshots", WallSnapshots)


async def wall_messages(request: web.Request) -> web.Response:
    """Public: the newest messages the wall may show, and the pinned one."""
    info = await known_event(request)
    body = await request.app[WALL_SNAPSHOTS].get(info.name)
    return web.Response(body=body, content_type="application/json")


def setup(app: web.Application) -> None:
    app[WALL_SNAPSHOTS] = WallSnapshots(app[STORE])


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/api/session", session_info),
        web.get("/api/events/{event}/messages", list_messages),
        web.get("/api/events/{event}/questions", list_questions),
        web.get("/api/events/{event}/stats", stats),
        web.get("/api/events/{event}/settings", settings),
        web.get("/api/events/{event}/sources", sources),
        web.post("/api/events/{event}/moderate", moderate),
        web.post("/api/events/{event}/event-actions", moderate_event),
        web.get("/api/wall/{event}", wall_messages),
    ]
