"""The replay feeder: an archived session fed through the live pipeline.

Messages are released at their original pace divided by `speed` (`speed=0`: as
fast as possible). The clock is injected so pacing can be tested without waiting.
A paced replay sorts the session by time first (archives such as Mastodon dumps
are newest first); an unpaced one streams the file in its own order, so a huge
archive never has to fit in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from backchannel.core.models import Message
from backchannel.pipeline import Pipeline


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def replay_offsets(messages: list[Message], speed: float) -> list[float]:
    """Seconds after the replay's start at which each message is released."""
    if speed < 0:
        raise ValueError("speed must be >= 0")
    if not messages or speed == 0:
        return [0.0] * len(messages)
    first = messages[0].created_at
    return [max(0.0, (m.created_at - first).total_seconds() / speed) for m in messages]


async def replay(
    messages: Iterable[Message],
    pipeline: Pipeline,
    *,
    speed: float = 1.0,
    clock: Clock | None = None,
    on_message: Callable[[Message], None] | None = None,
) -> int:
    """Feed `messages` through `pipeline`; return how many were taken.

    Cancellation (Ctrl-C) stops at once; everything taken so far is flushed to the
    store before the cancellation propagates.
    """
    clock = clock or RealClock()
    taken = 0
    try:
        if speed == 0:
            for message in messages:
                await pipeline.put(message)
                taken += 1
                if on_message:
                    on_message(message)
            return taken
        ordered = sorted(messages, key=lambda m: m.created_at)
        start = clock.monotonic()
        for message, offset in zip(ordered, replay_offsets(ordered, speed), strict=True):
            wait = start + offset - clock.monotonic()
            if wait > 0:
                # Whatever is due is stored and published before we sleep.
                await pipeline.flush()
                await clock.sleep(wait)
            await pipeline.put(message)
            taken += 1
            if on_message:
                on_message(message)
        return taken
    finally:
        await pipeline.flush()
