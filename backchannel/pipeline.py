"""source -> store (one writer) -> hub.

Every source, live poller or replay, hands its messages to a `Pipeline`. The
pipeline batches them, writes each batch in one store transaction (in a worker
thread, so the event loop never blocks on the database) and publishes only the
rows that were really new. It must not know where messages come from nor who
listens.

A batch whose write fails on a transient database error (a restart, a lost
connection) is written again with backoff (`dbretry`): ingest is idempotent, so
nothing is lost or stored twice. A permanent failure raises `DatabaseFailed` with the
number of messages this pipeline had stored. A flush cancelled while it waits keeps
its batch pending for the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from backchannel import dbretry
from backchannel.core.models import Message, StoredMessage
from backchannel.store import Store

log = logging.getLogger(__name__)

Publisher = Callable[[str, list[StoredMessage]], None]


@dataclass(slots=True)
class PipelineStats:
    delivered: int = 0
    added: int = 0
    duplicates: int = 0


class Pipeline:
    def __init__(
        self,
        store: Store,
        event: str,
        *,
        publish: Publisher | None = None,
        batch_size: int = 500,
    ) -> None:
        self.store = store
        self.event = event
        self.publish = publish
        self.batch_size = batch_size
        self.stats = PipelineStats()
        self._pending: list[Message] = []
        # One writer per pipeline: batches reach the store in the order they were taken.
        self._write_lock = asyncio.Lock()

    async def put(self, message: Message) -> None:
        self._pending.append(message)
        if len(self._pending) >= self.batch_size:
            await self.flush()

    async def put_many(self, messages: Iterable[Message]) -> None:
        for message in messages:
            await self.put(message)

    async def flush(self) -> list[StoredMessage]:
        """Write what is pending; return the messages that were new."""
        async with self._write_lock:
            batch, self._pending = self._pending, []
            if not batch:
                return []
            try:
                result = await dbretry.call_async(
                    lambda: asyncio.to_thread(self.store.ingest, self.event, batch),
                    stored=lambda: self.stats.added,
                )
            except asyncio.CancelledError:
                # Cancelled while waiting for the database (Ctrl-C during an outage): the
                # batch goes back in front, so the final flush still stores it.
                self._pending[:0] = batch
                raise
        self.stats.delivered += len(batch)
        self.stats.added += result.added_count
        self.stats.duplicates += result.duplicates
        if result.added and self.publish is not None:
            self.publish(self.event, result.added)
        return result.added
