"""Hub fan-out: N websocket clients, M messages/s, latency from publish to receipt.

    .venv/bin/python bench/hub_fanout.py [--clients 1000] [--rate 100] [--seconds 10]
                                         [--window 0.03] [--pace 1] [--uvloop client|none|server|both]

The hub and its aiohttp websocket server run in a subprocess, the load generator (N
aiohttp client websockets) in this process, so the two do not share a GIL; both on
127.0.0.1 of this machine. Once every client has its hello, the server publishes
`rate` dashboard items a second for `seconds` seconds, each stamped with the time it
was *due* (not the time it went out, so a publisher that falls behind counts as
latency). Printed: items delivered per second, loss (items some client never got),
duplicates, latency p50/p90/p99/max from due time to receipt, the server's and the
load generator's CPU use, and the whole machine's (anything beyond the two is another
process competing for the cores: rerun then).

The load generator is the bottleneck on a 2-core machine: it reads 1,000 sockets in
one process. It therefore runs on uvloop when that is installed (`pip install
uvloop`; it halves its CPU per frame), and reads only each item's seq and due time
rather than decoding every item (`--full-parse` decodes them all).

The server has no store: clients connect without a resume point, so the backlog
reader only reports the head. Resume costs are measured by the tests, not here.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backchannel.core import wire
from backchannel.core.models import Message, Network, StoredMessage
from backchannel.hub import COALESCE_WINDOW, DASHBOARD, PACE, Backlog, Hub, websocket_response
from bench.common import machine, serve_until_stdin_closes, served

EVENT = "bench"
# How long the load generator waits for the last items after the publisher stops:
# anything later than this counts as lost.
DRAIN_TIMEOUT = 5.0
# Connecting 1,000 clients at once overflows the listen backlog; 100 at a time does not.
CONNECT_CONCURRENCY = 100


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process on this machine so far (Linux /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def maybe_uvloop(wanted: bool) -> str:
    if not wanted:
        return "asyncio"
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return "asyncio (uvloop not installed)"
    uvloop.install()
    return "uvloop"


# -- server (subprocess) -----------------------------------------------------------------


def template_item() -> wire.Item:
    """A realistic dashboard item: a tweet-sized message with the usual fields."""
    message = Message(
        network=Network.X,
        network_id="1",
        uri="https://x.com/i/status/1",
        author_handle="joningham",
        author_name="Jon Ingham",
        text="social learning is all about connections not tools #slz great point @joningham "
        "see http://example.com/article agree the webinar was brilliant",
        created_at=datetime(2010, 6, 22, 12, tzinfo=UTC),
        permalink="https://x.com/joningham/status/1",
        hashtags=("slz",),
        mentions=("joningham",),
        links=("http://example.com/article",),
    )
    item = wire.message_item(StoredMessage(id=1, seq=1, message=message))
    del item["seq"]  # each published copy puts its own first
    return item


async def serve(port: int, window: float, pace: float) -> None:
    hub = Hub(coalesce_window=window, pace=pace)
    last_seq = 0

    async def backlog(event: str, *, after_seq: int | None, limit: int) -> Backlog:
        return Backlog("bench-epoch", last_seq)

    async def ws_route(request: web.Request) -> web.StreamResponse:
        ws = websocket_response()
        await ws.prepare(request)
        resume = wire.parse_resume(request.query)
        await hub.attach(request, ws, event=EVENT, channel=DASHBOARD, resume=resume, backlog=backlog)
        return ws

    async def run_route(request: web.Request) -> web.Response:
        nonlocal last_seq
        rate = float(request.query["rate"])
        seconds = float(request.query["seconds"])
        total = int(rate * seconds)
        template = template_item()
        stats_before = (hub.stats.frames, hub.stats.flushes)
        # time.monotonic(), not loop.time(): uvloop's loop time is cached per iteration,
        # and a schedule computed from it drifts by the length of a busy iteration.
        cpu0, t0, wall0 = time.process_time(), time.monotonic(), time.time()
        published = 0
        behind = 0.0
        while published < total:
            # Publish everything due by now; when the loop is late, several go at once.
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            if due > published:
                items = []
                for i in range(published, due):
                    last_seq += 1
                    items.append({"seq": last_seq, "sent_at": wall0 + i / rate, **template, "id": last_seq})
                behind = max(behind, time.time() - (wall0 + (due - 1) / rate))
                hub.publish(EVENT, items)
                published = due
            if published < total:
                # A timer may fire a little early; the loop above then publishes nothing.
                await asyncio.sleep(max(0.0, t0 + published / rate - time.monotonic()))
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        return web.json_response(
            {
                "published": published,
                "first_seq": last_seq - published + 1,
                "last_seq": last_seq,
                "elapsed": elapsed,
                "cpu": cpu,
                "frames": hub.stats.frames - stats_before[0],
                "flushes": hub.stats.flushes - stats_before[1],
                "dropped": hub.stats.dropped,
                "window": hub.stats.window,
                "subscribers": hub.subscribers(EVENT),
                "publisher_behind_max": behind,
                "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )

    async def cpu_route(request: web.Request) -> web.Response:
        return web.json_response({"cpu": time.process_time()})

    app = web.Application()
    app.router.add_get("/ws", ws_route)
    app.router.add_post("/run", run_route)
    app.router.add_get("/cpu", cpu_route)

    async def close_websockets(app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(close_websockets)
    await serve_until_stdin_closes(app, port)


# -- load generator ----------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    closed_early: int = 0
    frames: int = 0  # frames that carried items

    def take(self, index: int, last: int, items: list[tuple[int, float]], now: float) -> int:
        """Count one frame's (seq, due time) pairs for client `index`; return its new last seq."""
        self.frames += 1
        for seq, sent_at in items:
            if seq <= last:
                self.duplicates += seq == last
                self.out_of_order += seq < last
                continue
            last = seq
            self.received += 1
            self.latencies.append(now - sent_at)
        self.last_seqs[index] = last
        return last

    last_seqs: list[int] = field(default_factory=list)


