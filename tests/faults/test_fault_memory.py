"""Stalled wall clients against a real `backchannel serve`: cut in bounded time, memory bounded.

The server is the installed command in its own process (SQLite, fan-out through a
Redis of the test's own), so its resident memory is its own: VmRSS from /proc. This
process writes 8 KB messages at 100 a second through the pipeline and the Redis
stream, as `backchannel replay` does, to wall clients that read everything and to
wall clients that did the handshake and then never read again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest
from cryptography.fernet import Fernet
from services import Redis
from support import established, free_port, msg, stalled_websocket

from backchannel.fanout import RedisFanout
from backchannel.hub import MAX_BYTES
from backchannel.pipeline import Pipeline
from backchannel.store import Store

pytestmark = pytest.mark.redis

EVENT = "slz"
RATE = 100  # messages a second
TICK = 0.1  # written and published in batches of RATE * TICK
TEXT = 8000  # characters of each message's text
READERS = 3
STALLED = 4
WARMUP_SECONDS = 3.0
STALL_SECONDS = 20.0
# A stalled client holds the kernel's buffers (a few MiB on loopback) and then its
# 1 MiB budget: at 800 KB/s it is over within seconds, then cut after at most the
# close timeout (2 s). The heartbeat alone would take 30 s.
CUT_WITHIN = 15.0
# What the server may grow by while the stalled clients come and go: each one's
# budget, one batch and one frame in flight (twice the budget covers both), plus the
# allocator's slack and the caches a steady stream fills.
SLACK = 24 * 1024 * 1024
STARTUP = 30.0


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@asynccontextmanager
async def serving(db: str, redis_url: str, prefix: str) -> AsyncIterator[tuple[int, int]]:
    """`backchannel serve` on a free port: (port, pid) once it says it serves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env |= {
        "BACKCHANNEL_DB": db,
        "BACKCHANNEL_REDIS": redis_url,
        "BACKCHANNEL_REDIS_PREFIX": prefix,
        "BACKCHANNEL_SECRET": Fernet.generate_key().decode(),
    }
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backchannel", "serve", "--port", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert server.stdout is not None
    try:
        async with asyncio.timeout(STARTUP):
            while b"serving on" not in (line := await server.stdout.readline()):
                assert line, "backchannel serve exited before serving"
            # It says so at startup, a moment before it listens.
            while not await accepts(port):
                await asyncio.sleep(0.05)
        # Keep its output flowing, so that a full pipe never blocks it.
        drain = asyncio.create_task(server.stdout.read())
        yield port, server.pid
    finally:
        if server.returncode is None:
            server.terminate()
            await asyncio.wait_for(server.wait(), 20)
    print((await drain).decode()[-3000:])


async def read_wall(ws: aiohttp.ClientWebSocketResponse, seqs: list[int], hello: asyncio.Event) -> None:
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            continue
        frame = orjson.loads(message.data)
        if frame["type"] == "hello":
            hello.set()
        elif frame["type"] == "items":
            seqs.extend(item["seq"] for item in frame["items"])


async def test_stalled_wall_clients_are_cut_while_the_others_get_every_item_and_memory_stays_bounded(
    tmp_path: Path, fault_redis: Redis
) -> None:
    db = f"sqlite:///{tmp_path}/memory.db"
    with Store(db) as store:
        store.event(EVENT)
    prefix = f"backchannel-test:{uuid.uuid4().hex}:"
    store = Store(db, migrate=False)
    fanout = RedisFanout(fault_redis.url, stream_prefix=prefix)
    await fanout.start()
    pipeline = Pipeline(store, EVENT, publish=fanout.publish, batch_size=10_000)
    n = 0

    async def publish_for(seconds: float, each_tick: Callable[[], None] = lambda: None) -> None:
        """RATE messages a second of TEXT characters, a batch each TICK, for `seconds`."""
        nonlocal n
        t0 = time.monotonic()
        sent = ticks = 0
        while (elapsed := time.monotonic() - t0) < seconds:
            due = int(elapsed * RATE) + 1
            await pipeline.put_many(msg(n + i, f"{n + i} " + "x" * TEXT) for i in range(1, due - sent + 1))
            n, sent = (await pipeline.flush())[-1].seq, due
            each_tick()
            ticks += 1
            await asyncio.sleep(max(0.0, t0 + ticks * TICK - time.monotonic()))

    async with AsyncExitStack() as stack:
        stack.push_async_callback(fanout.close)
        stack.callback(store.close)
        port, pid = await stack.enter_async_context(serving(db, fault_redis.url, prefix))
        url = f"ws://127.0.0.1:{port}/ws/wall/{EVENT}"
        session = await stack.enter_async_context(aiohttp.ClientSession())
        readers: list[list[int]] = []
        tasks = []
        for _ in range(READERS):
            ws = await stack.enter_async_context(session.ws_connect(url))
            seqs: list[int] = []
            hello = asyncio.Event()
            tasks.append(asyncio.create_task(read_wall(ws, seqs, hello)))
            await asyncio.wait_for(hello.wait(), STARTUP)
            readers.append(seqs)

        # The readers alone first: the server's memory with a steady stream flowing.
        await publish_for(WARMUP_SECONDS)
        baseline = peak = rss(pid)

        stalled = [await stalled_websocket(port, f"/ws/wall/{EVENT}") for _ in range(STALLED)]
        for sock in stalled:
            stack.callback(sock.close)
        stalled_at = time.monotonic()
        cut_after: dict[int, float] = {}

        def check() -> None:
            nonlocal peak
            peak = max(peak, rss(pid))
            for k, sock in enumerate(stalled):
                if k not in cut_after and not established(sock):
                    cut_after[k] = time.monotonic() - stalled_at

        await publish_for(STALL_SECONDS, check)
        check()

        # Every reader holds every seq, exactly once, in order.
        async with asyncio.timeout(10):
            while any(len(seqs) < n for seqs in readers):
                await asyncio.sleep(0.05)
        for seqs in readers:
            assert seqs == list(range(1, n + 1))
        for task in tasks:
            task.cancel()

    bound = STALLED * 2 * MAX_BYTES + SLACK
    mib = 1024 * 1024
    print(
        f"RSS baseline {baseline / mib:.0f} MiB, peak {peak / mib:.0f} MiB (+{(peak - baseline) / mib:.1f}, "
        f"bound +{bound / mib:.0f}); {len(cut_after)} stalled clients cut after {sorted(round(t, 1) for t in cut_after.values())} s"
    )
    assert peak - baseline <= bound, "memory bounded by the stalled clients' budgets"
    assert len(cut_after) == STALLED, f"only {len(cut_after)} of {STALLED} stalled clients were cut"
    assert max(cut_after.values()) <= CUT_WITHIN, cut_after
