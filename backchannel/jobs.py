"""Running live sources: APScheduler for polls, a reconnect loop for streams.

Job bodies are plain async functions. A runner owns one source of one event: it
reads the stored cursor, stores each page together with the cursor after it (one
transaction), publishes what was new, and records its state (collecting, sleeping
until a rate limit resets, backing off after an error, failing) for `backchannel
status` and the dashboard. One source failing never stops the others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import sqlalchemy.exc
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from backchannel.core.backoff import FailureKind, retry_delay
from backchannel.core.models import Change, StoredMessage
from backchannel.leases import RETRY as LEASE_RETRY
from backchannel.leases import Leases, LocalLeases, leases_for
from backchannel.sources.base import (
    Page,
    PollingSource,
    SourceFinished,
    SourceState,
    StreamingSource,
    UpstreamError,
    http_session,
)
from backchannel.store import Store

log = logging.getLogger(__name__)

# Failures a source recovers from by trying again later. A store that is briefly away
# (PostgreSQL restarting) counts: the page and its cursor were not committed, so the
# retry reads them again.
RETRYABLE = (UpstreamError, aiohttp.ClientError, TimeoutError, sqlalchemy.exc.OperationalError)

Publish = Callable[[str, list[StoredMessage | Change]], None]


class SourceRunner:
    def __init__(
        self,
        store: Store,
        event: str,
        source: PollingSource | StreamingSource,
        *,
        publish: Publish | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.leases = leases or LocalLeases()
        self.store = store
        self.event = event
        self.source = source
        self.publish = publish
        self.clock = clock
        self.rng = rng
        self.failures = 0
        self.not_before = 0.0
        self.state = SourceState.COLLECTING
        self.stopped = False

    @property
    def key(self) -> str:
        return self.source.key

    async def store_page(self, page: Page) -> None:
        """Store a page and the cursor after it, then publish what was new."""
        for reason in page.rejected:
            log.warning("%s: skipped a malformed record: %s", self.key, reason)
        if page.gap is not None:
            # Recorded before the rows and the cursor: a crash in between reports the gap
            # twice rather than not at all.
            log.warning("%s: missed for good from %s to %s: %s", self.key, *page.gap)
            await asyncio.to_thread(self.store.record_gap, self.event, self.key, *page.gap)
        cursor = (self.key, page.cursor) if page.cursor is not None else None
        result = await asyncio.to_thread(self.store.ingest, self.event, page.messages, cursor=cursor)
        changes: list[Change] = []
        if page.edits or page.deletes:
            changes = await asyncio.to_thread(
                self.store.apply_upstream, self.event, edits=page.edits, deletes=page.deletes
            )
        if self.publish is not None and (result.added or changes):
            self.publish(self.event, [*result.added, *changes])
        if result.added_count:
            await self._set_state(SourceState.COLLECTING, collected=result.added_count)

    async def poll_once(self, http: aiohttp.ClientSession) -> None:
        """One scheduled poll: drain every page available now."""
        if self.stopped or self.clock() < self.not_before:
            return
        if not await self.leases.hold(self.key):
            await self._standby()
            return
        source = self.source
        assert hasattr(source, "poll")
        slept = False
        try:
            cursor = await asyncio.to_thread(self.store.cursor, self.key)
            while True:
                page = await source.poll(http, cursor)
                await self.store_page(page)
                cursor = page.cursor if page.cursor is not None else cursor
                if page.wait:
                    slept = await self._sleep_until(
                        page.wait, "the network asked to wait", pace=getattr(source, "interval", 0.0)
                    )
                    break
                if not page.more:
                    break
        except RETRYABLE as exc:
            await self.failed(exc)
            return
        self.failures = 0
        if not slept:
            await self._set_state(SourceState.COLLECTING)

    async def failed(self, exc: BaseException) -> float | None:
        """Record a failure and decide when to try again (None: not again)."""
        if isinstance(exc, SourceFinished):
            self.stopped = True
            log.info("%s finished: %s", self.key, exc)
            await self._set_state(SourceState.STOPPED, detail=str(exc))
            return None
        error = exc if isinstance(exc, UpstreamError) else UpstreamError(f"{type(exc).__name__}: {exc}")
        self.failures += 1
        delay = retry_delay(error.kind, self.failures, upstream_wait=error.upstream_wait, rng=self.rng)
        if delay is None:
            self.stopped = True
            log.error("%s stopped: %s (check its credentials and access)", self.key, error)
            await self._set_state(SourceState.FAILING, last_error=str(error))
            return None
        self.not_before = self.clock() + delay
        state = SourceState.SLEEPING if error.kind is FailureKind.RATE_LIMIT else SourceState.BACKING_OFF
        log.warning("%s: %s; next try in %.1f s", self.key, error, delay)
        await self._set_state(
            state, last_error=str(error), next_try=datetime.now(UTC) + timedelta(seconds=delay)
        )
        return delay

    async def _sleep_until(self, seconds: float, why: str, pace: float = 0.0) -> bool:
        """Wait before the next request. A wait no longer than the source's own interval
        is the network pacing us (YouTube's pollingIntervalMillis on every page): that
        is collecting, not sleeping."""
        self.not_before = self.clock() + seconds
        if seconds >= 1 and seconds > pace:
            await self._set_state(
                SourceState.SLEEPING, detail=why, next_try=datetime.now(UTC) + timedelta(seconds=seconds)
            )
            return True
        return False

    async def run_stream(
        self, http: aiohttp.ClientSession, sleep: Callable[[float], object] = asyncio.sleep
    ) -> None:
        """Keep a streaming source connected: reconnect at once after a clean drop,
        back off after errors; a source that can also poll fills the gap first."""
        source = self.source
        assert hasattr(source, "stream")
        if hasattr(source, "track"):
            # Reposts, edits and deletes only apply to posts the source knows it matched.
            network = getattr(source, "network", None)
            known = await asyncio.to_thread(self.store.recent_uris, self.event, network=network)
            source.track(known)
        while not self.stopped:
            if not await self.leases.hold(self.key):
                await self._standby()
                await sleep(LEASE_RETRY)  # type: ignore[misc]
                continue
            if hasattr(source, "poll"):
                await self.poll_once(http)
            try:
                cursor = await asyncio.to_thread(self.store.cursor, self.key)
                await self._set_state(SourceState.COLLECTING)
                await source.stream(http, cursor, self.store_page)
                self.failures = 0
            except RETRYABLE as exc:
                delay = await self.failed(exc)
                if delay is not None:
                    await sleep(delay)  # type: ignore[misc]

    async def _standby(self) -> None:
        if self.state is not SourceState.STANDBY:
            await self._set_state(SourceState.STANDBY, detail="another instance collects this source")

    async def _set_state(self, state: SourceState, **fields: object) -> None:
        extra = getattr(self.source, "detail", None)  # e.g. YouTube's quota used today
        if extra:
            fields["detail"] = "; ".join(str(d) for d in (fields.get("detail"), extra) if d)
        self.state = state
        await asyncio.to_thread(
            functools.partial(self.store.set_source_state, self.event, self.key, state.value, **fields)  # type: ignore[arg-type]
        )


class Collector:
    """Every source of one event, scheduled; start and stop with the app or the CLI."""

    def __init__(
        self,
        store: Store,
        event: str,
        sources: list[PollingSource | StreamingSource],
        *,
        publish: Publish | None = None,
        leases: Leases | None = None,
    ) -> None:
        # Several app instances on one PostgreSQL database: each source runs in one of them.
        self.leases = leases or leases_for(store.url)
        self.runners = [SourceRunner(store, event, s, publish=publish, leases=self.leases) for s in sources]
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._http: aiohttp.ClientSession | None = None
        self._streams: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._http = http_session()
        for runner in self.runners:
            if hasattr(runner.source, "stream"):
                self._streams.append(asyncio.create_task(runner.run_stream(self._http), name=runner.key))
            else:
                self.scheduler.add_job(
                    runner.poll_once,
                    "interval",
                    seconds=runner.source.interval,  # type: ignore[union-attr]
                    args=[self._http],
                    id=runner.key,
                    next_run_time=datetime.now(UTC),
                    # A poll still draining pages when the next is due is not doubled up.
                    max_instances=1,
                    coalesce=True,
                )
        self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for task in self._streams:
            task.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)
        for runner in self.runners:
            runner.stopped = True
        if self._http is not None:
            await self._http.close()
        await self.leases.close()
