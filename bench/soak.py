"""Soak: 1,000 wall clients on one real server for 30 minutes; memory bounded, nothing lost.

    .venv/bin/python bench/soak.py [--minutes 30] [--clients 1000] [--rate 20] [--stalled 10]
                                   [--churn 300] [--store sqlite|postgresql://...] [--redis URL]

The server is the real application (`create_app`: store, pipeline, hub, the public
wall's websocket route) in a process of its own, bench/scale_out.py's server: it
creates `rate` messages a second, writes each tick's to the store (a fresh SQLite
file, or a fresh PostgreSQL database beside `--store`) and publishes what was stored,
in-process or through the Redis stream with `--redis`. Publishing runs in one-minute
stretches, back to back, for `minutes`.

The clients, in this process, are `clients` wall websockets that read everything,
and `stalled` more that never read. A reading client leaves now and then (after an
exponentially distributed time, `churn` seconds on average), stays away for up to
two seconds, and comes back with its epoch and last seq: the server replays what it
missed from the store. Every seq must reach every reading client exactly once,
counting resumes: "lost" counts the seqs a client never got, "duplicates" the ones it
got twice, "resets" the resumes the server refused. A stalled client does the
handshake and then reads nothing; after `STALL_SECONDS` its socket must have been cut
by the server (4008 past its byte budget, or the heartbeat), and it connects again.

The server's resident memory (VmRSS) is read every few seconds, and once more at
the end after a full collection of cyclic garbage (what `backchannel serve`'s
collector, tuned to run rarely, would free in its own time: aiohttp's objects of
every connection that ended, some 50 per connection). Memory is bounded when that
last figure stays under the bound: the RSS after the first minute of publishing
(connections, caches and buffers warmed), plus each stalled client's byte budget
(`backchannel.hub.MAX_BYTES`), plus a tenth of that warm figure for the allocator's
slack. Printed: messages, deliveries, lost, duplicates, resumes, RSS start/peak/end,
latency p50/p99 (live items only, from the moment a message was due to its receipt),
CPU of the server, of this process and of the machine; the last line is
"soak: OK" or "soak: FAILED (reasons)", and the exit status says the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backchannel.core import wire
from backchannel.hub import HEARTBEAT, MAX_BYTES
from bench.common import machine, served
from bench.hub_fanout import (
    CONNECT_CONCURRENCY,
    machine_busy_seconds,
    maybe_uvloop,
    percentile,
    raise_fd_limit,
)
from bench.idle_memory import rss_kib
from bench.scale_out import (
    Case,
    delete_stream,
    fresh_database,
    get_json,
    parse_items,
    server_commands,
    shared_secret,
)

# Publishing runs in stretches of this length: the RSS and CPU are read between them,
# and no single request outlives aiohttp's default client timeout.
STRETCH_SECONDS = 60.0
# A stalled client must be cut within the heartbeat and its pong timeout (or sooner,
# by its byte budget); it is checked a little after that, then connects again.
STALL_SECONDS = HEARTBEAT * 1.5 + 10
# How long the reading clients get, once publishing stops, to hold the last seq.
DRAIN_SECONDS = 15.0
# A handshake slower than this counts as failed (the server is overloaded).
CONNECT_TIMEOUT = 30.0
# How often the server's RSS is read.
SAMPLE_SECONDS = 5.0
# Linux TCP_INFO's first byte is the socket's state; 1 is ESTABLISHED.
TCP_ESTABLISHED = 1


@dataclass
class Reader:
    """One reading client's account of what it got, over all its connections."""

    last: int = 0  # the event is fresh: its seqs start at 1
    epoch: str | None = None
    received: int = 0
    duplicates: int = 0
    skipped: int = 0
    connects: int = 0
    resumes: int = 0
    resets: int = 0
    cut: int = 0  # closed by the server with a code other than 1000/1001, or a failed connect


@dataclass
class Stalled:
    connects: int = 0
    cut: int = 0  # the server had closed or reset the socket by the check
    still_open: int = 0  # ESTABLISHED at the check: the server kept a client that never reads
    failed: int = 0  # handshakes that failed or timed out


@dataclass
class Run:
    readers: list[Reader]
    stalled: Stalled = field(default_factory=Stalled)
    latencies: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    endings: Counter[str] = field(default_factory=Counter)  # how cut connections ended


