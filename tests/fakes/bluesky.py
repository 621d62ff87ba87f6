"""A fake Jetstream (`/subscribe`, v1 JSON) and a fake appview (getProfile, getProfiles).

The Jetstream side keeps every pushed event in a log. A client that connects with
`cursor` (µs) first gets the logged events at or after it, then live ones; events are
filtered by `wantedCollections` as Jetstream does, while identity and account events
go to everyone. The test drives it: `push` an event, `drop` the connections (the TCP
connection is aborted, as when a network path dies), make the next connections
`silent`, or fail the appview.

Event shapes follow Jetstream's README: `{"did", "time_us", "kind": "commit",
"commit": {"rev", "operation", "collection", "rkey", "record", "cid"}}`, and
`{"kind": "identity", "identity": {"did", "handle", "seq", "time"}}`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from fakes import serve

T0_US = 1_782_129_600_000_000  # 2026-06-22 12:00:00 UTC in µs
_TAG = re.compile(r"#(\w+)")
_rev = itertools.count(1)


def iso(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def span(text: str, fragment: str, start: int = 0) -> dict[str, int]:
    """The UTF-8 byte range of `fragment` in `text`, as a facet index."""
    at = text.index(fragment, start)
    byte_start = len(text[:at].encode("utf-8"))
    return {"byteStart": byte_start, "byteEnd": byte_start + len(fragment.encode("utf-8"))}


def tag_facet(text: str, tag: str) -> dict[str, Any]:
    return {
        "index": span(text, f"#{tag}"),
        "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
    }


def link_facet(text: str, shown: str, uri: str) -> dict[str, Any]:
    return {"index": span(text, shown), "features": [{"$type": "app.bsky.richtext.facet#link", "uri": uri}]}


def mention_facet(text: str, shown: str, did: str) -> dict[str, Any]:
    return {
        "index": span(text, shown),
        "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
    }


def post_record(
    text: str,
    *,
    facets: list[dict[str, Any]] | None = None,
    tags: list[str] | None = None,
    reply_to: str | None = None,
    created_at: str | None = "auto",
) -> dict[str, Any]:
    """A post record; without `facets`, a tag facet for each `#word` in the text, as the app makes."""
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "langs": ["en"]}
    if facets is None:
        facets = [tag_facet(text, t) for t in dict.fromkeys(_TAG.findall(text))]
    if facets:
        record["facets"] = facets
    if tags:
        record["tags"] = tags
    if reply_to:
        ref = {"uri": reply_to, "cid": "bafyreiparent"}
        record["reply"] = {"root": ref, "parent": ref}
    if created_at is not None:
        record["createdAt"] = created_at
    return record


def commit(
    did: str,
    collection: str,
    rkey: str,
    operation: str = "create",
    record: dict[str, Any] | None = None,
    *,
    time_us: int | None = None,
    cid: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "rev": f"3l{next(_rev):011d}",
        "operation": operation,
        "collection": collection,
        "rkey": rkey,
    }
    if operation != "delete":
        body["record"] = record or {}
        body["cid"] = cid or f"bafyrei{rkey}{next(_rev)}"
    event: dict[str, Any] = {"did": did, "kind": "commit", "commit": body}
    if time_us is not None:
        event["time_us"] = time_us
    return event


def post(did: str, rkey: str, text: str, *, time_us: int | None = None, **record: Any) -> dict[str, Any]:
    event = commit(did, "app.bsky.feed.post", rkey, record=post_record(text, **record), time_us=time_us)
    if event["commit"]["record"].get("createdAt") == "auto":
        event["commit"]["record"]["createdAt"] = iso(time_us or T0_US)
    return event


def repost(did: str, rkey: str, subject: str, *, time_us: int | None = None) -> dict[str, Any]:
    record = {
        "$type": "app.bsky.feed.repost",
        "subject": {"uri": subject, "cid": "bafyreisubject"},
        "createdAt": iso(time_us or T0_US),
    }
    return commit(did, "app.bsky.feed.repost", rkey, record=record, time_us=time_us)


def identity(did: str, handle: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"did": did, "seq": next(_rev), "time": iso(T0_US)}
    if handle:
        body["handle"] = handle
    return {"did": did, "kind": "identity", "identity": body}


@dataclass(eq=False)
class _Subscriber:
    ws: web.WebSocketResponse
    request: web.Request
    wanted: frozenset[str]
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)

    def wants(self, collection: str | None) -> bool:
        return collection is None or not self.wanted or collection in self.wanted


@dataclass
class _Logged:
    time_us: int
    collection: str | None  # None: identity, account, or a frame the test mangled
    frame: str


class FakeBluesky:
    """Jetstream and the appview on one local port. Use as an async context manager."""

    def __init__(self, profiles: dict[str, tuple[str, str]] | None = None) -> None:
        self.profiles = dict(profiles or {})  # did -> (handle, display name)
        self.log: list[_Logged] = []
        self.subscribers: set[_Subscriber] = set()
        self.connections = 0
        self.cursors: list[int | None] = []  # the cursor each connection asked for
        self.wanted: list[list[str]] = []  # the wantedCollections each connection asked for
        self.silent = 0  # this many next connections get nothing at all
        self.profile_requests: list[list[str]] = []  # actors asked for, per request
        self.fail_profiles = 0  # this many next profile requests answer 502
        self.now_us = T0_US
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    async def __aenter__(self) -> FakeBluesky:
        app = web.Application()
        app.router.add_get("/subscribe", self._subscribe)
        app.router.add_get("/xrpc/app.bsky.actor.getProfiles", self._get_profiles)
        app.router.add_get("/xrpc/app.bsky.actor.getProfile", self._get_profile)
        self._runner, self.url = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sub in list(self.subscribers):
            sub.queue.put_nowait(None)
        assert self._runner is not None
        await self._runner.cleanup()

    # -- driving it -----------------------------------------------------------------------

    def push(self, event: dict[str, Any]) -> dict[str, Any]:
        """Log an event (stamping `time_us` 1 ms after the last if it has none) and send
        it to every connected client that wants it."""
        if "time_us" not in event:
            self.now_us += 1000
            event = {**event, "time_us": self.now_us}
        self.now_us = max(self.now_us, event["time_us"])
        collection = event["commit"]["collection"] if event.get("kind") == "commit" else None
        self._publish(_Logged(event["time_us"], collection, orjson.dumps(event).decode()))
        return event

    def push_raw(self, frame: str) -> None:
        """Send a frame as is (a malformed event), to everyone, and log it at the present time."""
        self._publish(_Logged(self.now_us, None, frame))

    def drop(self) -> None:
        """Abort every connection, without a closing handshake."""
        for sub in list(self.subscribers):
            transport = sub.request.transport
            if transport is not None:
                transport.abort()
            sub.queue.put_nowait(None)

    def _publish(self, item: _Logged) -> None:
        self.log.append(item)
        for sub in self.subscribers:
            if sub.wants(item.collection):
                sub.queue.put_nowait(item.frame)

    # -- Jetstream --------------------------------------------------------------------------

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        wanted = request.query.getall("wantedCollections", [])
        cursor = int(request.query["cursor"]) if "cursor" in request.query else None
        self.connections += 1
        self.cursors.append(cursor)
        self.wanted.append(wanted)
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        sub = _Subscriber(ws, request, frozenset(wanted))
        if self.silent:
            self.silent -= 1
            await self._until_closed(ws)
            return ws
        # The backlog and the live subscription start in the same step: no event falls between.
        backlog = [
            e.frame
            for e in self.log
            if cursor is not None and e.time_us >= cursor and sub.wants(e.collection)
        ]
        self.subscribers.add(sub)
        reader = asyncio.create_task(self._until_closed(ws, sub))
        try:
            for frame in backlog:
                await ws.send_str(frame)
            while (frame := await sub.queue.get()) is not None:
                await ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            pass  # the client went away mid-send
        finally:
            self.subscribers.discard(sub)
            reader.cancel()
            if not ws.closed:
                await ws.close()
        return ws

    async def _until_closed(self, ws: web.WebSocketResponse, sub: _Subscriber | None = None) -> None:
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
        if sub is not None:
            sub.queue.put_nowait(None)

    # -- appview ------------------------------------------------------------------------------

    def _view(self, did: str) -> dict[str, Any] | None:
        if did not in self.profiles:
            return None
        handle, name = self.profiles[did]
        view: dict[str, Any] = {"did": did, "handle": handle, "createdAt": iso(T0_US), "labels": []}
        if name:
            view["displayName"] = name
        return view

    def _failure(self) -> web.Response | None:
        if self.fail_profiles:
            self.fail_profiles -= 1
            return web.json_response({"error": "UpstreamFailure", "message": "try again"}, status=502)
        return None

    async def _get_profiles(self, request: web.Request) -> web.Response:
        actors = request.query.getall("actors", [])
        self.profile_requests.append(actors)
        if failure := self._failure():
            return failure
        if not actors or len(actors) > 25:
            return web.json_response(
                {"error": "InvalidRequest", "message": "actors must have between 1 and 25 items"}, status=400
            )
        views = [v for a in actors if (v := self._view(a)) is not None]
        return web.json_response({"profiles": views})

    async def _get_profile(self, request: web.Request) -> web.Response:
        actor = request.query.get("actor", "")
        self.profile_requests.append([actor])
        if failure := self._failure():
            return failure
        view = self._view(actor)
        if view is None:
            return web.json_response({"error": "InvalidRequest", "message": "Profile not found"}, status=400)
        return web.json_response(view)
