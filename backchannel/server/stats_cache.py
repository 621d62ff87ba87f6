"""Event statistics kept current: computed once from the store, then updated with
each message the hub publishes (never recomputed per request)."""

from __future__ import annotations

import asyncio

from backchannel.core.models import StoredMessage
from backchannel.core.stats import EventStats, compute
from backchannel.store import Store


class StatsCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._stats: dict[str, EventStats] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, event: str) -> EventStats:
        stats = self._stats.get(event)
        if stats is None:
            async with self._locks.setdefault(event, asyncio.Lock()):
                stats = self._stats.get(event)
                if stats is None:
                    stats = await asyncio.to_thread(lambda: compute(self.store.stream(event)))
                    self._stats[event] = stats
        return stats

    def add(self, event: str, messages: list[StoredMessage]) -> None:
        stats = self._stats.get(event)
        if stats is None:
            return  # computed from the store on first request, which includes these
        for stored in messages:
            if stored.seq > stats.last_seq:
                stats.add(stored)
