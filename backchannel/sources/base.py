"""The small interface every live source implements, and the errors it raises.

A source knows one network's API and nothing else: it turns responses into `Page`s
and failures into `UpstreamError`s. Storing, cursors, scheduling, backoff and state
reporting belong to the runner (`backchannel.jobs`).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import aiohttp

from backchannel.core.backoff import FailureKind, classify
from backchannel.core.models import Message
from backchannel.errors import BackchannelError

USER_AGENT = "backchannel/0.1 (+https://github.com/backchannel/backchannel; event backchannel collector)"


class SourceState(enum.StrEnum):
    COLLECTING = "collecting"
    SLEEPING = "sleeping"  # until a rate-limit window resets
    BACKING_OFF = "backing off"  # after an error, until the next try
    FAILING = "failing"  # stopped: needs a person (bad credentials, forbidden)
    STOPPED = "stopped"
    STANDBY = "standby"  # another app instance holds this source's lease


@dataclass(slots=True)
class Page:
    """What one request (or one stream event) produced.

    `cursor` is the position to resume from after this page; it is stored in the same
    transaction as `messages`. `more` asks for the next page at once. `wait` is a
    pause the network asked for before the next request (YouTube's pollingIntervalMillis,
    a spent rate-limit window).
    """

    messages: list[Message] = field(default_factory=list)
    cursor: str | None = None
    edits: list[Message] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    more: bool = False
    wait: float | None = None
    rejected: list[str] = field(default_factory=list)  # malformed records, logged and skipped
    # (from, to, reason): messages of this span were missed and cannot be fetched again.
    gap: tuple[datetime, datetime, str] | None = None


class UpstreamError(BackchannelError):
    """A request that failed: the status (None for network errors) and any wait the
    server asked for (Retry-After, a rate-limit reset)."""

    def __init__(
        self, message: str, *, status: int | None = None, upstream_wait: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.upstream_wait = upstream_wait

    @property
    def kind(self) -> FailureKind:
        return classify(self.status)


class SourceFinished(UpstreamError):
    """The upstream has nothing more to give, ever (a live chat that ended): the runner
    stops the source and shows it as stopped, not failing."""


class PollingSource(Protocol):
    """A source read by polling: the runner calls `poll` with the stored cursor."""

    key: str  # unique and stable: it names the stored cursor
    interval: float  # seconds between polls

    async def poll(self, http: aiohttp.ClientSession, cursor: str | None) -> Page: ...


Sink = Callable[[Page], Awaitable[None]]


class StreamingSource(Protocol):
    """A source read from a stream (websocket). `stream` returns or raises when the
    stream ends; the runner reconnects, first calling `backfill` where the network
    has history, so a disconnect loses nothing."""

    key: str

    async def stream(self, http: aiohttp.ClientSession, cursor: str | None, sink: Sink) -> None: ...


def http_session(timeout: float = 30.0) -> aiohttp.ClientSession:
    # Every request identifies us; a request that hangs is a network failure after 30 s.
    return aiohttp.ClientSession(
        headers={"User-Agent": USER_AGENT}, timeout=aiohttp.ClientTimeout(total=timeout)
    )
