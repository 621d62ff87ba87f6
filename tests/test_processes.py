"""A deployment as separate processes: two `backchannel serve` instances and a
`backchannel replay` writer, on one PostgreSQL database and one Redis stream.

Nothing here shares memory with the test: each part is the installed command in its
own process, configured only through the environment, as docker-compose.yml runs it
(see `deployment.py`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deployment import archive, deployment, on_the_wall, seqs

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / "replay_data" / "slz.jsonl"  # the #slz webinar


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
