"""Bulk ingest for archive imports: streamed, batched, parsing overlapped with writing.

The reader (parsing JSON, building messages) runs in the calling thread while a
single writer thread moves full batches into the store; the queue between them is
bounded, so memory stays flat however large the archive is. Both SQLite and
psycopg release the GIL while the database works, which is what makes the overlap
pay.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from backchannel.core.models import Message
from backchannel.sources.archive import Rejected
from backchannel.store import Store


@dataclass(slots=True)
class ImportStats:
    added: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected


_DONE = object()


def bulk_ingest(
    store: Store,
    event: str,
    items: Iterable[Message | Rejected],
    *,
    batch_size: int = 5000,
    on_rejected: Callable[[Rejected], None] | None = None,
) -> ImportStats:
    stats = ImportStats()
    info = store.event(event)
    batches: queue.Queue[object] = queue.Queue(maxsize=4)
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            while (batch := batches.get()) is not _DONE:
                assert isinstance(batch, list)
                result = store.ingest(info, batch, want_rows=False)
                stats.added += result.added_count
                stats.duplicates += result.duplicates
        except BaseException as exc:  # reported to the reader below
            failure.append(exc)
            while batches.get() is not _DONE:  # keep the reader from blocking
                pass

    thread = threading.Thread(target=writer, name="backchannel-import-writer", daemon=True)
    thread.start()
    batch: list[Message] = []
    try:
        for item in items:
            if isinstance(item, Rejected):
                stats.rejected.append(item)
                if on_rejected:
                    on_rejected(item)
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                batches.put(batch)
                batch = []
                if failure:
                    break
        if batch and not failure:
            batches.put(batch)
    finally:
        batches.put(_DONE)
        thread.join()
    if failure:
        raise failure[0]
    return stats
