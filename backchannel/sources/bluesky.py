"""Bluesky, live from a Jetstream instance: a `StreamingSource`.

One websocket to `{endpoint}/subscribe` asking for posts and reposts; the hashtag
filter runs here (Jetstream cannot filter by tag), on each post's tag facets and
`tags` (`backchannel.core.bluesky`). Around it:

- Cursor: the `time_us` of the last event handled, stored with the messages it
  produced. A reconnect asks for events from that time less `rewind` seconds, as the
  Jetstream README advises for gapless playback; the replayed events are stored once
  (the at-uri is unique per event), so rewinding costs a little work and loses nothing.
- Batching: events are handed to the sink as one `Page` every `flush_interval`
  seconds or `flush_events` events, whichever comes first. Storing runs while the
  next batch is read; a second batch due while the first is still being stored waits
  for it, so a slow store slows reading instead of piling up batches.
- Authors: events carry DIDs only. Handles come from the appview's
  `app.bsky.actor.getProfiles` (25 actors a call) when a batch is flushed, through a
  bounded cache that `identity` events keep current. When the appview fails, the DID
  stands in for the handle (bsky.app links work with either) and the appview is left
  alone for a while.
- Reposts, edits and deletes are kept only for posts this source matched, which it
  remembers in a bounded LRU (`tracked`): Bluesky's firehose carries every repost and
  delete on the network, and nearly all of them concern other posts. A new process
  starts with an empty LRU unless the runner seeds it (`track`).

- A malformed event, or one the normaliser fails on for any reason (a bug), is
  rejected on its own (the runner logs it) and the stream goes on: one bad event
  never loses the batch around it nor ends the connection.

This module does not store, schedule or back off: the runner (`backchannel.jobs`) does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidHandshake, InvalidStatus

from backchannel.core import bluesky as core
from backchannel.core.backoff import rate_limit, retry_after
from backchannel.core.bluesky import Commit, Identity, Profile
from backchannel.core.models import Message, Network
from backchannel.errors import ConfigError, PayloadError
from backchannel.eventfile import EventFile, SourceType, register
from backchannel.sources.base import USER_AGENT, Page, Sink, UpstreamError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "wss://jetstream2.us-east.bsky.network"
DEFAULT_APPVIEW = "https://public.api.bsky.app"
# getProfiles takes at most 25 actors (lexicon app.bsky.actor.getProfiles, `maxLength`).
PROFILES_PER_CALL = 25
# A profile lookup that hangs must not hold a batch for the session's 30 s.
PROFILE_TIMEOUT = 5.0
# After the appview fails, use DIDs for this long rather than asking again at every
# batch; a 429's reset time, when it sends one, replaces it.
PROFILE_PAUSE = 30.0


class LRU:
    """A bounded mapping that forgets the least recently used key first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: str) -> Any:
        return self._items.pop(key, None)


class Profiles:
    """DID -> profile, resolved through the appview in batches and cached."""

    def __init__(self, appview: str, size: int) -> None:
        self.appview = appview.rstrip("/")
        self.cache = LRU(size)
        self.requests = 0  # calls made to the appview, for tests and the benchmark
        self._paused_until = 0.0

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def get(self, did: str) -> Profile | None:
        return self.cache.get(did)  # type: ignore[no-any-return]

    def identity(self, event: Identity) -> None:
        """An identity event: a new handle for a DID we know, or a reason to ask again."""
        known = self.cache.get(event.did)
        if known is None:
            return  # not an author of ours: caching it would only push ours out
        if event.handle:
            self.cache.put(event.did, Profile(event.handle, known.display_name))
        else:
            self.cache.pop(event.did)

    async def resolve(self, http: aiohttp.ClientSession, dids: Iterable[str]) -> None:
        missing = sorted({d for d in dids if d not in self.cache})
        for i in range(0, len(missing), PROFILES_PER_CALL):
            if self._now() < self._paused_until:
                return
            await self._fetch(http, missing[i : i + PROFILES_PER_CALL])

    async def _fetch(self, http: aiohttp.ClientSession, dids: list[str]) -> None:
        url = f"{self.appview}/xrpc/app.bsky.actor.getProfiles?" + urlencode([("actors", d) for d in dids])
        self.requests += 1
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=PROFILE_TIMEOUT)) as response:
                body = await response.read()
                if response.status != 200:
                    now = datetime.now(UTC)
                    wait = rate_limit(response.headers, now).reset_in if response.status == 429 else None
                    wait = wait or retry_after(response.headers, now) or PROFILE_PAUSE
                    self._pause(f"HTTP {response.status}", wait)
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._pause(f"{type(exc).__name__}: {exc}", PROFILE_PAUSE)
            return
        try:
            views = orjson.loads(body).get("profiles")
        except (orjson.JSONDecodeError, AttributeError):
            views = None
        if not isinstance(views, list):
            self._pause("answer without profiles", PROFILE_PAUSE)
            return
        for view in views:
            found = core.profile_from_view(view)
            if found:
                self.cache.put(*found)
        for did in dids:
            if did not in self.cache:
                # Deleted or taken down: the appview will not know it next time either.
                self.cache.put(did, Profile(did, ""))

    def _pause(self, why: str, seconds: float) -> None:
        log.warning("Bluesky profiles: %s; authors shown by DID for %.0f s", why, seconds)
        self._paused_until = self._now() + seconds


