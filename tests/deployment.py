"""A deployment as separate processes, for the process and fault tests: `backchannel
serve` instances and `backchannel replay` writers on one PostgreSQL database and one
Redis stream, each the installed command in its own process, configured only through
the environment, as docker-compose.yml runs it. Every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis
from cryptography.fernet import Fernet
from support import Feed, aiohttp_receive, free_port

from backchannel.store import Store

STARTUP = 30.0
# How long a stopped `serve` may take to exit before the test fails (issue 10: 5 s).
EXIT_TIMEOUT = 20.0


@dataclass
class Deployment:
    env: dict[str, str]
    ports: list[int]
    logs: Path
    servers: list[asyncio.subprocess.Process] = field(default_factory=list)

    def _replay_args(self, archive: Path, speed: float) -> list[str]:
        return [
            sys.executable,
            "-m",
            "backchannel",
            "replay",
            str(archive),
            "--event",
            "slz",
            "--speed",
            str(speed),
        ]

    async def start_replay(self, archive: Path, *, speed: float = 0) -> asyncio.subprocess.Process:
        """`backchannel replay ARCHIVE --speed SPEED` started as its own process."""
        return await asyncio.create_subprocess_exec(
            *self._replay_args(archive, speed),
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip

    async def replay(self, archive: Path, *, speed: float = 0, timeout: float = 60) -> str:
        """A replay run to its end; its summary line."""
        return await finished(await self.start_replay(archive, speed=speed), timeout)

    def ws_url(self, instance: int, **query: object) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ws://127.0.0.1:{self.ports[instance]}/ws/wall/slz" + (f"?{params}" if params else "")

    @asynccontextmanager
    async def wall(self, instance: int, **query: object) -> AsyncIterator[Feed]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(self.ws_url(instance, **query)) as ws,
        ):
            yield Feed(lambda: aiohttp_receive(ws), timeout=20)


async def finished(proc: asyncio.subprocess.Process, timeout: float) -> str:
    assert proc.stdout is not None
    out = await asyncio.wait_for(proc.stdout.read(), timeout)
    await asyncio.wait_for(proc.wait(), timeout)
    assert proc.returncode == 0, out.decode()
    return out.decode().strip().splitlines()[-1]


async def _until_serving(port: int, server: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            assert server.returncode is None, log.read_text()
            try:
                async with http.get(f"http://127.0.0.1:{port}/api/wall/slz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"no instance serving on {port}: {log.read_text()}")


@asynccontextmanager
async def deployment(
    tmp_path: Path, postgres_url: str, redis_url: str, *, instances: int = 2
) -> AsyncIterator[Deployment]:
    prefix = f"backchannel-test:{uuid.uuid4().hex}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env |= {
        "BACKCHANNEL_DB": postgres_url,
        "BACKCHANNEL_REDIS": redis_url,
        "BACKCHANNEL_REDIS_PREFIX": prefix,
        "BACKCHANNEL_SECRET": Fernet.generate_key().decode(),
    }
    with Store(postgres_url) as store:
        store.event("slz")  # migrated and created before the instances start
    ports = [free_port() for _ in range(instances)]
    d = Deployment(env, ports, tmp_path)
    async with AsyncExitStack() as stack:
        for i, port in enumerate(ports):
            log = tmp_path / f"serve-{i}.log"
            out = stack.enter_context(log.open("wb"))
            server = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "backchannel", "serve", "--port", str(port),
                env=env, stdout=out, stderr=out,
            )  # fmt: skip
            stack.push_async_callback(_stop, server)
            d.servers.append(server)
            await _until_serving(port, server, log)
        yield d
    try:
        with redis.Redis.from_url(redis_url, socket_timeout=5) as r:
            r.delete(f"{prefix}events")
    except redis.RedisError:
        pass  # a fault test's Redis, gone with the test


async def _stop(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), EXIT_TIMEOUT)
        except TimeoutError:
            server.kill()
            await server.wait()
            raise AssertionError("backchannel serve did not exit on SIGTERM") from None


def on_the_wall(postgres_url: str) -> list[int]:
    """The seqs the wall may show, read from the store (oldest first): not copies
    ("RT @x: …"), whose original is on the wall already."""
    with Store(postgres_url) as store:
        rules = store.wall_rules("slz")
        return sorted(m.seq for m in store.search("slz", limit=100_000) if rules.visible(m))


def archive(path: Path, first: int, count: int, *, every: float = 60.0) -> Path:
    """An archive in backchannel's own JSONL format of `count` posts, `every` seconds apart."""
    start = datetime(2024, 11, 14, 11, 0, tzinfo=UTC)
    lines: list[dict[str, Any]] = [
        {
            "network": "mastodon",
            "network_id": str(n),
            "uri": f"https://example.social/users/guest{n}/statuses/{n}",
            "author_handle": f"guest{n}@example.social",
            "author_name": f"Guest {n}",
            "text": f"later thought number {n} #slz",
            "created_at": (start + timedelta(seconds=(n - first) * every)).isoformat().replace("+00:00", "Z"),
        }
        for n in range(first, first + count)
    ]
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def seqs(items: list[dict[str, object]]) -> list[int]:
    return [int(str(i["seq"])) for i in items]