async def read_wall(session: aiohttp.ClientSession, url: str, reader: Reader, run: Run, churn: float) -> None:
    """Follow the wall, leaving and resuming now and then, until the run stops."""
    loop = asyncio.get_running_loop()
    while not run.stop.is_set():
        query = wire.resume_query(reader.epoch, reader.last if reader.epoch else None)
        replaying = reader.epoch is not None  # items before "recovered" are a replay
        leave_at = loop.time() + random.expovariate(1 / churn) if churn else None
        reader.connects += 1
        try:
            async with session.ws_connect(url, params=query, decode_text=False, max_msg_size=0) as ws:
                try:
                    async with asyncio.timeout_at(leave_at):
                        async for msg in ws:
                            if msg.type is aiohttp.WSMsgType.TEXT:
                                replaying = take(msg.data, reader, run, replaying)
                except TimeoutError:
                    pass  # time to leave for a moment
                else:
                    if ws.close_code not in (aiohttp.WSCloseCode.OK, aiohttp.WSCloseCode.GOING_AWAY):
                        reader.cut += 1
                        run.endings[str(ws.close_code)] += 1
        except (aiohttp.ClientError, OSError) as exc:
            reader.cut += 1
            run.endings[type(exc).__name__] += 1
        if not run.stop.is_set():
            # Away for a moment, so that the resume has something to replay.
            await asyncio.sleep(random.uniform(0, 2))


def take(data: bytes, reader: Reader, run: Run, replaying: bool) -> bool:
    """Count one frame; whether the items that follow are still a resume's replay."""
    if data.startswith(wire.ITEMS_PREFIX):
        now = time.time()
        for seq, due in parse_items(data):
            if seq <= reader.last:
                reader.duplicates += 1
                continue
            reader.skipped += seq - reader.last - 1
            reader.last = seq
            reader.received += 1
            if not replaying:
                run.latencies.append(now - due)
        return replaying
    frame = orjson.loads(data)
    match frame["type"]:
        case "hello":
            reader.epoch = frame["epoch"]
        case "recovered":
            reader.resumes += 1
            return False
        case "reset":
            reader.resets += 1
            return False
    return replaying


async def stall(url: str, run: Run) -> None:
    """Connect, read nothing, check the server cut us after STALL_SECONDS; again."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    loop = asyncio.get_running_loop()
    while not run.stop.is_set():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A tiny receive buffer, so the stall reaches the server after a few KiB.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, url_address(url))
            # max_queue=1: the client stops reading the socket once a frame waits
            # unread; no pings of its own, and none answered.
            ws = await connect(
                url,
                sock=sock,
                max_queue=1,
                ping_interval=None,
                close_timeout=0.1,
                open_timeout=CONNECT_TIMEOUT,
            )
        except (OSError, WebSocketException):
            sock.close()
            run.stalled.failed += 1
            await asyncio.sleep(1)  # a loaded server: no tight loop of handshakes
            continue
        run.stalled.connects += 1
        try:
            await asyncio.wait_for(run.stop.wait(), STALL_SECONDS)
            return
        except TimeoutError:
            pass
        finally:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
            if not run.stop.is_set():
                if state == TCP_ESTABLISHED:
                    run.stalled.still_open += 1
                else:
                    run.stalled.cut += 1
            ws.transport.abort()


def url_address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


async def connect_readers(
    session: aiohttp.ClientSession, url: str, run: Run, churn: float
) -> list[asyncio.Task[None]]:
    """Start every reading client, CONNECT_CONCURRENCY at a time; return once all have hello."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks: list[asyncio.Task[None]] = []

    async def one(reader: Reader) -> None:
        async with gate:
            tasks.append(asyncio.create_task(read_wall(session, url, reader, run, churn)))
            # Polling the reader's own state: a bench, not a test, and hello has no event.
            while reader.epoch is None:
                if tasks[-1].done() or reader.cut:
                    raise SystemExit("a client could not connect")
                await asyncio.sleep(0.05)

    await asyncio.gather(*(one(r) for r in run.readers))
    return tasks


@dataclass
class Memory:
    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, KiB)

    def sample(self) -> int:
        kib = rss_kib(self.pid)
        self.samples.append((time.monotonic(), kib))
        return kib

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)

    def peak(self) -> int:
        return max(kib for _, kib in self.samples)


