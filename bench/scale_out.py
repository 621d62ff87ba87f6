"""Scale-out: the real app on PostgreSQL and Redis, one or two instances, beside python-socketio.

    .venv/bin/python bench/scale_out.py [--clients 1000] [--rate 100] [--seconds 10]
                                        [--instances 1 2] [--stacks backchannel socketio]
                                        [--store URL] [--redis URL | --no-redis] [--json FILE]
    .venv/bin/python bench/scale_out.py --clients 100 1000 5000 --rate 10 100 500   # the matrix

Needs PostgreSQL and Redis (the defaults are the local ones the tests use) and, for
the peer, python-socketio (`pip install -e '.[bench]'`).

The workload, the same for both stacks: the first instance creates `rate` messages a
second for `seconds` seconds, writes each tick's messages to the store (a fresh
PostgreSQL database, one transaction per tick) and publishes what was stored.
- backchannel: the real application (`create_app`), written through its own pipeline,
  so each message goes store -> Redis stream (XADD) -> every instance's reader (XREAD
  BLOCK) -> its hub -> the public wall's websockets (`/ws/wall/EVENT`).
- python-socketio: its `AsyncServer` on aiohttp, the same store write, then one
  `emit` of the stored message's wire item per message to a room that every client
  joins; with Redis, its `AsyncRedisManager` (Redis pub/sub) carries each emit to every
  instance. This is the stack a Python team would otherwise build the live view on.

Clients are spread round-robin over the instances. backchannel's are plain websocket
clients, python-socketio's raw websockets speaking Engine.IO 4 / Socket.IO 5 (1,000
AsyncClients in one process would measure the client library, not the server). Each
message's due time is written into its author's name, so latency runs from the moment the
message was due to be ingested to its receipt by the client: a publisher or store
that falls behind counts as latency, and what never arrives within a few seconds of
the end counts as lost.

Every run starts fresh server processes and a fresh event. Before publishing, the
clients sit idle for a few seconds: the servers' CPU and resident memory over that
span give the cost per 1,000 idle clients. Printed per run: delivered items/s, lost,
duplicates, latency p50/p99/max, CPU of the servers, Redis and the load generator and
the whole machine's; at the end, a table with python-socketio's figures beside
backchannel's, their ratio, and the scaling factor of two instances over one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backchannel.core import wire
from backchannel.core.models import Message, Network
from bench.common import machine, serve_until_stdin_closes, served
from bench.hub_fanout import (
    CONNECT_CONCURRENCY,
    DRAIN_TIMEOUT,
    Tally,
    client,
    delivery_summary,
    machine_busy_seconds,
    maybe_uvloop,
    raise_fd_limit,
    stamped,
)
from bench.idle_memory import rss_kib

ROOM = "bench"
# A publisher that falls this far behind its schedule stops; what it never
# published counts as lost (a saturated server would take minutes to finish).
PUBLISH_GRACE = 3.0
IDLE_SECONDS = 3.0
# Each message's author name carries its due time ("due <due>|User <n>"): the public
# wall's items carry no URI, only what the wall shows.
URI_PREFIX = "https://bench.invalid/"
_DUE_MARK = b'"author_name":"due '


def parse_items(data: bytes) -> list[tuple[int, float]]:
    return stamped(data, _DUE_MARK, b"|")


def bench_message(n: int, due: float) -> Message:
    return Message(
        network=Network.X,
        network_id=str(n),
        uri=f"{URI_PREFIX}{due:.6f}/{n}",
        author_handle=f"user{n % 5000}",
        author_name=f"due {due:.6f}|User {n % 5000}",
        text="social learning is all about connections not tools #slz great point @joningham "
        "see http://example.com/article agree the webinar was brilliant",
        created_at=datetime.fromtimestamp(due, UTC),
        permalink=f"https://x.com/user{n % 5000}/status/{n}",
        hashtags=("slz",),
        mentions=("joningham",),
        links=("http://example.com/article",),
    )


# -- servers (subprocesses) --------------------------------------------------------------

# Stores and publishes messages; returns how many went out before `deadline` (monotonic).
Emit = Callable[[list[Message], float], Awaitable[int]]


async def publish_on_schedule(rate: float, seconds: float, emit: Emit) -> dict[str, Any]:
    """Create `rate` messages a second for `seconds`; everything due by now goes in one call."""
    total = int(rate * seconds)
    cpu0, t0, wall0 = time.process_time(), time.monotonic(), time.time()
    published = 0
    behind = 0.0
    deadline = t0 + seconds + PUBLISH_GRACE
    while published < total and time.monotonic() < deadline:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        if due > published:
            behind = max(behind, time.time() - (wall0 + (due - 1) / rate))
            published += await emit(
                [bench_message(i, wall0 + i / rate) for i in range(published, due)], deadline
            )
        if published < total:
            await asyncio.sleep(max(0.0, t0 + published / rate - time.monotonic()))
    return {
        "scheduled": total,
        "published": published,
        "elapsed": time.monotonic() - t0,
        "cpu": time.process_time() - cpu0,
        "publisher_behind_max": behind,
    }


def bench_routes(emit: Emit | None) -> list[web.RouteDef]:
    async def run_route(request: web.Request) -> web.Response:
        assert emit is not None, "only the first instance publishes"
        return web.json_response(
            await publish_on_schedule(float(request.query["rate"]), float(request.query["seconds"]), emit)
        )

    async def cpu_route(request: web.Request) -> web.Response:
        return web.json_response({"cpu": time.process_time(), "rss_kib": rss_kib(os.getpid())})

    async def gc_route(request: web.Request) -> web.Response:
        # A full collection: what the memory is once the cyclic garbage is gone (bench/soak.py).
        collected = gc.collect()
        return web.json_response({"collected": collected, "rss_kib": rss_kib(os.getpid())})

    return [
        web.post("/bench/run", run_route),
        web.get("/bench/cpu", cpu_route),
        web.post("/bench/gc", gc_route),
    ]


async def serve_backchannel(args: argparse.Namespace) -> None:
    from backchannel.fanout import RedisFanout
    from backchannel.server.app import create_app, pipeline_for
    from backchannel.server.security import SecuritySettings
    from backchannel.store import Store

    store = Store(args.store, migrate=False)
    fanout = RedisFanout(args.redis, stream_prefix=args.channel) if args.redis else None
    # Every client connects from 127.0.0.1: no socket caps (they are for hostile clients).
    security = SecuritySettings(
        secret=os.environ["BACKCHANNEL_SECRET"], max_sockets=10**6, max_sockets_per_address=0
    )
    app = create_app(store, security=security, fanout=fanout)
    emit: Emit | None = None
    if args.index == 0:
        pipeline = pipeline_for(app, args.event, batch_size=1_000_000)

        async def emit(messages: list[Message], deadline: float) -> int:
            await pipeline.put_many(messages)
            await pipeline.flush()  # publishing never waits for clients
            return len(messages)

    async def replay_route(request: web.Request) -> web.Response:
        # The replay feeder as `backchannel serve` runs it, unpaced (bench/replay_live.py).
        from backchannel.sources.archive import Rejected, read_archive
        from backchannel.sources.replay import replay

        archive = read_archive(request.query["path"], format="jsonl", event=args.event)
        cpu0, t0 = time.process_time(), time.monotonic()
        taken = await replay(
            (m for m in archive if not isinstance(m, Rejected)),
            pipeline_for(app, args.event, batch_size=1000),
            speed=0,
        )
        return web.json_response(
            {"taken": taken, "elapsed": time.monotonic() - t0, "cpu": time.process_time() - cpu0}
        )

    app.add_routes([*bench_routes(emit), web.post("/bench/replay", replay_route)])
    await serve_until_stdin_closes(app)
    store.close()


async def serve_socketio(args: argparse.Namespace) -> None:
    import socketio  # type: ignore[import-untyped]

    from backchannel.store import Store

    manager = socketio.AsyncRedisManager(args.redis, channel=args.channel) if args.redis else None
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager, cors_allowed_origins="*")
    store = Store(args.store, migrate=False)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        # Runs before the CONNECT ack goes out, so a client that has its "40" is in the room.
        await sio.enter_room(sid, ROOM)

    async def emit(messages: list[Message], deadline: float) -> int:
        result = await asyncio.to_thread(store.ingest, args.event, messages)
        sent = 0
        for stored in result.added:
            if time.monotonic() >= deadline:
                break  # each emit waits for its sends: a saturated server falls behind
            await sio.emit("msg", wire.message_item(stored), room=ROOM)
            sent += 1
        return sent

    app = web.Application()
    sio.attach(app)
    app.add_routes(bench_routes(emit if args.index == 0 else None))
    await serve_until_stdin_closes(app)
    store.close()


# -- load generator ----------------------------------------------------------------------

_SIO_EVENT = b'42["msg",'


async def socketio_client(
    session: aiohttp.ClientSession,
    url: str,
    tally: Tally,
    index: int,
    ready: asyncio.Queue[int],
    parse: Callable[[bytes], list[tuple[int, float]]],
) -> None:
    """A Socket.IO client in a few lines of the protocol: join, answer pings, read events."""
    async with session.ws_connect(url, decode_text=False, max_msg_size=0) as ws:
        last = 0
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            now = time.time()
            data = msg.data
            if data.startswith(_SIO_EVENT):
                last = tally.take(index, last, parse(data), now)
            elif data == b"2":  # Engine.IO ping
                await ws.send_str("3")
            elif data.startswith(b"0"):  # Engine.IO open: join the default namespace
                await ws.send_str("40")
            elif data.startswith(b"40"):  # Socket.IO connect ack: in the room
                await ready.put(index)
            elif data.startswith(b"44"):
                raise RuntimeError(f"socket.io connect refused: {data!r}")
        if ws.close_code not in (None, aiohttp.WSCloseCode.OK, aiohttp.WSCloseCode.GOING_AWAY):
            tally.closed_early += 1


@dataclass(frozen=True)
class Case:
    stack: str  # "backchannel" or "socketio"
    instances: int
    clients: int
    rate: float


def client_url(case: Case, port: int, event: str) -> str:
    if case.stack == "backchannel":
        return f"ws://127.0.0.1:{port}/ws/wall/{event}"
    return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"


def redis_cpu(url: str) -> float:
    if not url:
        return 0.0
    import redis

    with redis.Redis.from_url(url) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# -- load generator workers ---------------------------------------------------------------
#
# One process reading thousands of sockets saturates its core long before the servers
# do, and the queueing in it would be measured as the servers' latency. The clients are
# therefore spread over worker processes (`--load-procs`, default one per core), each
# on its own event loop; the parent only coordinates them and the run.


async def _worker_main(conn: Connection, case: Case, ports: list[int], event: str, indexes: range) -> None:
    loop = asyncio.get_running_loop()

    async def command() -> Any:
        return await loop.run_in_executor(None, conn.recv)

    # One tally per instance, so each instance's latency can be told apart.
    tallies = [Tally() for _ in ports]
    ready: asyncio.Queue[int] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    run_client = client if case.stack == "backchannel" else socketio_client
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect_one(slot: int) -> None:
            async with gate:
                instance = indexes[slot] % len(ports)
                tally = tallies[instance]
                tally.last_seqs.append(0)
                url = client_url(case, ports[instance], event)
                task = asyncio.create_task(
                    run_client(session, url, tally, len(tally.last_seqs) - 1, ready, parse_items)
                )
                tasks.append(task)
                getter = asyncio.ensure_future(ready.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    task.result()  # a client that failed to connect fails the run
                    raise RuntimeError(f"client {indexes[slot]} ended before it was ready")

        connected = 0
        while True:
            match await command():
                case ("connect", upto):
                    await asyncio.gather(*(connect_one(i) for i in range(connected, upto)))
                    connected = upto
                    conn.send("connected")
                case "start":
                    cpu0 = time.process_time()
                    conn.send("started")
                case ("drain", last):
                    deadline = time.monotonic() + DRAIN_TIMEOUT
                    # Polling a counter (not a sleep as synchronisation): the bench only reports.
                    while (
                        min(seq for t in tallies for seq in t.last_seqs) < last
                        and time.monotonic() < deadline
                    ):
                        await asyncio.sleep(0.05)
                    cpu = time.process_time() - cpu0
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    conn.send((tallies, cpu))
                    return


def _worker(conn: Connection, case: Case, ports: list[int], event: str, indexes: range) -> None:
    maybe_uvloop(True)
    raise_fd_limit(len(indexes) + 256)
    try:
        asyncio.run(_worker_main(conn, case, ports, event, indexes))
    except BaseException as exc:
        conn.send(exc)
        raise


class Workers:
    """The load generator's worker processes, each holding a share of the clients."""

    def __init__(self, case: Case, ports: list[int], event: str, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.shares = [range(k, case.clients, procs) for k in range(procs)]
        self.conns: list[Connection] = []
        self.procs = []
        for share in self.shares:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, case, ports, event, share), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def ask(self, message: Any) -> list[Any]:
        for conn in self.conns:
            conn.send(message)
        answers = [conn.recv() for conn in self.conns]
        for answer in answers:
            if isinstance(answer, BaseException):
                raise RuntimeError("a load generator worker failed") from answer
        return answers

    def connect(self, clients: int) -> None:
        """Connect each worker's share of the first `clients` clients."""
        self.ask_each(lambda share: ("connect", len(range(share.start, clients, share.step))))

    def ask_each(self, message_for: Callable[[range], Any]) -> None:
        for conn, share in zip(self.conns, self.shares, strict=True):
            conn.send(message_for(share))
        for conn in self.conns:
            answer = conn.recv()
            if isinstance(answer, BaseException):
                raise RuntimeError("a load generator worker failed") from answer

    def close(self) -> None:
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def merge(tallies: list[Tally]) -> Tally:
    total = Tally()
    for t in tallies:
        total.latencies += t.latencies
        total.received += t.received
        total.duplicates += t.duplicates
        total.out_of_order += t.out_of_order
        total.closed_early += t.closed_early
        total.frames += t.frames
        total.last_seqs += t.last_seqs
    return total


