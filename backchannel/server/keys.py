"""Typed application state shared by the server's modules, the one publish path, and what
the fan-out reads back from the store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import jinja2
from aiohttp import web

from backchannel.core.models import Change, StoredMessage
from backchannel.core.moderation import EventAction, WallRules
from backchannel.core.wire import Publishable
from backchannel.errors import StoreError
from backchannel.fanout import RedisFanout, StoreReader
from backchannel.hub import Hub, WallChannel
from backchannel.server.stats_cache import StatsCache
from backchannel.store import EventInfo, Store

STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
STATS = web.AppKey("stats", StatsCache)
WALLS = web.AppKey("walls", dict[str, WallChannel])
WRITE_LOCKS = web.AppKey("write_locks", dict[str, asyncio.Lock])
# Set when a Redis URL is configured: publish goes through Redis to every process.
FANOUT = web.AppKey("fanout", RedisFanout)


def write_lock(app: web.Application, event: str) -> asyncio.Lock:
    """Held by every writer of `event` in this process from its store write to its publish.

    The store numbers items in commit order, and the hub must get them in that order:
    a client keeps the highest seq it has seen and resumes after it, so an item
    published after a higher one (the pipeline's batch finishing its thread after a
    moderator's change committed) would be skipped by a resume in between. Writers
    are the pipeline (`app.pipeline_for`) and the moderation routes.
    """
    return app[WRITE_LOCKS].setdefault(event, asyncio.Lock())


async def known_event(request: web.Request) -> EventInfo:
    """The event named in the URL, or 404: every page, API route and socket checks it."""
    try:
        return await asyncio.to_thread(request.app[STORE].event, request.match_info["event"], create=False)
    except StoreError:
        raise web.HTTPNotFound(text="no such event") from None


def publish(
    app: web.Application,
    event: str,
    items: Sequence[StoredMessage | Change],
    *,
    wall_rules: WallRules | None = None,
) -> None:
    """Tell every dashboard and wall of `event` about committed items (never waits).

    `wall_rules` comes with an event action (block, mute, premoderation) that changed
    what the wall may show; the wall's view uses them from the next item on.
    """
    if not items:
        return
    fanout = app.get(FANOUT)
    if fanout is not None:
        # Every process, this one included, delivers what it reads back from Redis.
        fanout.publish(event, items, wall_rules=wall_rules)
    else:
        deliver(app, event, items, wall_rules)


def deliver(
    app: web.Application,
    event: str,
    items: Sequence[Publishable],
    wall_rules: WallRules | None = None,
) -> None:
    """Hand committed items to this process's stats, wall rules and hub."""
    app[STATS].add(event, [i for i in items if isinstance(i, StoredMessage)])
    wall = app[WALLS].get(event)
    if wall is not None and wall_rules is not None:
        wall.rules = wall_rules
    app[HUB].publish(event, items)


class _FanoutStoreReader:
    """What the fan-out reads back from the store when Redis did not bring it."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def heads(self) -> dict[str, int]:
        store = self._store

        def load() -> dict[str, int]:
            return {name: store.event(name, create=False).last_seq for name in store.event_names()}

        return await asyncio.to_thread(load)

    async def read(
        self, event: str, after_seq: int, through_seq: int
    ) -> tuple[list[Publishable], WallRules | None]:
        store = self._store

        def load() -> tuple[list[Publishable], WallRules | None]:
            # Seqs are gap-free, so the range holds at most this many items.
            items = [
                i
                for i in store.backlog(event, after_seq, limit=through_seq - after_seq)
                if i.seq <= through_seq
            ]
            actions = {a.value for a in EventAction}
            changed = any(isinstance(i, Change) and i.action in actions for i in items)
            # The rules now, as a resume's wall view applies them.
            return list(items), store.wall_rules(event) if changed else None

        return await asyncio.to_thread(load)


def store_reader(app: web.Application) -> StoreReader:
    return _FanoutStoreReader(app[STORE])