async def soak(args: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{port}/ws/wall/{args.event}"
    run = Run(readers=[Reader() for _ in range(args.clients)])
    memory = Memory(pid)
    rss_start = memory.sample()
    # limit=0: one pooled connection per websocket, no cap.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        t_connect = time.monotonic()
        readers = await connect_readers(session, url, run, args.churn)
        connect_seconds = time.monotonic() - t_connect
        stallers = [asyncio.create_task(stall(url, run)) for _ in range(args.stalled)]
        watcher = asyncio.create_task(memory.watch(run.stop))
        rss_connected = memory.sample()

        server0 = (await get_json(f"http://127.0.0.1:{port}/bench/cpu"))["cpu"]
        cpu0, busy0, t0 = time.process_time(), machine_busy_seconds(), time.monotonic()
        total_seconds = args.minutes * 60
        published = scheduled = 0
        behind = 0.0
        rss_warm: int | None = None
        while (left := total_seconds - (time.monotonic() - t0)) > 0.5:
            stretch = await get_json(
                f"http://127.0.0.1:{port}/bench/run",
                "POST",
                rate=args.rate,
                seconds=min(STRETCH_SECONDS, left),
            )
            published += stretch["published"]
            scheduled += stretch["scheduled"]
            behind = max(behind, stretch["publisher_behind_max"])
            if rss_warm is None:
                rss_warm = memory.sample()
            print(
                f"  {(time.monotonic() - t0) / 60:5.1f} min: {published:,} published, "
                f"server RSS {memory.sample() / 1024:.0f} MiB, {run.stalled.cut} stalled clients cut",
                flush=True,
            )
        publish_seconds = time.monotonic() - t0
        server_cpu = (await get_json(f"http://127.0.0.1:{port}/bench/cpu"))["cpu"] - server0
        load_cpu, busy = time.process_time() - cpu0, machine_busy_seconds() - busy0

        # A fresh event numbers its messages from 1: every reader must reach `published`.
        deadline = time.monotonic() + DRAIN_SECONDS
        while min(r.last for r in run.readers) < published and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        run.stop.set()
        rss_end = memory.sample()
        collected = await get_json(f"http://127.0.0.1:{port}/bench/gc", "POST")
        for task in [*readers, *stallers, watcher]:
            task.cancel()
        await asyncio.gather(*readers, *stallers, watcher, return_exceptions=True)

    assert rss_warm is not None
    bound = rss_warm + args.stalled * MAX_BYTES // 1024 + rss_warm // 10
    lat = sorted(run.latencies)
    readers_ = run.readers
    return {
        "connect_seconds": connect_seconds,
        "publish_seconds": publish_seconds,
        "scheduled": scheduled,
        "published": published,
        "publisher_behind_max": behind,
        "deliveries": sum(r.received for r in readers_),
        "expected": published * len(readers_),
        "lost": sum(max(0, published - r.received) for r in readers_),
        "duplicates": sum(r.duplicates for r in readers_),
        "resumes": sum(r.resumes for r in readers_),
        "resets": sum(r.resets for r in readers_),
        "cut": sum(r.cut for r in readers_),
        "endings": dict(run.endings),
        "connects": sum(r.connects for r in readers_),
        "stalled": run.stalled.__dict__,
        "rss_start": rss_start,
        "rss_connected": rss_connected,
        "rss_warm": rss_warm,
        "rss_peak": memory.peak(),
        "rss_end": rss_end,
        "rss_collected": collected["rss_kib"],
        "garbage_objects": collected["collected"],
        "rss_bound": bound,
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": lat[-1] if lat else float("nan"),
        "server_cpu": server_cpu / publish_seconds,
        "load_cpu": load_cpu / publish_seconds,
        "machine_busy": busy / publish_seconds,
    }


def verdict(r: dict[str, Any]) -> list[str]:
    """What went wrong, if anything."""
    problems = []
    if r["lost"]:
        problems.append(f"{r['lost']:,} deliveries lost")
    if r["duplicates"]:
        problems.append(f"{r['duplicates']:,} duplicates")
    if r["resets"]:
        problems.append(f"{r['resets']:,} resumes refused")
    if r["published"] < r["scheduled"]:
        problems.append(f"the publisher fell behind ({r['published']:,} of {r['scheduled']:,})")
    if r["stalled"]["still_open"]:
        problems.append(f"{r['stalled']['still_open']} stalled clients not cut in {STALL_SECONDS:.0f} s")
    if r["rss_collected"] > r["rss_bound"]:
        problems.append("memory not bounded")
    return problems


def report(args: argparse.Namespace, store: str, r: dict[str, Any]) -> None:
    mib = 1024
    print(
        f"clients {args.clients:,} reading (+{args.stalled} stalled), {args.rate:g} messages/s, "
        f"{r['publish_seconds'] / 60:.1f} min, store {store}, fan-out "
        f"{'Redis stream' if args.redis else 'in-process'}; connected in {r['connect_seconds']:.1f} s"
    )
    print(
        f"messages {r['published']:,} (of {r['scheduled']:,} due); deliveries {r['deliveries']:,} of "
        f"{r['expected']:,}; lost {r['lost']:,}, duplicates {r['duplicates']:,}; resumes {r['resumes']:,} "
        f"(refused {r['resets']}), connections {r['connects']:,}, cut by the server {r['cut']} {r['endings'] or ''}"
    )
    s = r["stalled"]
    print(
        f"stalled clients: {s['connects']:,} connections, {s['cut']:,} cut by the server within "
        f"{STALL_SECONDS:.0f} s, {s['still_open']} still open, {s['failed']} handshakes failed"
    )
    print(
        f"server RSS: start {r['rss_start'] / mib:.0f} MiB, {args.clients:,} connected "
        f"{r['rss_connected'] / mib:.0f} MiB, after the first minute {r['rss_warm'] / mib:.0f} MiB, "
        f"peak {r['rss_peak'] / mib:.0f} MiB, end {r['rss_end'] / mib:.0f} MiB, after a full collection "
        f"{r['rss_collected'] / mib:.0f} MiB ({r['garbage_objects']:,} cyclic garbage objects freed); "
        f"bound {r['rss_bound'] / mib:.0f} MiB: memory bounded: {'yes' if r['rss_collected'] <= r['rss_bound'] else 'NO'}"
    )
    print(
        f"latency due->receipt (live items): p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, "
        f"max {r['max'] * 1000:.0f} ms; publisher behind at most {r['publisher_behind_max'] * 1000:.0f} ms"
    )
    print(
        f"CPU: server {r['server_cpu'] * 100:.0f}% of a core, clients {r['load_cpu'] * 100:.0f}%, "
        f"whole machine {r['machine_busy'] * 100:.0f}% of {os.cpu_count()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--clients", type=int, default=1000, help="reading wall clients")
    parser.add_argument("--rate", type=float, default=20, help="messages created a second")
    parser.add_argument("--stalled", type=int, default=10, help="wall clients that never read")
    parser.add_argument(
        "--churn", type=float, default=300, help="mean seconds between a client's reconnects (0: never)"
    )
    parser.add_argument("--store", default="sqlite", help="'sqlite' (a temporary file) or a PostgreSQL URL")
    parser.add_argument("--redis", default="", help="fan out through this Redis (default: in-process)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.clients < 1 or args.rate <= 0:
        parser.error("--minutes, --clients and --rate must be positive")
    raise_fd_limit(args.clients + args.stalled + 256)
    print(f"machine: {machine()}; clients on {maybe_uvloop(True)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="backchannel-soak-") as tmp:
        base = f"sqlite:///{tmp}/soak.db" if args.store == "sqlite" else args.store
        store_url, drop = fresh_database(base)
        from backchannel.store import Store

        args.event = f"e{uuid.uuid4().hex[:8]}"
        with Store(store_url) as store:
            store.event(args.event)
        channel = f"bench-soak:{args.event}:"
        commands = server_commands(
            Case("backchannel", 1, args.clients, args.rate), store_url, args.redis, args.event, channel
        )
        try:
            with served(*commands, env=shared_secret()) as [server]:
                r = asyncio.run(soak(args, server.port, server.process.pid))
        finally:
            drop()
            delete_stream(args.redis, channel)
    report(args, store_url.split("://")[0], r)
    problems = verdict(r)
    print("soak: OK" if not problems else f"soak: FAILED ({'; '.join(problems)})", flush=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