@dataclass(slots=True)
class _Batch:
    """Events read since the last flush, not yet turned into messages."""

    posts: list[tuple[Commit, bool]] = field(default_factory=list)  # (commit, is an edit)
    reposts: list[Commit] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    events: int = 0
    cursor: int = 0
    # (uri, its value in `tracked` before this batch changed it): if the batch is never
    # stored, `tracked` is put back, so the events read again after a reconnect are
    # judged as they were the first time (not taken for posts already stored).
    undo: list[tuple[str, str | None]] = field(default_factory=list)


class BlueskySource:
    """The posts and reposts of the event's hashtags on Bluesky, through Jetstream."""

    network = Network.BLUESKY

    def __init__(
        self,
        hashtags: Iterable[str],
        *,
        key: str = "bluesky",
        endpoint: str = DEFAULT_ENDPOINT,
        appview: str = DEFAULT_APPVIEW,
        flush_events: int = 1000,
        flush_interval: float = 0.5,
        keepalive: float = 30.0,
        rewind: float = 5.0,
        tracked: int = 50_000,
        profiles: int = 20_000,
    ) -> None:
        self.wanted = frozenset(t.lstrip("#").lower() for t in hashtags)
        if not self.wanted:
            raise ConfigError("a Bluesky source needs at least one hashtag")
        if not endpoint.startswith(("wss://", "ws://")):
            raise ConfigError(f"the Jetstream endpoint must be a ws:// or wss:// URL, got {endpoint!r}")
        if not appview.startswith(("https://", "http://")):
            raise ConfigError(f"the appview must be an http(s) URL, got {appview!r}")
        self.key = key
        self.endpoint = endpoint.rstrip("/").removesuffix("/subscribe")
        self.flush_events = flush_events
        self.flush_interval = flush_interval
        # Jetstream is never quiet for long: the public instances carry thousands of
        # events a second. This long without a frame means the stream is dead even if
        # TCP has not noticed: reconnect (DESIGN.md, "Upstream manners").
        self.keepalive = keepalive
        self.rewind_us = int(rewind * 1_000_000)
        self.tracked = LRU(tracked)  # at-uri of a stored post or repost -> its cid
        self.profiles = Profiles(appview, profiles)
        self.events = 0  # events handled since this source was built
        self.matched = 0
        self._bug_logged = False

    def url(self, cursor: str | None) -> str:
        params = [("wantedCollections", c) for c in core.COLLECTIONS]
        position = _cursor(cursor)
        if position is not None:
            params.append(("cursor", str(max(1, position - self.rewind_us))))
        return f"{self.endpoint}/subscribe?{urlencode(params)}"

    def track(self, uris: Iterable[str]) -> None:
        """Remember posts stored before this source started, so their reposts and
        deletes are still applied."""
        for uri in uris:
            self.tracked.put(uri, "")

    async def stream(self, http: aiohttp.ClientSession, cursor: str | None, sink: Sink) -> None:
        url = self.url(cursor)
        log.info("%s: connecting to %s", self.key, url)
        try:
            async with connect(
                url,
                user_agent_header=USER_AGENT,
                # Bursts (a replay after a reconnect) queue here while a batch is stored.
                max_queue=1024,
                close_timeout=2,
                compression=None,
            ) as ws:
                await _Connection(self, http, sink, ws).run()
        except InvalidStatus as exc:
            status = exc.response.status_code
            wait = retry_after(exc.response.headers, datetime.now(UTC))
            raise UpstreamError(
                f"Jetstream refused the connection: HTTP {status}", status=status, upstream_wait=wait
            ) from exc
        except (OSError, InvalidHandshake) as exc:
            raise UpstreamError(f"cannot connect to Jetstream: {type(exc).__name__}: {exc}") from exc

    # -- one event, synchronously: this runs 2,000 times a second ------------------------

    def take(self, frame: str | bytes, batch: _Batch) -> None:
        try:
            self._take(frame, batch)
        except PayloadError as exc:
            batch.rejected.append(f"Jetstream event {_excerpt(frame)}: {exc}")
        except Exception as exc:
            # A frame the normaliser did not foresee (a bug) is rejected like a malformed
            # one: one bad event must never end the stream nor lose the batch around it.
            batch.rejected.append(f"Jetstream event {_excerpt(frame)}: {self._unexpected(exc)}")

    def _unexpected(self, exc: Exception) -> str:
        """What to say about a normaliser bug; its traceback is logged the first time."""
        if not self._bug_logged:
            self._bug_logged = True
            log.error("%s: the Bluesky normaliser failed on an event", self.key, exc_info=exc)
        return f"unexpected {type(exc).__name__}: {exc}"

    def _take(self, frame: str | bytes, batch: _Batch) -> None:
        event = core.parse_event(frame)
        self.events += 1
        batch.events += 1
        if event.time_us > batch.cursor:
            batch.cursor = event.time_us
        if type(event) is Commit:
            if event.collection == core.POST:
                self._post(event, batch)
            elif event.collection == core.REPOST:
                self._repost(event, batch)
        elif type(event) is Identity:
            self.profiles.identity(event)

    def _post(self, commit: Commit, batch: _Batch) -> None:
        uri = commit.uri
        if commit.operation == "delete":
            if (known := self.tracked.pop(uri)) is not None:
                batch.undo.append((uri, known))
                batch.deletes.append(uri)
            return
        known = self.tracked.get(uri)
        assert commit.record is not None
        if known is None:
            if core.matches(commit.record, self.wanted):
                # A create, or an update that added one of our tags: a new message.
                self.matched += 1
                batch.undo.append((uri, None))
                self.tracked.put(uri, commit.cid or "")
                batch.posts.append((commit, False))
        elif commit.operation == "update" and known != commit.cid:
            # An edit of a stored post stays an edit even if it dropped our tag.
            batch.undo.append((uri, known))
            self.tracked.put(uri, commit.cid or "")
            batch.posts.append((commit, True))
        # Otherwise a post seen again after a rewind: already stored.

    def _repost(self, commit: Commit, batch: _Batch) -> None:
        # Un-reposts (a repost's delete) are not applied: the store cannot delete a
        # repost row yet (Store.apply_upstream looks the row up through the listing,
        # which leaves reposts out), and its repost count would still include it.
        if commit.operation == "create":
            subject = core.subject_uri(commit.record)
            if subject is not None and self.tracked.get(subject) is not None:
                batch.reposts.append(commit)

    def undo(self, batch: _Batch) -> None:
        """Forget what a batch that was never stored did to `tracked`."""
        for uri, before in reversed(batch.undo):
            if before is None:
                self.tracked.pop(uri)
            else:
                self.tracked.put(uri, before)

    # -- a batch, asynchronously ------------------------------------------------------------

    async def page(self, http: aiohttp.ClientSession, batch: _Batch) -> Page:
        """The batch as a page: authors resolved, messages built."""
        dids = {c.did for c, _ in batch.posts} | {c.did for c in batch.reposts}
        for commit, _ in batch.posts:
            with contextlib.suppress(Exception):  # a post whose facets fail is rejected below
                dids.update(core.mention_dids(commit.record))
        if dids:
            await self.profiles.resolve(http, dids)
        messages: list[Message] = []
        edits: list[Message] = []
        rejected = list(batch.rejected)
        for commit, is_edit in batch.posts:
            try:
                handles = self._handles(core.mention_dids(commit.record))
                message = core.post_message(commit, self.profiles.get(commit.did), handles)
            except Exception as exc:  # malformed (PayloadError), or a normaliser bug: one post lost
                rejected.append(
                    f"{commit.uri}: {exc if isinstance(exc, PayloadError) else self._unexpected(exc)}"
                )
                self.tracked.pop(commit.uri)
                continue
            (edits if is_edit else messages).append(message)
        for commit in batch.reposts:
            try:
                messages.append(core.repost_message(commit, self.profiles.get(commit.did)))
            except Exception as exc:
                rejected.append(
                    f"{commit.uri}: {exc if isinstance(exc, PayloadError) else self._unexpected(exc)}"
                )
        return Page(
            messages=messages,
            edits=edits,
            deletes=batch.deletes,
            rejected=rejected,
            cursor=str(batch.cursor) if batch.cursor else None,
        )

    def _handles(self, dids: list[str]) -> Mapping[str, str]:
        handles = {}
        for did in dids:
            profile = self.profiles.get(did)
            if profile is not None and profile.handle != core.INVALID_HANDLE:
                handles[did] = profile.handle
        return handles


