"""Idle memory: the server's RSS per idle wall websocket client.

    .venv/bin/python bench/idle_memory.py [--clients 1000] [--warmup 20]

The real application (`create_app` over a temporary SQLite store, event "bench")
serves in a subprocess on 127.0.0.1 (its port is printed); this process connects N
wall websockets (/ws/wall/bench), waits for each one's hello, and leaves them idle.
The server's resident set (VmRSS from /proc/PID/status) is read at start, after a
few warm-up clients (the first connection imports and builds things once: the wall
channel, its rules, code paths), and once all N are connected and have settled.
Printed: the three RSS figures and the KiB per idle client, counted from the
warm-up point (target: at most 50 KiB), and also from the very start.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, serve_until_stdin_closes, served
from bench.hub_fanout import CONNECT_CONCURRENCY, raise_fd_limit

EVENT = "bench"
TARGET_KIB = 50
# How long the clients sit idle before the last reading (buffers settle, heartbeats run).
SETTLE_SECONDS = 2.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- server (subprocess) -----------------------------------------------------------------


async def serve(db_dir: str) -> None:
    from backchannel.server.app import create_app
    from backchannel.server.security import SecuritySettings
    from backchannel.store import Store

    store = Store(f"sqlite:///{db_dir}/bench.db")
    store.event(EVENT)
    # Every client connects from 127.0.0.1: no socket caps (they are for hostile clients).
    app = create_app(store, security=SecuritySettings(max_sockets=10**6, max_sockets_per_address=0))
    gc.collect()
    try:
        await serve_until_stdin_closes(app)
    finally:
        store.close()


# -- clients -----------------------------------------------------------------------------


async def idle_client(
    session: aiohttp.ClientSession, url: str, ready: asyncio.Queue[bool], stop: asyncio.Event
) -> None:
    async with session.ws_connect(url, max_msg_size=0) as ws:
        msg = await ws.receive()
        hello = msg.type is aiohttp.WSMsgType.TEXT and orjson.loads(msg.data).get("type") == "hello"
        await ready.put(hello)
        # Keep reading (aiohttp answers the server's heartbeat pings while we do).
        async for _ in ws:
            if stop.is_set():
                break


async def run(args: argparse.Namespace, port: int, pid: int) -> dict[str, float]:
    url = f"ws://127.0.0.1:{port}/ws/wall/{EVENT}"
    ready: asyncio.Queue[bool] = asyncio.Queue()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    figures: dict[str, float] = {"start": rss_kib(pid)}
    no_hello = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect_one() -> None:
            nonlocal no_hello
            async with gate:
                tasks.append(asyncio.create_task(idle_client(session, url, ready, stop)))
                if not await ready.get():
                    no_hello += 1

        warmup = min(args.warmup, args.clients)
        await asyncio.gather(*(connect_one() for _ in range(warmup)))
        await asyncio.sleep(0.5)
        figures["warm"] = rss_kib(pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(connect_one() for _ in range(args.clients - warmup)))
        figures["connect_seconds"] = time.perf_counter() - t0
        for task in tasks:
            if task.done():
                task.result()  # a client that failed fails the run
        await asyncio.sleep(SETTLE_SECONDS)
        figures["after"] = rss_kib(pid)
        figures["open"] = sum(not t.done() for t in tasks)
        figures["no_hello"] = no_hello
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20, help="clients connected before the baseline")
    parser.add_argument("--serve", metavar="DB_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit(args.clients + 256)
    if args.serve:
        asyncio.run(serve(args.serve))
        return

    with tempfile.TemporaryDirectory(prefix="backchannel-idle-") as db_dir:
        command = [sys.executable, __file__, "--serve", db_dir, "--clients", str(args.clients)]
        with served(command) as [server]:
            print(f"server pid {server.process.pid} on 127.0.0.1:{server.port}", flush=True)
            f = asyncio.run(run(args, server.port, server.process.pid))

    warmup = min(args.warmup, args.clients)
    rest = args.clients - warmup
    per_client = (f["after"] - f["warm"]) / rest if rest else float("nan")
    per_client_all = (f["after"] - f["start"]) / args.clients
    print(f"machine: {machine()}")
    print(
        f"clients {args.clients:,} idle wall websockets ({warmup} warm-up); the rest connected in "
        f"{f['connect_seconds']:.1f} s; still open {int(f['open']):,}, without hello {int(f['no_hello'])}"
    )
    print(
        f"server RSS: start {f['start'] / 1024:.1f} MiB, after warm-up {f['warm'] / 1024:.1f} MiB, "
        f"with all clients {f['after'] / 1024:.1f} MiB"
    )
    verdict = "within" if per_client <= TARGET_KIB else "OVER"
    print(
        f"per idle client: {per_client:.1f} KiB after warm-up ({verdict} the {TARGET_KIB} KiB target); "
        f"{per_client_all:.1f} KiB counting from start"
    )


if __name__ == "__main__":
    main()
