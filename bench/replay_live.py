"""Replay end to end: an archive of 1,000,000 messages through store, Redis and hub to clients.

    .venv/bin/python bench/replay_live.py [--count 1000000] [--clients 2]
                                          [--store sqlite|postgresql://...] [--redis URL | --no-redis]
                                          [--writer server|process]

A JSONL session of `count` synthetic messages is replayed unpaced with the replay
feeder and pipeline (batches of 1,000 written to the store, each published through
the Redis stream) and fanned out by the hub of one instance of the real application
(bench/scale_out.py's server) to `clients` public wall websockets in this process.

`--writer server` (default): the instance replays it itself, as `backchannel serve`
runs a replay, so writing and fan-out share one process and one core.
`--writer process`: `backchannel replay --speed 0` in a process of its own writes
and publishes (BACKCHANNEL_REDIS), while the instance only reads the stream and fans
out, as a deployment runs its writer beside its web instances.

The clock runs from the start of the replay until every client holds the last
message: messages/s end to end. Also printed: how long the store writes took (the
writer's own figure: with `--writer process` the command's whole run, start-up
included), CPU of the server, Redis and this process, and the server's peak memory.
The targets are those of plain import (bench/ingest.py): 50,000/s into SQLite,
30,000/s into PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
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
    server0 = (await get_json(f"http://127.0.0.1:{port}/bench/cpu"))["cpu"]
    cpu0, busy0, redis0, t0 = (
        time.process_time(),
        machine_busy_seconds(),
        redis_cpu(args.redis),
        time.monotonic(),
    )
    if args.writer == "server":
        replayed = await get_json(f"http://127.0.0.1:{port}/bench/replay", "POST", path=str(session_path))
    else:
        replayed = await replay_in_a_process(args, event, session_path)
    await asyncio.gather(*watchers)
    elapsed = max(done) - t0
    return {
        "server_cpu": (await get_json(f"http://127.0.0.1:{port}/bench/cpu"))["cpu"] - server0,
        "replayed": replayed,
        "elapsed": elapsed,
        "load_cpu": time.process_time() - cpu0,
        "machine_busy": machine_busy_seconds() - busy0,
        "redis_cpu": redis_cpu(args.redis) - redis0,
    }


async def replay_in_a_process(args: argparse.Namespace, event: str, session_path: Path) -> dict[str, Any]:
    """`backchannel replay --speed 0` as a deployment's writer runs it; its figures."""
    env = {
        **os.environ,
        "BACKCHANNEL_DB": args.store_url,
        "BACKCHANNEL_REDIS": args.redis,
        "BACKCHANNEL_REDIS_PREFIX": args.channel,
    }
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backchannel", "replay", str(session_path), "--event", event, "--speed", "0",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"backchannel replay failed ({proc.returncode}): {out.decode()}")
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"taken": args.count, "elapsed": elapsed, "cpu": cpu.ru_utime + cpu.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--store", default="sqlite", help="'sqlite' (a temporary file) or a PostgreSQL URL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", action="store_true", help="in-process fan-out")
    parser.add_argument(
        "--writer",
        choices=("server", "process"),
        default="server",
        help="who replays: the serving instance, or `backchannel replay` in its own process",
    )
    args = parser.parse_args()
    if args.no_redis:
        args.redis = ""
    if args.writer == "process" and not args.redis:
        parser.error("--writer process publishes through Redis: drop --no-redis")
    print(f"machine: {machine()}; this process on {maybe_uvloop(True)}")
    with tempfile.TemporaryDirectory(prefix="backchannel-replay-") as tmp:
        session_path = write_session(Path(tmp) / "session.jsonl", args.count)
        base = f"sqlite:///{tmp}/bench.db" if args.store == "sqlite" else args.store
        store_url, drop = fresh_database(base)
        from backchannel.store import Store

        event = f"e{uuid.uuid4().hex[:8]}"
        with Store(store_url) as store:
            store.event(event)
        channel = args.channel = f"bench-replay:{event}:"
        args.store_url = store_url
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
    writer = "the serving instance" if args.writer == "server" else "`backchannel replay` in its own process"
    print(
        f"replayed {replayed['taken']:,} messages by {writer}: stored in {replayed['elapsed']:.2f} s "
        f"= {args.count / replayed['elapsed']:,.0f} messages/s ingest, on every client's wall "
        f"after {elapsed:.2f} s = {args.count / elapsed:,.0f} messages/s end to end"
    )
    writer_cpu = (
        "" if args.writer == "server" else f"writer {replayed['cpu'] / replayed['elapsed'] * 100:.0f}%, "
    )
    print(
        f"CPU: {writer_cpu}server {r['server_cpu'] / elapsed * 100:.0f}% of a core "
        f"(RSS {stats['rss_kib'] / 1024:.0f} MiB at the end), Redis {r['redis_cpu'] / elapsed * 100:.0f}%, "
        f"clients {r['load_cpu'] / elapsed * 100:.0f}%, whole machine {r['machine_busy'] / elapsed * 100:.0f}% "
        f"of {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