class _Connection:
    """One websocket's life: read frames, flush batches, notice silence."""

    def __init__(
        self, source: BlueskySource, http: aiohttp.ClientSession, sink: Sink, ws: ClientConnection
    ) -> None:
        self.source = source
        self.http = http
        self.sink = sink
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.batch = _Batch()
        self.flushing: asyncio.Task[None] | None = None
        self.unconfirmed: deque[_Batch] = deque()  # handed to the sink, not yet stored
        self.flushed_at = self.last_frame = self.loop.time()
        self.received = 0
        self.silent = False

    async def run(self) -> None:
        source = self.source
        ticker = asyncio.create_task(self._tick())
        dropped: ConnectionClosedError | None = None
        try:
            try:
                async for frame in self.ws:
                    self.received += 1
                    self.last_frame = now = self.loop.time()
                    source.take(frame, self.batch)
                    if (
                        self.batch.events >= source.flush_events
                        or now - self.flushed_at >= source.flush_interval
                    ):
                        await self._flush()
            except ConnectionClosedError as exc:
                dropped = exc
            finally:
                ticker.cancel()
            # What arrived before the stream ended is stored before reconnecting.
            await self._flush()
            if self.flushing is not None:
                await self.flushing
        except BaseException:
            if self.flushing is not None and not self.flushing.done():
                self.flushing.cancel()
            # Newest first, so a post created in one batch and edited in the next is
            # put back to "never seen".
            for batch in [self.batch, *reversed(self.unconfirmed)]:
                source.undo(batch)
            raise
        why = (
            f"no message for {source.keepalive:g} s"
            if self.silent
            else f"dropped: {dropped}"
            if dropped
            else "closed by the server"
        )
        if not self.received:
            # Nothing came through this connection: back off (the runner's network rule)
            # rather than reconnect at once into the same failure.
            raise UpstreamError(f"Jetstream stream ended before any event ({why})")
        # A stream that delivered and then ended is reconnected at once (the runner
        # does so when stream() returns), from the stored cursor.
        log.info(
            "%s: Jetstream stream ended after %d events (%s); reconnecting", source.key, self.received, why
        )

    async def _flush(self) -> None:
        """Hand the batch over; wait first if the previous one is still being stored."""
        if self.flushing is not None:
            await self.flushing  # also raises what a failed flush raised
        self._start_flush()

    def _start_flush(self) -> None:
        self.flushed_at = self.loop.time()
        if not self.batch.events and not self.batch.rejected:
            return
        batch, self.batch = self.batch, _Batch()
        self.unconfirmed.append(batch)
        previous = self.flushing
        self.flushing = asyncio.ensure_future(self._deliver(previous, batch))

    async def _deliver(self, previous: asyncio.Task[None] | None, batch: _Batch) -> None:
        if previous is not None:
            await previous  # pages reach the sink in order, so the cursor only moves forward
        await self.sink(await self.source.page(self.http, batch))
        stored = self.unconfirmed.popleft()
        assert stored is batch

    async def _tick(self) -> None:
        source = self.source
        period = min(source.flush_interval, source.keepalive / 4)
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            flushing = self.flushing
            failed = (
                flushing is not None and flushing.done() and not flushing.cancelled() and flushing.exception()
            )
            if failed or now - self.last_frame >= source.keepalive:
                # A batch that could not be stored ends the connection (run() raises its
                # error); so does silence. Abort, not close: a dead peer would never
                # answer a closing handshake.
                self.silent = not failed
                self.ws.transport.abort()
                return
            idle = self.flushing is None or self.flushing.done()
            if idle and now - self.flushed_at >= source.flush_interval:
                # A quiet moment: what is pending should not wait for the next frame.
                self._start_flush()


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        log.warning("ignoring a stored Bluesky cursor that is not a time in µs: %r", cursor[:40])
        return None


def _excerpt(frame: str | bytes) -> str:
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


def _setting(settings: Mapping[str, Any], name: str, default: str) -> str:
    value = settings.get(name, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"bluesky: {name} must be a URL")
    return value


def build(event_file: EventFile, settings: Mapping[str, Any]) -> BlueskySource:
    return BlueskySource(
        event_file.hashtags,
        key=f"bluesky:{event_file.name}",
        endpoint=_setting(settings, "endpoint", DEFAULT_ENDPOINT),
        appview=_setting(settings, "appview", DEFAULT_APPVIEW),
    )


register(
    SourceType(
        network="bluesky",
        summary="Bluesky posts and reposts with the event's hashtags, live from Jetstream",
        settings={
            "endpoint": f"Jetstream instance (default {DEFAULT_ENDPOINT})",
            "appview": f"appview that resolves authors' handles (default {DEFAULT_APPVIEW})",
        },
        build=build,
    )
)
