"""Replay end to end: an archive of 1,000,000 messages through store, Redis and hub to clients.

    .venv/bin/python bench/replay_live.py [--count 1000000] [--clients 2]
                                          [--store sqlite|postgresql://...] [--redis URL | --no-redis]

One instance of the real application (bench/scale_out.py's server) replays a JSONL
session of `count` synthetic messages unpaced, with the replay feeder and pipeline
that `backchannel serve` uses: batches of 1,000 written to the store, each published
through the Redis stream, read back and fanned out by the hub to `clients` public
wall websockets in this process. The clock runs from the start of the replay until
every client holds the last message: messages/s end to end. Also printed: how long
the store writes alone took (the replay's own figure), CPU of the server, Redis and
this process, and the server's peak memory. The targets are those of plain import
(bench/ingest.py): 50,000/s into SQLite, 30,000/s into PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, served, write_session
from bench.hub_fanout import machine_busy_seconds, maybe_uvloop
from bench.scale_out import (
    Case,
    delete_stream,
    fresh_database,
    get_json,
    redis_cpu,
    server_commands,
    server_stats,
    shared_secret,
)

_SEQ = b'{"seq":'


async def watch(url: str, count: int, ready: asyncio.Event, done: list[float]) -> None:
    """Follow the wall until it holds seq `count`; note when."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, max_msg_size=0, decode_text=False) as ws,
    ):
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = msg.data
            at = data.rfind(_SEQ)
            if at < 0:
                ready.set()  # hello
                continue
            if int(data[at + len(_SEQ) : data.index(b",", at)]) >= count:
                done.append(time.monotonic())
                return
        raise RuntimeError(f"the wall closed before the last message (code {ws.close_code})")


async def run(args: argparse.Namespace, port: int, event: str, session_path: Path) -> dict[str, Any]:
    done: list[float] = []
    readies = [asyncio.Event() for _ in range(args.clients)]
    url = f"ws://127.0.0.1:{port}/ws/wall/{event}"
    watchers = [asyncio.create_task(watch(url, args.count, r, done)) for r in readies]
    await asyncio.gather(*(r.wait() for r in readies))
    cpu0, busy0, redis0, t0 = (
        time.process_time(),
        machine_busy_seconds(),
        redis_cpu(args.redis),
        time.monotonic(),
    )
    replayed = await get_json(f"http://127.0.0.1:{port}/bench/replay", "POST", path=str(session_path))
    await asyncio.gather(*watchers)
    elapsed = max(done) - t0
    return {
        "replayed": replayed,
        "elapsed": elapsed,
        "load_cpu": time.process_time() - cpu0,
        "machine_busy": machine_busy_seconds() - busy0,
        "redis_cpu": redis_cpu(args.redis) - redis0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--store", default="sqlite", help="'sqlite' (a temporary file) or a PostgreSQL URL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", action="store_true", help="in-process fan-out")
    args = parser.parse_args()
    if args.no_redis:
        args.redis = ""
    print(f"machine: {machine()}; this process on {maybe_uvloop(True)}")
    with tempfile.TemporaryDirectory(prefix="backchannel-replay-") as tmp:
        session_path = write_session(Path(tmp) / "session.jsonl", args.count)
        base = f"sqlite:///{tmp}/bench.db" if args.store == "sqlite" else args.store
        store_url, drop = fresh_database(base)
        from backchannel.store import Store

        event = f"e{uuid.uuid4().hex[:8]}"
        with Store(store_url) as store:
            store.event(event)
        channel = f"bench-replay:{event}:"
        commands = server_commands(
            Case("backchannel", 1, args.clients, 0), store_url, args.redis, event, channel
        )
        try:
            with served(*commands, env=shared_secret()) as [server]:
                r = asyncio.run(run(args, server.port, event, session_path))
                (stats,) = server_stats([server.port])
        finally:
            drop()
            delete_stream(args.redis, channel)
    replayed, elapsed = r["replayed"], r["elapsed"]
    print(
        f"store: {store_url.split('://')[0]}; fan-out: {'Redis stream' if args.redis else 'in-process'}; "
        f"{args.clients} wall clients"
    )
    print(
        f"replayed {replayed['taken']:,} messages: stored in {replayed['elapsed']:.2f} s, on every client's wall "
        f"after {elapsed:.2f} s = {args.count / elapsed:,.0f} messages/s end to end"
    )
    print(
        f"CPU: server {(replayed['cpu']) / replayed['elapsed'] * 100:.0f}% of a core while replaying "
        f"(RSS {stats['rss_kib'] / 1024:.0f} MiB at the end), Redis {r['redis_cpu'] / elapsed * 100:.0f}%, "
        f"clients {r['load_cpu'] / elapsed * 100:.0f}%, whole machine {r['machine_busy'] / elapsed * 100:.0f}% "
        f"of {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
