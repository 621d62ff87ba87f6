"""The public wall's snapshot under anonymous load (issue 10, item 14).

An event whose newest 20,000 messages come from a blocked author, and a small quiet
event beside it. Prints the time one snapshot of the spammed event takes to build (the
store's query, uncached), the time of `GET /api/wall/<event>` on it as clients see it,
then the quiet event's wall time while `--loopers` clients loop on the spammed one.

    python bench/wall_blocked.py [--db URL] [--blocked 20000] [--loopers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backchannel.core.models import Message
from backchannel.core.moderation import EventAction
from backchannel.core.record import message_from_record
from backchannel.server.app import create_app
from backchannel.store import Store
from bench.common import machine, synthetic_record


def message(i: int, author: str | None = None) -> Message:
    record = synthetic_record(i)
    return message_from_record(record | {"author_handle": author} if author else record)


def fill(store: Store, blocked: int) -> None:
    store.event("spammed")
    store.event("quiet")
    store.ingest("spammed", [message(i) for i in range(60)], want_rows=False)
    for start in range(60, 60 + blocked, 5000):
        batch = [message(i, "spammer") for i in range(start, min(start + 5000, 60 + blocked))]
        store.ingest("spammed", batch, want_rows=False)
    store.moderate_event("spammed", EventAction.BLOCK, "x:spammer", actor="bench")
    store.ingest("quiet", [message(i) for i in range(60)], want_rows=False)


async def timed(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.get(url) as resp:
        assert resp.status == 200, resp.status
        data = await resp.json()
        assert data["items"], "the wall found nothing to show"
    return time.perf_counter() - started


async def run(db: str, blocked: int, loopers: int, rounds: int) -> None:
    store = Store(db)
    fill(store, blocked)
    rules = store.wall_rules("spammed")
    builds = []
    for _ in range(rounds):
        started = time.perf_counter()
        store.wall("spammed", rules)
        builds.append(time.perf_counter() - started)
    runner = web.AppRunner(create_app(store))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}/api/wall"
    async with aiohttp.ClientSession() as http:
        alone = [await timed(http, f"{base}/spammed") for _ in range(rounds)]
        quiet = [await timed(http, f"{base}/quiet") for _ in range(rounds)]
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                await timed(http, f"{base}/spammed")

        tasks = [asyncio.create_task(loop()) for _ in range(loopers)]
        loaded = [await timed(http, f"{base}/quiet") for _ in range(rounds)]
        stop.set()
        await asyncio.gather(*tasks)
    await runner.cleanup()
    store.close()

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"

    print(machine())
    print(f"one wall snapshot built on {blocked:,} blocked-author messages: {ms(builds)}")
    print(f"/api/wall on {blocked:,} blocked-author messages: {ms(alone)}")
    print(f"/api/wall of a quiet event: {ms(quiet)}")
    print(f"/api/wall of the quiet event while {loopers} clients loop on the spammed one: {ms(loaded)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    parser.add_argument("--blocked", type=int, default=20_000)
    parser.add_argument("--loopers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "wall.db")
        asyncio.run(run(db, args.blocked, args.loopers, args.rounds))


if __name__ == "__main__":
    main()
