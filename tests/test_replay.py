from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from backchannel.core.models import Message, Network, StoredMessage
from backchannel.pipeline import Pipeline
from backchannel.sources.replay import replay, replay_offsets
from backchannel.store import Store

T0 = datetime(2010, 6, 22, 12, 0, tzinfo=UTC)


def msg(i: int, seconds: float) -> Message:
    return Message(
        network=Network.X,
        network_id=str(i),
        uri=f"https://x.com/i/status/{i}",
        author_handle="abi",
        author_name="Abi",
        text=f"tweet {i}",
        created_at=T0 + timedelta(seconds=seconds),
    )


class FakeClock:
    """A clock that advances only when slept on, recording every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_offsets_keep_gaps_divided_by_speed() -> None:
    messages = [msg(1, 0), msg(2, 10), msg(3, 40)]
    assert replay_offsets(messages, 1) == [0, 10, 40]
    assert replay_offsets(messages, 10) == [0, 1, 4]
    assert replay_offsets(messages, 0) == [0, 0, 0]
    with pytest.raises(ValueError):
        replay_offsets(messages, -1)


async def test_paced_replay_sleeps_the_original_gaps(store: Store) -> None:
    clock = FakeClock()
    published: list[list[StoredMessage]] = []
    pipeline = Pipeline(store, "slz", publish=lambda _e, added: published.append(added))
    # Out of order on purpose: a paced replay goes by time.
    messages = [msg(3, 40), msg(1, 0), msg(2, 10), msg(4, 40)]
    taken = await replay(messages, pipeline, speed=10, clock=clock)
    assert taken == 4
    assert clock.sleeps == [1.0, 3.0]
    # Each message is stored and published before the replay sleeps past it.
    assert [[m.message.network_id for m in batch] for batch in published] == [["1"], ["2"], ["3", "4"]]
    assert [m.seq for batch in published for m in batch] == [1, 2, 3, 4]


async def test_unpaced_replay_never_sleeps_and_batches(store: Store) -> None:
    clock = FakeClock()
    pipeline = Pipeline(store, "slz", batch_size=100)
    taken = await replay((msg(i, i * 60) for i in range(250)), pipeline, speed=0, clock=clock)
    assert taken == 250 and clock.sleeps == []
    assert store.count("slz") == 250


async def test_replaying_twice_stores_once(store: Store) -> None:
    messages = [msg(i, i) for i in range(20)]
    for _ in range(2):
        await replay(messages, Pipeline(store, "slz"), speed=0)
    assert store.count("slz") == 20


async def test_cancelled_replay_keeps_what_it_took(store: Store) -> None:
    clock_started = asyncio.Event()

    class SlowClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            clock_started.set()
            await asyncio.sleep(3600)

    pipeline = Pipeline(store, "slz", batch_size=1000)
    task = asyncio.create_task(
        replay([msg(1, 0), msg(2, 0), msg(3, 100)], pipeline, speed=1, clock=SlowClock())
    )
    await asyncio.wait_for(clock_started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [m.message.network_id for m in store.messages("slz")] == ["1", "2"]
