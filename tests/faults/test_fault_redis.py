"""Redis killed under a live deployment: two `backchannel serve` processes on one fresh
PostgreSQL database, wall clients on both, a `backchannel replay` process writing at
200 messages/s, and the suite's own Redis (`fault_redis`) killed mid-replay.

Issue 10, items 3 and 4: no client is left with a hole however long Redis is away (what
Redis lost is read back from the store), and `serve` exits within seconds of SIGTERM
whatever Redis does.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from deployment import Deployment, archive, deployment, on_the_wall
from services import Redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

CLIENTS = 20  # wall clients, half on each instance
RATE = 200  # messages/s replayed
AFTER = 3.0  # seconds of replay after Redis is back
# What a stopped `serve` may take to exit (issue 10, item 4).
EXIT_LIMIT = 5.0


@dataclass
class Wall:
    """One wall client: its hello, then every item it got, in arrival order."""

    hello: dict[str, Any]
    items: list[int] = field(default_factory=list)
    closed: int | None = None  # the close code, if the server closed it
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            frame = orjson.loads(message.data)
            assert frame["type"] == "items", frame  # no reset, no second hello
            self.items.extend(int(item["seq"]) for item in frame["items"])
            self.progress.set()
        self.closed = ws.close_code
        self.progress.set()

    async def until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while True:
                self.progress.clear()
                if done():
                    return
                await self.progress.wait()


@asynccontextmanager
async def walls(d: Deployment, count: int) -> AsyncIterator[list[Wall]]:
    """`count` wall clients, alternately on each instance, each read by its own task."""
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        clients: list[Wall] = []
        tasks: list[asyncio.Task[None]] = []
        for n in range(count):
            ws = await stack.enter_async_context(session.ws_connect(d.ws_url(n % len(d.ports))))
            hello = orjson.loads((await ws.receive(timeout=10)).data)
            assert hello["type"] == "hello", hello
            client = Wall(hello)
            clients.append(client)
            tasks.append(asyncio.create_task(client.read(ws)))
        try:
            yield clients
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def stall(server: Redis) -> Callable[[], None]:
    """Freeze the Redis process (SIGSTOP): connections stay open, nothing answers.
    Returns the function that thaws it."""
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("down_for", [2, 12, 60])
async def test_no_client_misses_a_seq_when_redis_is_down_mid_replay(
    tmp_path: Path, postgres_url: str, fault_redis: Redis, down_for: float
) -> None:
    # More messages than the test lasts: the replay is stopped (Ctrl-C) after the outage.
    count = int((down_for + 60) * RATE)
    async with (
        deployment(tmp_path, postgres_url, fault_redis.url) as d,
        walls(d, CLIENTS) as clients,
    ):
        heads = {c.hello["last_seq"] for c in clients}
        assert heads == {0}, heads  # an empty event: every client expects every seq
        path = archive(tmp_path / "live.jsonl", 1, count, every=1 / RATE)
        replay = await d.start_replay(path, speed=1.0)
        # Redis goes while the replay is under way and items reach the walls.
        await clients[0].until(lambda: len(clients[0].items) >= RATE, timeout=30)
        fault_redis.kill()
        await asyncio.sleep(down_for)  # the outage itself
        fault_redis.start()
        # Live again for a while, then the replay stops as Ctrl-C stops it (it stores and
        # sends what it took).
        await asyncio.sleep(AFTER)
        interrupted = time.monotonic()
        replay.send_signal(signal.SIGINT)
        assert replay.stdout is not None
        summary = (await asyncio.wait_for(replay.stdout.read(), 60)).decode()
        assert await asyncio.wait_for(replay.wait(), 10) in (0, 130), summary  # 130: stopped
        stopped = time.monotonic()
        expected = on_the_wall(postgres_url)
        assert len(expected) > (down_for + 1) * RATE / 2, summary  # it did replay meanwhile
        for n, client in enumerate(clients):
            try:
                await client.until(lambda c=client: bool(c.items) and c.items[-1] >= expected[-1], timeout=60)  # type: ignore[misc]
            except TimeoutError:
                raise AssertionError(
                    f"client {n} still waits for seq {expected[-1]}: {_difference(client.items, expected)}; "
                    f"last seen {client.items[-3:]}; {summary}"
                ) from None
        print(
            f"Redis down {down_for} s: {len(expected)} seqs replayed; the last of {CLIENTS} clients "
            f"had all of them {time.monotonic() - stopped:.1f} s after the replay stopped "
            f"({stopped - interrupted:.1f} s after Ctrl-C)"
        )
        for n, client in enumerate(clients):
            assert client.closed is None, f"client {n} was disconnected ({client.closed})"
            # Every seq exactly once, in order: no hole, no duplicate, no reconnect.
            assert client.items == expected, f"client {n}: {_difference(client.items, expected)}"


def _difference(got: list[int], expected: list[int]) -> str:
    missing = sorted(set(expected) - set(got))
    dup = len(got) - len(set(got))
    disorder = sum(1 for a, b in itertools.pairwise(got) if b <= a)
    return f"{len(missing)} missing (first {missing[:10]}), {dup} duplicates, {disorder} out of order"


async def _terminated_within(d: Deployment, instance: int) -> float:
    server = d.servers[instance]
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(server.wait(), EXIT_LIMIT * 3)
    except TimeoutError:
        raise AssertionError(f"serve did not exit within {EXIT_LIMIT * 3:.0f} s of SIGTERM") from None
    return time.monotonic() - started


@pytest.mark.parametrize("redis_state", ["up", "killed", "stalled"])
async def test_sigterm_during_a_replay_exits_within_seconds_whatever_redis_does(
    tmp_path: Path, postgres_url: str, fault_redis: Redis, redis_state: str
) -> None:
    thaw: Callable[[], None] | None = None
    async with (
        deployment(tmp_path, postgres_url, fault_redis.url, instances=1) as d,
        walls(d, 4) as clients,
    ):
        live = archive(tmp_path / "live.jsonl", 1, 20 * RATE, every=1 / RATE)
        replay = await d.start_replay(live, speed=1.0)
        try:
            await clients[0].until(lambda: len(clients[0].items) >= RATE, timeout=30)
            if redis_state == "killed":
                fault_redis.kill()
            elif redis_state == "stalled":
                thaw = stall(fault_redis)
            took = await _terminated_within(d, 0)
            print(f"SIGTERM with Redis {redis_state}: exited in {took:.2f} s")
            assert took < EXIT_LIMIT, f"serve took {took:.1f} s to exit after SIGTERM"
            assert d.servers[0].returncode == 0
            for client in clients:  # told "going away": they resume elsewhere
                await client.until(lambda c=client: c.closed is not None, timeout=5)  # type: ignore[misc]
                assert client.closed == 1001
        finally:
            if thaw is not None:
                thaw()
            replay.kill()
            await replay.wait()