async def get_json(url: str, method: str = "GET", **params: Any) -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, url, params=params) as resp:
        resp.raise_for_status()
        return await resp.json()


def server_stats(ports: list[int]) -> list[dict[str, float]]:
    async def all_ports() -> list[dict[str, float]]:
        return list(await asyncio.gather(*(get_json(f"http://127.0.0.1:{p}/bench/cpu") for p in ports)))

    return asyncio.run(all_ports())


def load(case: Case, args: argparse.Namespace, ports: list[int], event: str) -> dict[str, Any]:
    workers = Workers(case, ports, event, min(args.load_procs, case.clients))
    try:
        # The first connections build what every later one shares (the wall channel,
        # code paths): memory per client is counted after them.
        warm = max(10, case.clients // 50)
        workers.connect(warm)
        idle0 = server_stats(ports)
        t_connect = time.perf_counter()
        workers.connect(case.clients)
        connect_seconds = time.perf_counter() - t_connect

        idle1 = server_stats(ports)
        time.sleep(IDLE_SECONDS)
        idle2 = server_stats(ports)

        redis0 = redis_cpu(args.redis)
        workers.ask("start")
        busy0, t0 = machine_busy_seconds(), time.monotonic()
        run = asyncio.run(
            get_json(f"http://127.0.0.1:{ports[0]}/bench/run", "POST", rate=case.rate, seconds=args.seconds)
        )
        # A fresh event numbers its messages from 1: the last seq is the count published.
        answers = workers.ask(("drain", run["published"]))
        span = time.monotonic() - t0
        busy = machine_busy_seconds() - busy0
        redis_seconds = redis_cpu(args.redis) - redis0
        after = server_stats(ports)
    finally:
        workers.close()
    tally = merge([t for tallies, _ in answers for t in tallies])
    by_instance = [merge([tallies[k] for tallies, _ in answers]) for k in range(case.instances)]

    return {
        "case": case.__dict__,
        "run": run,
        "connect_seconds": connect_seconds,
        **delivery_summary(tally, run["scheduled"] * case.clients),
        "delivered_per_s": tally.received / run["elapsed"],
        "span": span,
        "server_cpu": sum(a["cpu"] - b["cpu"] for a, b in zip(after, idle2, strict=True)),
        "server_rss_mib": sum(a["rss_kib"] for a in after) / 1024,
        "idle_cpu_per_1000": sum(b["cpu"] - a["cpu"] for a, b in zip(idle1, idle2, strict=True))
        / IDLE_SECONDS
        * 1000
        / case.clients,
        "idle_kib_per_client": sum(b["rss_kib"] - a["rss_kib"] for a, b in zip(idle0, idle2, strict=True))
        / (case.clients - warm),
        "redis_cpu": redis_seconds,
        "load_cpu": sum(cpu for _, cpu in answers),
        "load_procs": len(answers),
        "by_instance": [delivery_summary(t, run["scheduled"] * len(t.last_seqs)) for t in by_instance],
        "machine_busy": busy,
    }


def server_commands(case: Case, store_url: str, redis_url: str, event: str, channel: str) -> list[list[str]]:
    return [
        [
            sys.executable,
            __file__,
            "--serve",
            case.stack,
            "--index",
            str(index),
            "--event",
            event,
            "--store",
            store_url,
            "--redis",
            redis_url,
            "--channel",
            channel,
        ]
        for index in range(case.instances)
    ]


def delete_stream(redis_url: str, channel: str) -> None:
    """Remove the run's fan-out stream (`channel` is its prefix)."""
    if redis_url:
        import redis

        with redis.Redis.from_url(redis_url) as r:
            r.delete(f"{channel}events")


def shared_secret() -> dict[str, str]:
    """The servers' environment: one session key for all instances, as a deployment has."""
    from cryptography.fernet import Fernet

    return {**os.environ, "BACKCHANNEL_SECRET": Fernet.generate_key().decode()}


def run_case(case: Case, args: argparse.Namespace, store_url: str) -> dict[str, Any]:
    from backchannel.store import Store

    event = f"e{uuid.uuid4().hex[:8]}"
    channel = f"bench-scale:{event}:"
    with Store(store_url, migrate=False) as store:
        store.event(event)
    commands = server_commands(case, store_url, args.redis, event, channel)
    try:
        with served(*commands, env=shared_secret()) as servers:
            return load(case, args, [server.port for server in servers], event)
    finally:
        delete_stream(args.redis, channel)


def report(r: dict[str, Any]) -> None:
    case, run = Case(**r["case"]), r["run"]
    elapsed, span = run["elapsed"], r["span"]
    print(
        f"-- {case.stack}, {case.instances} instance(s), {case.clients:,} clients, {case.rate:g} messages/s, "
        f"connected in {r['connect_seconds']:.1f} s"
    )
    print(
        f"   published {run['published']:,} of {run['scheduled']:,} in {elapsed:.2f} s; delivered "
        f"{r['received']:,} of {r['expected']:,} = {r['delivered_per_s']:,.0f}/s; lost {r['lost']:,}, "
        f"duplicates {r['duplicates']}, out of order {r['out_of_order']}, closed early {r['closed_early']}; "
        f"{r['received'] / max(1, r['frames']):.1f} items per frame"
    )
    print(
        f"   latency ingest->client: p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, "
        f"max {r['max'] * 1000:.1f} ms; publisher behind at most {run['publisher_behind_max'] * 1000:.0f} ms"
    )
    if case.instances > 1:
        print(
            "   by instance (the first publishes): "
            + "; ".join(
                f"p50 {i['p50'] * 1000:.1f} ms, p99 {i['p99'] * 1000:.1f} ms, lost {i['lost']:,}"
                for i in r["by_instance"]
            )
        )
    print(
        f"   CPU over publish+drain {span:.1f} s: servers {r['server_cpu'] / span * 100:.0f}% of a core, "
        f"Redis {r['redis_cpu'] / span * 100:.0f}%, load generator ({r['load_procs']} processes) "
        f"{r['load_cpu'] / span * 100:.0f}%, "
        f"whole machine {r['machine_busy'] / span * 100:.0f}% of {os.cpu_count()} cores; servers' RSS "
        f"{r['server_rss_mib']:.0f} MiB"
    )
    print(
        f"   idle: {r['idle_cpu_per_1000'] * 100:.2f}% of a core and "
        f"{r['idle_kib_per_client'] * 1000 / 1024:.1f} MiB per 1,000 idle clients",
        flush=True,
    )


def table(results: list[dict[str, Any]]) -> None:
    by_case = {tuple(Case(**r["case"]).__dict__.values()): r for r in results}
    print(
        "\nclients x rate, instances | python-socketio delivered/s, p99, lost | backchannel delivered/s, "
        "p99, lost | ratio delivered/s, p99"
    )
    keys = sorted({(r["case"]["clients"], r["case"]["rate"], r["case"]["instances"]) for r in results})
    for clients, rate, instances in keys:
        sio = by_case.get(("socketio", instances, clients, rate))
        bc = by_case.get(("backchannel", instances, clients, rate))
        cells = [
            f"{r['delivered_per_s']:,.0f}/s, {r['p99'] * 1000:,.0f} ms, {r['lost']:,}" if r else "-"
            for r in (sio, bc)
        ]
        ratio = "-"
        if sio and bc and sio["delivered_per_s"]:
            ratio = f"x{bc['delivered_per_s'] / sio['delivered_per_s']:.2f}, x{bc['p99'] / sio['p99']:.2f}"
        print(f"{clients:,} x {rate:g}/s, {instances} | {cells[0]} | {cells[1]} | {ratio}")
    for stack in ("backchannel", "socketio"):
        for clients, rate in sorted({(k[0], k[1]) for k in keys}):
            one, two = by_case.get((stack, 1, clients, rate)), by_case.get((stack, 2, clients, rate))
            if one and two and one["delivered_per_s"]:
                print(
                    f"scaling factor, {stack} {clients:,} x {rate:g}/s: two instances / one = "
                    f"{two['delivered_per_s'] / one['delivered_per_s']:.2f} (delivered/s), "
                    f"servers' CPU {two['server_cpu'] / one['server_cpu']:.2f}x"
                )


def fresh_database(url: str) -> tuple[str, Callable[[], None]]:
    """A new PostgreSQL database beside `url`'s (SQLite: a temporary file); and its disposal."""
    if url.startswith("sqlite"):
        return url, lambda: None
    import psycopg

    name = f"bc_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    return url.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1000])
    parser.add_argument("--rate", type=float, nargs="+", default=[100], help="messages ingested per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2], choices=(1, 2, 3, 4))
    parser.add_argument(
        "--stacks", nargs="+", default=["socketio", "backchannel"], choices=("socketio", "backchannel")
    )
    parser.add_argument(
        "--store",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a fresh database is created beside this one (or an SQLite URL, used as is)",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", action="store_true", help="one instance, in-process fan-out")
    parser.add_argument(
        "--load-procs", type=int, default=os.cpu_count() or 1, help="load generator worker processes"
    )
    parser.add_argument("--json", metavar="FILE", help="write every run's figures to FILE")
    parser.add_argument("--serve", choices=("backchannel", "socketio"), help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--event", help=argparse.SUPPRESS)
    parser.add_argument("--channel", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds > 30:
        parser.error("keep runs at 30 s or less")
    raise_fd_limit(max(args.clients) + 256)
    if args.serve:
        from backchannel.cli import tune_gc

        tune_gc()  # as `backchannel serve` runs
        asyncio.run(serve_backchannel(args) if args.serve == "backchannel" else serve_socketio(args))
        return
    if args.no_redis:
        if max(args.instances) > 1:
            parser.error("--no-redis runs one instance only")
        args.redis = ""

    loops = f"servers asyncio, load generator {args.load_procs} processes on " + maybe_uvloop(True)
    print(f"machine: {machine()}; event loops: {loops}")
    print(
        f"store: {args.store} (fresh database); Redis: {args.redis or 'none (in-process)'}; {args.seconds:g} s per run"
    )
    store_url, drop = fresh_database(args.store)
    from backchannel.store import Store

    Store(store_url).close()  # migrated once, before any instance opens it
    results = []
    try:
        for clients, rate, instances, stack in itertools.product(
            args.clients, args.rate, args.instances, args.stacks
        ):
            result = run_case(Case(stack, instances, clients, rate), args, store_url)
            report(result)
            results.append(result)
    finally:
        drop()
    table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