# The load generator reads only what it measures: each item's seq and due time.
# Decoding every ~700-byte item with orjson would cost this process more than the hub
# costs the server (a dashboard decodes in its own browser); --full-parse does it anyway.
# The server puts "seq" and "sent_at" first in each item, so bytes.find (memchr fast)
# finds both; a regular expression scanning every byte costs as much as orjson.
_ITEM_START = b'{"seq":'
_SENT_AT = b',"sent_at":'


def seqs_and_times(data: bytes, full_parse: bool) -> list[tuple[int, float]]:
    if full_parse:
        return [(item["seq"], item["sent_at"]) for item in orjson.loads(data)["items"]]
    return stamped(data, _SENT_AT, b",")


def stamped(data: bytes, marker: bytes, end: bytes) -> list[tuple[int, float]]:
    """Each item's seq and the due time written after `marker` (up to `end`), in `data`."""
    found = []
    find = data.find
    start = find(_ITEM_START)
    while start >= 0:
        comma = find(b",", start)
        stamp = find(marker, comma) + len(marker)
        stop = find(end, stamp)
        found.append((int(data[start + len(_ITEM_START) : comma]), float(data[stamp:stop])))
        start = find(_ITEM_START, stop)
    return found


async def client(
    session: aiohttp.ClientSession,
    url: str,
    tally: Tally,
    index: int,
    ready: asyncio.Queue[int],
    parse: Callable[[bytes], list[tuple[int, float]]],
) -> None:
    async with session.ws_connect(url, decode_text=False, max_msg_size=0) as ws:
        last = 0
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            now = time.time()
            data = msg.data
            if not data.startswith(wire.ITEMS_PREFIX):
                frame = orjson.loads(data)
                if frame["type"] == "hello":
                    # Subscribed: from here on the client gets every item published.
                    last = frame["last_seq"]
                    await ready.put(index)
                continue
            last = tally.take(index, last, parse(data), now)
        if ws.close_code not in (None, aiohttp.WSCloseCode.OK, aiohttp.WSCloseCode.GOING_AWAY):
            tally.closed_early += 1


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


