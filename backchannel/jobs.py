"""Running live sources: APScheduler for polls, a reconnect loop for streams.

Job bodies are plain async functions. A runner owns one source of one event: it
reads the stored cursor, stores each page together with the cursor after it (one
transaction), publishes what was new, and records its state (collecting, sleeping
until a rate limit resets, backing off after an error, failing) for `backchannel
status` and the dashboard. One source failing never stops the others.

A runner ends only when it is stopped (or its source is finished, or refused for
good: bad credentials). Every other exception -- an upstream error, the store away
(PostgreSQL restarting), a bug or a payload nobody foresaw -- is logged, recorded as
the source's state and retried with backoff (`failure_of` says which rule). Recording
the state needs the store too: while the store is away the state is kept in memory
and written as soon as the store answers again, so the state shown is never
"collecting" for a runner that is not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import sqlalchemy.exc
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from backchannel.core.backoff import FailureKind, retry_delay
from backchannel.core.models import Change, StoredMessage
from backchannel.leases import RETRY as LEASE_RETRY
from backchannel.leases import Leases, LeaseUnavailable, LocalLeases, leases_for
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

# How long `Collector.stop` lets a poll in progress finish its page before cancelling it,
# and waits for the store to take the sources' last states: a shutdown is never held
# up for longer by an upstream or a database that does not answer.
STOP_GRACE = 5.0

Publish = Callable[[str, list[StoredMessage | Change]], None]


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed try, as the backoff rules see it."""

    message: str
    kind: FailureKind
    upstream_wait: float | None = None
    unexpected: bool = False  # a bug or an unforeseen payload: logged with its traceback


def _store_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, LeaseUnavailable):
        return True
    if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


