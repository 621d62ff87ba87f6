"""The hub fan-out workload on python-socketio, for comparison with bench/hub_fanout.py.

    .venv/bin/python bench/socketio_compare.py [--clients 1000] [--rate 100] [--seconds 10]
                                               [--uvloop client|none|server|both] [--no-hub]

Needs python-socketio (`.venv/bin/pip install python-socketio`; not a dependency of
the project). A python-socketio `AsyncServer` on aiohttp serves in a subprocess on
127.0.0.1; every client joins one room in its connect handler. Once all clients are
connected, the server emits one "msg" event per item to the room, `rate` a second
for `seconds` seconds, each item the same tweet-sized dashboard item as
hub_fanout.py's, with "seq" and the time it was *due* ("sent_at") first.

The load generator does not use python-socketio's AsyncClient: 1,000 of them in one
process (each with its own tasks, queues and Engine.IO machinery) would measure the
client library rather than the server. Each client is a raw aiohttp websocket
speaking the Engine.IO 4 / Socket.IO 5 text protocol instead
(`/socket.io/?EIO=4&transport=websocket`: "0{...}" open, "40" to join the default
namespace, "2" pings answered with "3", events as `42["msg",{...}]`), reading each
event's seq and due time the way hub_fanout.py reads its items.

Printed: the same figures as hub_fanout.py (delivered items/s, lost, duplicates,
latency p50/p90/p99/max from due time to receipt, CPU). Unless --no-hub, the script
then runs bench/hub_fanout.py with the same clients, rate, seconds and --uvloop, prints
its report, and the ratios backchannel/socketio for delivered/s and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine
from bench.hub_fanout import (
    CONNECT_CONCURRENCY,
    DRAIN_TIMEOUT,
    Tally,
    delivery_summary,
    machine_busy_seconds,
    maybe_uvloop,
    raise_fd_limit,
    seqs_and_times,
    template_item,
)

ROOM = "bench"
# A publisher that falls this far behind its schedule stops: a saturated server would
# otherwise take minutes to emit the rest. Items never published count as lost.
PUBLISH_GRACE = 3.0
HUB_FANOUT = Path(__file__).resolve().parent / "hub_fanout.py"


# -- server (subprocess) -----------------------------------------------------------------


async def serve(port: int) -> None:
    import socketio  # type: ignore[import-untyped]

    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
    last_seq = 0

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        # Runs before the CONNECT ack goes out, so a client that has its "40" is in the room.
        await sio.enter_room(sid, ROOM)

    async def run_route(request: web.Request) -> web.Response:
        nonlocal last_seq
        rate = float(request.query["rate"])
        seconds = float(request.query["seconds"])
        total = int(rate * seconds)
        template = template_item()
        cpu0, t0, wall0 = time.process_time(), time.monotonic(), time.time()
        published = 0
        behind = 0.0
        while published < total and time.monotonic() - t0 < seconds + PUBLISH_GRACE:
            # Publish everything due by now, one event per item (the same schedule as
            # hub_fanout.py's publisher).
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            if due > published:
                behind = max(behind, time.time() - (wall0 + (due - 1) / rate))
                for i in range(published, due):
                    if time.monotonic() - t0 >= seconds + PUBLISH_GRACE:
                        break
                    last_seq += 1
                    item = {"seq": last_seq, "sent_at": wall0 + i / rate, **template, "id": last_seq}
                    await sio.emit("msg", item, room=ROOM)
                    published += 1
            if published < total:
                await asyncio.sleep(max(0.0, t0 + published / rate - time.monotonic()))
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        return web.json_response(
            {
                "published": published,
                "scheduled": total,
                "first_seq": last_seq - published + 1,
                "last_seq": last_seq,
                "elapsed": elapsed,
                "cpu": cpu,
                "subscribers": len(sio.manager.rooms.get("/", {}).get(ROOM, {})),
                "publisher_behind_max": behind,
                "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )

    async def cpu_route(request: web.Request) -> web.Response:
        return web.json_response({"cpu": time.process_time()})

    app = web.Application()
    sio.attach(app)
    app.router.add_post("/run", run_route)
    app.router.add_get("/cpu", cpu_route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await runner.cleanup()


# -- load generator ----------------------------------------------------------------------

_EVENT_PREFIX = b'42["msg",'


async def client(
    session: aiohttp.ClientSession, url: str, tally: Tally, index: int, ready: asyncio.Queue[int]
) -> None:
    async with session.ws_connect(url, decode_text=False, max_msg_size=0) as ws:
        last = 0
        latencies = tally.latencies
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            now = time.time()
            data = msg.data
            if data.startswith(_EVENT_PREFIX):
                for seq, sent_at in seqs_and_times(data, False):
                    if seq <= last:
                        tally.duplicates += seq == last
                        tally.out_of_order += seq < last
                        continue
                    last = seq
                    tally.received += 1
                    latencies.append(now - sent_at)
                tally.last_seqs[index] = last
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


async def load(args: argparse.Namespace, port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    tally = Tally(last_seqs=[0] * args.clients)
    ready: asyncio.Queue[int] = asyncio.Queue()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        tasks: list[asyncio.Task[None]] = []

        async def connect_one(i: int) -> None:
            async with gate:
                task = asyncio.create_task(client(session, url, tally, i, ready))
                tasks.append(task)
                getter = asyncio.ensure_future(ready.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    task.result()  # a client that failed to connect fails the run
                    raise RuntimeError(f"client {i} ended before connecting")

        t_connect = time.perf_counter()
        await asyncio.gather(*(connect_one(i) for i in range(args.clients)))
        connect_seconds = time.perf_counter() - t_connect

        async with session.get(f"{base}/cpu") as resp:
            server_cpu0 = (await resp.json())["cpu"]
        cpu0, busy0, t0 = time.process_time(), machine_busy_seconds(), time.monotonic()
        async with session.post(f"{base}/run", params={"rate": args.rate, "seconds": args.seconds}) as resp:
            run = await resp.json()
        last = run["last_seq"]
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while min(tally.last_seqs) < last and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        span = time.monotonic() - t0
        load_cpu = time.process_time() - cpu0
        busy = machine_busy_seconds() - busy0
        async with session.get(f"{base}/cpu") as resp:
            server_cpu = (await resp.json())["cpu"] - server_cpu0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return {
        "run": run,
        "connect_seconds": connect_seconds,
        **delivery_summary(tally, run["scheduled"] * args.clients),
        "span": span,
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "machine_busy": busy,
    }


def report(args: argparse.Namespace, loop_name: str, r: dict[str, Any]) -> None:
    run = r["run"]
    elapsed = run["elapsed"]
    span = r["span"]
    print(f"machine: {machine()}; event loops: {loop_name}")
    print(
        f"python-socketio {socketio_version()}: clients {args.clients:,}, rate {args.rate:g}/s, "
        f"{args.seconds:g} s, one event per item; connected in {r['connect_seconds']:.1f} s"
    )
    print(
        f"published {run['published']:,} of {run['scheduled']:,} items in {elapsed:.2f} s "
        f"(the publisher stops {PUBLISH_GRACE:g} s late; the rest count as lost); delivered {r['received']:,} of "
        f"{r['expected']:,} = {r['received'] / elapsed:,.0f} items/s to clients; "
        f"lost {r['lost']:,}, duplicates {r['duplicates']}, out of order {r['out_of_order']}, "
        f"closed early {r['closed_early']}"
    )
    print(
        f"latency due->receipt: p50 {r['p50'] * 1000:.1f} ms, p90 {r['p90'] * 1000:.1f} ms, "
        f"p99 {r['p99'] * 1000:.1f} ms, max {r['max'] * 1000:.1f} ms; publisher behind at most "
        f"{run['publisher_behind_max'] * 1000:.1f} ms"
    )
    print(
        f"CPU: server {run['cpu'] / elapsed * 100:.0f}% of a core while publishing, "
        f"{r['server_cpu'] / span * 100:.0f}% over publish+drain {span:.1f} s (RSS {run['rss_mib']:.0f} MiB), "
        f"load generator {r['load_cpu'] / span * 100:.0f}%; whole machine "
        f"{r['machine_busy'] / span * 100:.0f}% of {os.cpu_count()} cores"
    )


def socketio_version() -> str:
    from importlib.metadata import version

    return version("python-socketio")


def run_hub(args: argparse.Namespace) -> dict[str, Any] | None:
    """bench/hub_fanout.py with the same parameters; its report is echoed."""
    command = [
        sys.executable,
        str(HUB_FANOUT),
        "--clients",
        str(args.clients),
        "--rate",
        str(args.rate),
        "--seconds",
        str(args.seconds),
        "--uvloop",
        args.uvloop,
        "--json",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 120)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        print(f"hub_fanout.py failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return None
    print("\n".join(lines[:-1]))
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100, help="items published per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--uvloop",
        choices=("none", "client", "server", "both"),
        default="client",
        help="which process runs on uvloop, if installed (default: the load generator only)",
    )
    parser.add_argument("--no-hub", action="store_true", help="do not also run bench/hub_fanout.py")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds > 30:
        parser.error("keep runs at 30 s or less")
    raise_fd_limit(args.clients + 256)
    if args.serve:
        maybe_uvloop(args.uvloop in ("server", "both"))
        asyncio.run(serve(args.port))
        return

    loop_name = f"server {(args.uvloop in ('server', 'both') and 'uvloop') or 'asyncio'}, load generator "
    # The load generator's loop is installed in this process only; hub_fanout.py runs in its own.
    loop_name += maybe_uvloop(args.uvloop in ("client", "both"))
    command = [sys.executable, __file__, "--serve", "--uvloop", args.uvloop]
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit(f"the server did not start: {line!r}")
        result = asyncio.run(load(args, int(line.split()[1])))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    print("== python-socketio ==")
    report(args, loop_name, result)
    if args.json:
        print(json.dumps(result))
    if args.no_hub:
        return

    print("== backchannel hub (bench/hub_fanout.py) ==", flush=True)
    hub = run_hub(args)
    if hub is None:
        return
    sio_rate = result["received"] / result["run"]["elapsed"]
    hub_rate = hub["received"] / hub["run"]["elapsed"]
    print(
        f"backchannel/socketio: delivered/s {hub_rate:,.0f} / {sio_rate:,.0f} = "
        f"{hub_rate / sio_rate if sio_rate else float('nan'):.2f}; p99 {hub['p99'] * 1000:.1f} / "
        f"{result['p99'] * 1000:.1f} ms = {hub['p99'] / result['p99'] if result['p99'] else float('nan'):.2f} "
        f"(delivered/s above 1 and p99 below 1 favour backchannel); lost {hub['lost']:,} vs {result['lost']:,}"
    )


if __name__ == "__main__":
    main()