async def load(args: argparse.Namespace, port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    tally = Tally(last_seqs=[0] * args.clients)
    ready: asyncio.Queue[int] = asyncio.Queue()
    parse = functools.partial(seqs_and_times, full_parse=args.full_parse)
    # limit=0: one pooled connection per websocket, no cap.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect_one(i: int) -> None:
            async with gate:
                url = f"ws://127.0.0.1:{port}/ws"
                task = asyncio.create_task(client(session, url, tally, i, ready, parse))
                tasks.append(task)
                await ready.get()

        tasks: list[asyncio.Task[None]] = []
        t_connect = time.perf_counter()
        await asyncio.gather(*(connect_one(i) for i in range(args.clients)))
        connect_seconds = time.perf_counter() - t_connect
        for task in tasks:
            if task.done():
                task.result()  # a client that failed to connect fails the run

        cpu0, busy0 = time.process_time(), machine_busy_seconds()
        async with session.post(f"{base}/run", params={"rate": args.rate, "seconds": args.seconds}) as resp:
            run = await resp.json()
        last = run["last_seq"]
        deadline = time.monotonic() + DRAIN_TIMEOUT
        # Polling a counter (not a sleep as synchronisation): the bench only reports.
        while min(tally.last_seqs) < last and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        load_cpu = time.process_time() - cpu0
        busy = machine_busy_seconds() - busy0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return {
        "run": run,
        "connect_seconds": connect_seconds,
        **delivery_summary(tally, run["published"] * args.clients),
        "load_cpu": load_cpu,
        # The machine's CPU use over the same span, all processes and the kernel included:
        # what is left beyond the server and the load generator was someone else's.
        "machine_busy": busy,
    }


def delivery_summary(tally: Any, expected: int) -> dict[str, Any]:
    """What the clients received against what they should have: counts and latencies."""
    lat = sorted(tally.latencies)
    return {
        "expected": expected,
        "received": tally.received,
        "lost": expected - tally.received,
        "duplicates": tally.duplicates,
        "out_of_order": tally.out_of_order,
        "closed_early": tally.closed_early,
        "frames": tally.frames,
        "p50": percentile(lat, 50),
        "p90": percentile(lat, 90),
        "p99": percentile(lat, 99),
        "max": lat[-1] if lat else float("nan"),
    }


def report(args: argparse.Namespace, loop_name: str, r: dict[str, Any]) -> None:
    run = r["run"]
    elapsed = run["elapsed"]
    print(f"machine: {machine()}; event loops: {loop_name}")
    print(
        f"clients {args.clients:,}, rate {args.rate:g}/s, {args.seconds:g} s, window "
        f"{args.window * 1000:g} ms, pace {args.pace:g}; connected in {r['connect_seconds']:.1f} s"
    )
    print(
        f"published {run['published']:,} items in {elapsed:.2f} s; delivered {r['received']:,} of "
        f"{r['expected']:,} = {r['received'] / elapsed:,.0f} items/s to clients; "
        f"lost {r['lost']:,}, duplicates {r['duplicates']}, out of order {r['out_of_order']}, "
        f"dropped {run['dropped']}"
    )
    print(
        f"latency due->receipt: p50 {r['p50'] * 1000:.1f} ms, p90 {r['p90'] * 1000:.1f} ms, "
        f"p99 {r['p99'] * 1000:.1f} ms, max {r['max'] * 1000:.1f} ms"
    )
    print(
        f"frames sent {run['frames']:,} ({run['frames'] / max(1, args.clients) / elapsed:.1f}/s per client, "
        f"{r['received'] / max(1, run['frames']):.1f} items per frame; last window "
        f"{run['window'] * 1000:.1f} ms); publisher behind at most "
        f"{run['publisher_behind_max'] * 1000:.1f} ms"
    )
    print(
        f"CPU: server {run['cpu'] / elapsed * 100:.0f}% of a core (RSS {run['rss_mib']:.0f} MiB), "
        f"load generator {r['load_cpu'] / elapsed * 100:.0f}%; whole machine "
        f"{r['machine_busy'] / elapsed * 100:.0f}% of {os.cpu_count()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100, help="items published per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--window", type=float, default=COALESCE_WINDOW, help="the hub's coalesce window, s")
    parser.add_argument(
        "--pace", type=float, default=PACE, help="the hub's pace (window / last fan-out time)"
    )
    parser.add_argument(
        "--uvloop",
        choices=("none", "client", "server", "both"),
        default="client",
        help="which process runs on uvloop, if installed (default: the load generator only)",
    )
    parser.add_argument("--full-parse", action="store_true", help="decode every frame with orjson")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds > 30:
        parser.error("keep runs at 30 s or less")
    raise_fd_limit(args.clients + 256)
    if args.serve:
        maybe_uvloop(args.uvloop in ("server", "both"))
        asyncio.run(serve(args.port, args.window, args.pace))
        return

    loop_name = f"server {(args.uvloop in ('server', 'both') and 'uvloop') or 'asyncio'}, load generator "
    loop_name += maybe_uvloop(args.uvloop in ("client", "both"))
    command = [
        sys.executable,
        __file__,
        "--serve",
        "--window",
        str(args.window),
        "--pace",
        str(args.pace),
        "--uvloop",
        args.uvloop,
    ]
    with served(command) as [server]:
        result = asyncio.run(load(args, server.port))
    report(args, loop_name, result)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
