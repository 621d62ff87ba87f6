"""One collector per source: two runners on one PostgreSQL database, one polls."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp

from backchannel.core.models import Message, Network
from backchannel.jobs import SourceRunner
from backchannel.leases import LocalLeases, PostgresLeases, lock_id
from backchannel.sources.base import Page, SourceState
from backchannel.store import Store


class CountingSource:
    """A polling source that hands out one new message per poll and counts the polls."""

    key = "test:lease"
    interval = 1.0

    def __init__(self) -> None:
        self.polls = 0

    async def poll(self, http: aiohttp.ClientSession, cursor: str | None) -> Page:
        self.polls += 1
        n = int(cursor or 0) + 1
        message = Message(Network.X, str(n), f"https://x.com/i/status/{n}", "a", "A", f"t{n}", datetime.now(UTC))
        return Page(messages=[message], cursor=str(n))


def test_lock_ids_are_stable_and_distinct() -> None:
    assert lock_id("mastodon:a:slz") == lock_id("mastodon:a:slz")
    assert lock_id("mastodon:a:slz") != lock_id("mastodon:b:slz")
    assert -(2**63) <= lock_id("x") < 2**63


async def test_local_leases_grant_everything() -> None:
    assert await LocalLeases().hold("anything")


async def test_only_one_instance_collects_and_the_other_takes_over(postgres_url: str) -> None:
    store_a, store_b = Store(postgres_url), Store(postgres_url)
    leases_a, leases_b = PostgresLeases(postgres_url), PostgresLeases(postgres_url)
    source_a, source_b = CountingSource(), CountingSource()
    runner_a = SourceRunner(store_a, "slz", source_a, leases=leases_a)
    runner_b = SourceRunner(store_b, "slz", source_b, leases=leases_b)
    async with aiohttp.ClientSession() as http:
        try:
            for _ in range(3):
                await runner_a.poll_once(http)
                await runner_b.poll_once(http)
            assert (source_a.polls, source_b.polls) == (3, 0)
            assert runner_b.state is SourceState.STANDBY
            # Instance A dies: its connection, and with it the lock, is gone.
            await leases_a.close()
            runner_a.stopped = True
            await runner_b.poll_once(http)
            assert source_b.polls == 1 and runner_b.state is SourceState.COLLECTING
            # B continued from A's cursor: nothing twice, nothing missed.
            assert [m.seq for m in store_b.messages("slz", order="seq")] == [1, 2, 3, 4]
            assert store_b.cursor("test:lease") == "4"
        finally:
            await leases_a.close()
            await leases_b.close()
            store_a.close()
            store_b.close()