def failure_of(exc: BaseException) -> Failure:
    """Which backoff rule (core.backoff) a failed try gets."""
    if isinstance(exc, UpstreamError):
        return Failure(str(exc), exc.kind, exc.upstream_wait)
    if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
        return Failure(f"{type(exc).__name__}: {exc}".rstrip(": "), FailureKind.NETWORK)
    if _store_unavailable(exc):
        # The store is a network peer: a PostgreSQL restart or failover takes seconds, so
        # the network rule (250 ms more each try, at most 16 s) brings the source back
        # soon after it. The page and its cursor were not committed: the retry reads
        # them again.
        cause = getattr(exc, "orig", None) or exc
        first_line = (str(cause).strip().splitlines() or [""])[0]
        return Failure(
            f"the store is unavailable ({type(cause).__name__}: {first_line})", FailureKind.NETWORK
        )
    # A bug, or a payload no one foresaw: the same input will likely fail the same way,
    # so back off as after a server error (5 s, doubling to 320 s) rather than retry at
    # the network's pace and flood the log.
    return Failure(f"unexpected {type(exc).__name__}: {exc} (see the log)", FailureKind.HTTP, unexpected=True)


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
        self._unsaved: tuple[SourceState, dict[str, object]] | None = None  # the state not yet written
        self._unsaved_logged = False
        self._traceback_logged: str | None = None  # the unexpected error last logged in full
        self._tracked = False

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
        """One scheduled poll: drain every page available now. Never raises (except
        on cancellation): a failure is recorded and the next poll waits for its backoff."""
        if self.stopped or self.clock() < self.not_before:
            return
        try:
            await self._save_state()
            if not await self.leases.hold(self.key):
                await self._standby()
                return
            slept = await self._drain(http)
        except Exception as exc:
            await self.failed(exc)
            return
        self._succeeded()
        if not slept:
            await self._set_state(SourceState.COLLECTING)

    async def _drain(self, http: aiohttp.ClientSession) -> bool:
        """Poll page after page until the source has nothing more now; whether the
        network asked for a pause (the runner is then sleeping, not collecting)."""
        source = self.source
        assert hasattr(source, "poll")
        cursor = await asyncio.to_thread(self.store.cursor, self.key)
        while not self.stopped:
            page = await source.poll(http, cursor)
            await self.store_page(page)
            cursor = page.cursor if page.cursor is not None else cursor
            if page.wait:
                return await self._sleep_until(
                    page.wait, "the network asked to wait", pace=getattr(source, "interval", 0.0)
                )
            if not page.more:
                break
        return False

    def _succeeded(self) -> None:
        self.failures = 0
        self._traceback_logged = None

    async def failed(self, exc: BaseException) -> float | None:
        """Record a failure and decide when to try again (None: not again). Never
        raises: recording the state may fail too (the store away), and the runner
        must go on."""
        if isinstance(exc, SourceFinished):
            self.stopped = True
            log.info("%s finished: %s", self.key, exc)
            await self._set_state(SourceState.STOPPED, detail=str(exc))
            return None
        failure = failure_of(exc)
        self.failures += 1
        delay = retry_delay(failure.kind, self.failures, upstream_wait=failure.upstream_wait, rng=self.rng)
        if delay is None:
            self.stopped = True
            log.error("%s stopped: %s (check its credentials and access)", self.key, failure.message)
            await self._set_state(SourceState.FAILING, last_error=failure.message)
            return None
        self.not_before = self.clock() + delay
        if failure.unexpected and self._traceback_logged != failure.message:
            # The traceback once; the same error again is a line, until the source recovers.
            self._traceback_logged = failure.message
            log.error("%s: %s; next try in %.1f s", self.key, failure.message, delay, exc_info=exc)
        else:
            log.warning("%s: %s; next try in %.1f s", self.key, failure.message, delay)
        state = SourceState.SLEEPING if failure.kind is FailureKind.RATE_LIMIT else SourceState.BACKING_OFF
        await self._set_state(
            state, last_error=failure.message, next_try=datetime.now(UTC) + timedelta(seconds=delay)
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
        back off after errors; a source that can also poll fills the gap first.
        Returns only once the runner is stopped."""
        while not self.stopped:
            delay = await self._stream_once(http)
            if delay:
                await sleep(delay)  # type: ignore[misc]

    async def _stream_once(self, http: aiohttp.ClientSession) -> float | None:
        """One connection, from the stored cursor until the stream ends; how long to
        wait before the next (None or 0: at once)."""
        source = self.source
        assert hasattr(source, "stream")
        try:
            await self._save_state()
            if not await self.leases.hold(self.key):
                await self._standby()
                return LEASE_RETRY
            if hasattr(source, "track") and not self._tracked:
                # Reposts, edits and deletes only apply to posts the source knows it matched.
                network = getattr(source, "network", None)
                source.track(await asyncio.to_thread(self.store.recent_uris, self.event, network=network))
                self._tracked = True
            if hasattr(source, "poll") and await self._drain(http):
                return max(0.0, self.not_before - self.clock())
            cursor = await asyncio.to_thread(self.store.cursor, self.key)
            await self._set_state(SourceState.COLLECTING)
            await source.stream(http, cursor, self.store_page)
        except Exception as exc:
            return await self.failed(exc)
        self._succeeded()
        return None

    async def _standby(self) -> None:
        if self.state is not SourceState.STANDBY:
            await self._set_state(SourceState.STANDBY, detail="another instance collects this source")

    async def _set_state(self, state: SourceState, **fields: object) -> None:
        """The runner's state, now in memory, and in the store when it answers."""
        extra = getattr(self.source, "detail", None)  # e.g. YouTube's quota used today
        if extra:
            fields["detail"] = "; ".join(str(d) for d in (fields.get("detail"), extra) if d)
        self.state = state
        if self._unsaved is not None:  # messages counted in a state never written still count
            fields["collected"] = int(fields.get("collected", 0)) + int(self._unsaved[1].get("collected", 0))  # type: ignore[call-overload]
        self._unsaved = (state, fields)
        await self._save_state()

    async def _save_state(self) -> None:
        """Write the state kept in memory, if any; a store still away keeps it there."""
        if self._unsaved is None:
            return
        pending = self._unsaved
        state, fields = pending
        try:
            await asyncio.to_thread(
                functools.partial(self.store.set_source_state, self.event, self.key, state.value, **fields)  # type: ignore[arg-type]
            )
        except Exception as exc:
            if not self._unsaved_logged:
                self._unsaved_logged = True
                log.warning(
                    "%s: cannot record its state (%s) in the store: %s; kept until the store is back",
                    self.key,
                    state.value,
                    failure_of(exc).message,
                )
            return
        if self._unsaved is pending:  # not replaced by a newer state meanwhile
            self._unsaved = None
        self._unsaved_logged = False


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
        self._polls: set[asyncio.Task[object]] = set()

    async def start(self) -> None:
        self._http = http_session()
        for runner in self.runners:
            if hasattr(runner.source, "stream"):
                self._streams.append(asyncio.create_task(self._stream(runner), name=runner.key))
            else:
                self.scheduler.add_job(
                    self._poll,
                    "interval",
                    seconds=runner.source.interval,  # type: ignore[union-attr]
                    args=[runner],
                    id=runner.key,
                    next_run_time=datetime.now(UTC),
                    # A poll still draining pages when the next is due is not doubled up.
                    max_instances=1,
                    coalesce=True,
                )
        self.scheduler.start()

    async def _poll(self, runner: SourceRunner) -> None:
        task = asyncio.current_task()
        assert task is not None and self._http is not None
        self._polls.add(task)
        try:
            await runner.poll_once(self._http)
        finally:
            self._polls.discard(task)

    async def _stream(self, runner: SourceRunner) -> None:
        """Run a stream until the runner is stopped. run_stream itself catches every
        failure of a try; an exception reaching here is a bug in the runner, logged with
        its traceback and then run again, after the backoff of an unexpected error."""
        assert self._http is not None
        while not runner.stopped:
            try:
                await runner.run_stream(self._http)
            except Exception as exc:
                log.error("%s: the stream runner failed; restarting it", runner.key, exc_info=exc)
                delay = await runner.failed(exc)
                if delay is not None:
                    await asyncio.sleep(delay)

    async def stop(self) -> None:
        for runner in self.runners:
            runner.stopped = True  # a poll in progress ends after its current page
        if self._polls:
            await asyncio.wait(list(self._polls), timeout=STOP_GRACE)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for task in self._streams:
            task.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)
        # A runner that stops is no longer collecting, and says so (a standby one never was;
        # a failing one keeps its error). A store that does not answer is not waited for.
        stopping = [
            r._set_state(SourceState.STOPPED, detail="the collector stopped")
            for r in self.runners
            if r.state not in (SourceState.STANDBY, SourceState.FAILING, SourceState.STOPPED)
        ]
        if stopping:
            await asyncio.wait([asyncio.ensure_future(c) for c in stopping], timeout=STOP_GRACE)
        if self._http is not None:
            await self._http.close()
        await self.leases.close()
