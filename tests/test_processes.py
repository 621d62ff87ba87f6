"""A deployment as separate processes: two `backchannel serve` instances and a
`backchannel replay` writer, on one PostgreSQL database and one Redis stream.

Nothing here shares memory with the test: each part is the installed command in its
own process, configured only through the environment, as docker-compose.yml runs it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis
from cryptography.fernet import Fernet
from support import Feed, aiohttp_receive, free_port

from backchannel.store import Store

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / "replay_data" / "slz.jsonl"  # the #slz webinar
STARTUP = 30.0


@dataclass
class Deployment:
    env: dict[str, str]
    ports: list[int]
    logs: Path

    async def replay(self, archive: Path) -> str:
        """`backchannel replay ARCHIVE --speed 0` as its own process; its summary line."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "backchannel", "replay", str(archive), "--event", "slz", "--speed", "0",
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode()
        return out.decode().strip().splitlines()[-1]

    @asynccontextmanager
    async def wall(self, instance: int, **query: object) -> AsyncIterator[Feed]:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        url = f"ws://127.0.0.1:{self.ports[instance]}/ws/wall/slz" + (f"?{params}" if params else "")
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            yield Feed(lambda: aiohttp_receive(ws), timeout=20)


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
async def deployment(tmp_path: Path, postgres_url: str, redis_url: str) -> AsyncIterator[Deployment]:
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
    ports = [free_port(), free_port()]
    async with AsyncExitStack() as stack:
        for i, port in enumerate(ports):
            log = tmp_path / f"serve-{i}.log"
            out = stack.enter_context(log.open("wb"))
            server = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "backchannel", "serve", "--port", str(port),
                env=env, stdout=out, stderr=out,
            )  # fmt: skip
            stack.push_async_callback(_stop, server)
            await _until_serving(port, server, log)
        yield Deployment(env, ports, tmp_path)
    with redis.Redis.from_url(redis_url) as r:
        r.delete(f"{prefix}events")


async def _stop(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        server.terminate()
        await asyncio.wait_for(server.wait(), 20)


def on_the_wall(postgres_url: str) -> list[int]:
    """The seqs the wall may show, read from the store (oldest first): not copies
    ("RT @x: …"), whose original is on the wall already."""
    with Store(postgres_url) as store:
        rules = store.wall_rules("slz")
        return sorted(m.seq for m in store.search("slz", limit=10_000) if rules.visible(m))


def archive(path: Path, first: int, count: int) -> Path:
    """An archive in backchannel's own JSONL format of `count` posts after the session."""
    lines = [
        {
            "network": "mastodon",
            "network_id": str(n),
            "uri": f"https://example.social/users/guest{n}/statuses/{n}",
            "author_handle": f"guest{n}@example.social",
            "author_name": f"Guest {n}",
            "text": f"later thought number {n} #slz",
            "created_at": f"2024-11-14T11:{n % 60:02d}:00Z",
        }
        for n in range(first, first + count)
    ]
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def seqs(items: list[dict[str, object]]) -> list[int]:
    return [int(str(i["seq"])) for i in items]


async def test_a_replay_in_its_own_process_reaches_the_walls_of_both_instances(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with (
        deployment(tmp_path, postgres_url, redis_url) as d,
        d.wall(0) as on_a,
        d.wall(1) as on_b,
    ):
        assert (await on_a.frame())["type"] == (await on_b.frame())["type"] == "hello"
        summary = await d.replay(SESSION)
        assert "0 rejected" in summary, summary
        expected = on_the_wall(postgres_url)
        assert len(expected) > 40
        for feed in (on_a, on_b):
            got = await feed.items_until(lambda item: item["seq"] == expected[-1])
            assert seqs(got) == expected  # every one, once, in order
        # Replayed again: everything is already stored, so nothing new is published.
        assert "0 added" in await d.replay(SESSION)


async def test_a_client_that_switches_instances_resumes_without_a_gap(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with deployment(tmp_path, postgres_url, redis_url) as d:
        async with d.wall(0) as on_a:
            hello = await on_a.frame()
            await d.replay(SESSION)
            first = on_the_wall(postgres_url)
            assert seqs(await on_a.items_until(lambda item: item["seq"] == first[-1])) == first
        await d.replay(archive(tmp_path / "later.jsonl", 1, 5))  # while the client is away
        missed = on_the_wall(postgres_url)[len(first) :]
        assert missed
        async with d.wall(1, epoch=hello["epoch"], since=first[-1]) as on_b:
            assert (await on_b.frame())["type"] == "hello"
            assert seqs(await on_b.items_until(lambda item: item["seq"] == missed[-1])) == missed
            assert (await on_b.frame())["type"] == "recovered"
            await d.replay(archive(tmp_path / "later-still.jsonl", 6, 3))  # live again, now on B
            live = on_the_wall(postgres_url)[len(first) + len(missed) :]
            assert live
            assert seqs(await on_b.items_until(lambda item: item["seq"] == live[-1])) == live
