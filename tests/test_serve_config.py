"""`backchannel serve --config`: the event file's sources feed the running dashboard."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from fakes.mastodon import FakeMastodon
from support import free_port


async def test_serve_runs_the_event_files_sources_into_the_wall(tmp_path: Path, sqlite_url: str) -> None:
    async with FakeMastodon() as fake:
        await fake.post_many(3, text="hello")
        config = tmp_path / "event.toml"
        config.write_text(
            '[event]\nname = "slz"\nhashtags = ["slz"]\n\n'
            f'[[sources]]\nnetwork = "mastodon"\ninstance = "{fake.base_url}"\ninterval = 1\n'
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
        log = (tmp_path / "serve.log").open("wb")
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "backchannel", "serve", "--config", str(config), "--db", sqlite_url,
            "--port", str(port), env=env, stdout=log, stderr=log,
        )  # fmt: skip
        try:
            wall: list[dict[str, object]] = []

            async def read_wall() -> None:
                async with aiohttp.ClientSession() as http:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/api/wall/slz") as response:
                            if response.status == 200:
                                wall[:] = (await response.json())["items"]
                    except aiohttp.ClientConnectionError:
                        pass

            async def shows(count: int) -> bool:
                await read_wall()
                return len(wall) == count

            async def check(count: int) -> None:
                for _ in range(300):
                    if await shows(count):
                        return
                    await asyncio.sleep(0.1)
                raise AssertionError(f"the wall shows {len(wall)} messages, not {count}")

            await check(3)
            await fake.post_many(1, text="later")
            await check(4)
            assert any("later" in str(item["text"]) for item in wall)
        finally:
            server.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(server.wait(), 20)
            log.close()
        assert code == 0, (tmp_path / "serve.log").read_text()
