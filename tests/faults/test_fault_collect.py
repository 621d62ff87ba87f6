"""Collecting through faults: the database restarted under a poll and a stream, and the
collector itself killed (-9) at a random moment, on SQLite and PostgreSQL.

The upstream is the fake Mastodon instance (`fakes.mastodon`) in this test's process,
on a real port. The restart tests run the `Collector` that `backchannel collect` runs
(in this process, so the test can see the runner's state while the database is down);
the kill tests run `backchannel collect` itself as a subprocess. Every test ends with
the same checks: each status the fake served stored exactly once, sequence numbers
1..N without a gap, and the source's state "collecting".

The kill moment is random (a random stored count to wait for, then a random pause);
the seed is printed, and BACKCHANNEL_FAULT_SEED replays a failing run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes import eventually
from fakes.mastodon import FakeMastodon
from services import Postgres
from support import msg

from backchannel.jobs import Collector, SourceRunner
from backchannel.leases import LeaseUnavailable, PostgresLeases
from backchannel.sources.base import Page, SourceState
from backchannel.sources.mastodon import TOKEN_ENV, MastodonSource
from backchannel.store import Store

EVENT = "slz"
TOKEN = "user-token"
# Each test's bound: the suite's 60 s, less room for the fixtures. A loaded 2-core machine
# takes seconds just to start each `backchannel` process.
DEADLINE = 50.0
# How long PostgreSQL stays down in the restart tests.
DOWN_FOR = 3.0


class RecordingStore(Store):
    """The real store, remembering every source state it really wrote (in order), so
    the test sees what `backchannel status` showed during the run."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.states: list[tuple[str, str | None]] = []

    def set_source_state(self, event: str, source: str, state: str, **fields: Any) -> None:
        super().set_source_state(event, source, state, **fields)
        self.states.append((state, fields.get("last_error")))


def seed() -> int:
    value = int(os.environ.get("BACKCHANNEL_FAULT_SEED") or random.randrange(1 << 32))
    print(f"BACKCHANNEL_FAULT_SEED={value}")
    return value


def assert_each_once(store: Store, expected: list[dict[str, Any]]) -> None:
    """Every status served, stored once, numbered 1..N in arrival order."""
    rows = list(store.stream(EVENT))
    uris = [m.message.uri for m in rows]
    assert len(uris) == len(set(uris)), "a status stored twice"
    assert sorted(uris) == sorted(s["uri"] for s in expected)
    assert [m.seq for m in rows] == list(range(1, len(expected) + 1))


def assert_integrity(store: Store) -> None:
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def final_state(store: Store) -> str:
    (status,) = store.source_states(EVENT)
    return status.state


@asynccontextmanager
async def collector(store: Store, source: MastodonSource) -> AsyncIterator[SourceRunner]:
    running = Collector(store, EVENT, [source])
    await running.start()
    try:
        yield running.runners[0]
    finally:
        await running.stop()


async def poster(fake: FakeMastodon, count: int, posted: list[dict[str, Any]], every: float) -> None:
    """`count` statuses, one every `every` seconds: the backchannel of a busy session."""
    for i in range(count):
        posted.append(await fake.post(f"toot {i}"))
        await asyncio.sleep(every)


# -- PostgreSQL restarted during collect ---------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "crash"), [(False, False), (True, False), (True, True)], ids=["poll", "stream", "stream-crash"]
)
async def test_postgres_restarted_during_collect(
    fault_postgres: Postgres, stream: bool, crash: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: a streaming collector stopped for good when PostgreSQL restarted (884 of
    2,784 stored) while `status` still said "collecting". `crash`: kill -9, not a fast
    shutdown, so the server recovers from its log when it starts again."""
    caplog.set_level(logging.INFO)
    store = RecordingStore(fault_postgres.new_database())
    store.event(EVENT)
    posted: list[dict[str, Any]] = []
    seen_down: set[SourceState] = set()
    async with FakeMastodon("mastodon.test") as fake:
        source = MastodonSource(fake.base_url, "slz", token=TOKEN, stream=stream, interval=0.5)
        try:
            async with asyncio.timeout(DEADLINE), collector(store, source) as runner:
                posting = asyncio.create_task(poster(fake, 600, posted, every=0.01))
                await eventually(lambda: store.count(EVENT) >= 100, what="100 stored before the restart")
                restart = asyncio.create_task(
                    asyncio.to_thread(fault_postgres.restart, DOWN_FOR, crash=crash)
                )
                while not restart.done():
                    if not fault_postgres.running():
                        seen_down.add(runner.state)
                    await asyncio.sleep(0.05)
                await restart
                back, before = time.monotonic(), store.count(EVENT)
                await eventually(lambda: store.count(EVENT) > before, timeout=30, what="storing again")
                resumed = time.monotonic() - back
                await posting
                await eventually(
                    lambda: store.count(EVENT) == len(posted), timeout=30, what=f"all {len(posted)} stored"
                )
                await eventually(lambda: runner.state is SourceState.COLLECTING, what="collecting again")
                assert final_state(store) == "collecting" and not runner.stopped
            assert_each_once(store, posted)
            assert final_state(store) == "stopped"
        finally:
            store.close()
    # While the database was down the runner knew it was failing, and said so as soon as
    # the store was back; then it collected again.
    assert SourceState.BACKING_OFF in seen_down
    failures = [error for state, error in store.states if state == "backing off"]
    assert failures and all("store" in (error or "") for error in failures), store.states
    assert [s for s, _ in store.states[-2:]] == ["collecting", "stopped"]
    assert not [r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno >= logging.ERROR]
    print(
        f"Mastodon {'stream' if stream else 'poll'}, PostgreSQL {'killed (-9)' if crash else 'stopped'} "
        f"and started {DOWN_FOR:g} s later: "
        f"{len(posted)} of {len(posted)} stored, storing again {resumed:.1f} s after it was back; "
        "states written: " + " -> ".join(state for state, _ in itertools.groupby(s for s, _ in store.states))
    )


# -- kill -9 at a random moment --------------------------------------------------------------


class Collect:
    """`backchannel collect` as a subprocess against the fake instance."""

    def __init__(self, tmp_path: Path, fake: FakeMastodon, db: str, *, stream: bool) -> None:
        self.db, self.logs = db, tmp_path
        self.config = tmp_path / "event.toml"
        self.config.write_text(
            f'[event]\nname = "{EVENT}"\nhashtags = ["slz"]\n\n'
            f'[[sources]]\nnetwork = "mastodon"\ninstance = "{fake.base_url}"\ninterval = 1\n'
            f"stream = {'true' if stream else 'false'}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
        self.env[TOKEN_ENV] = TOKEN
        self.runs = 0

    async def start(self) -> asyncio.subprocess.Process:
        self.runs += 1
        with open(self.logs / f"collect-{self.runs}.log", "wb") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "backchannel", "collect", "--config", str(self.config), "--db", self.db,
                env=self.env, stdout=log, stderr=log,
            )  # fmt: skip

    async def status(self) -> str:
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "backchannel", "status", "--db", self.db, "--event", EVENT,
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await done.communicate()
        assert done.returncode == 0, out.decode()
        return out.decode()

    def log(self, run: int) -> str:
        return (self.logs / f"collect-{run}.log").read_text()


async def end(process: asyncio.subprocess.Process, sig: signal.Signals) -> int:
    if process.returncode is None:
        process.send_signal(sig)
    return await asyncio.wait_for(process.wait(), 15)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("stream", [False, True], ids=["poll", "stream"])
async def test_collect_killed_at_a_random_moment(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, stream: bool
) -> None:
    rng = random.Random(seed())
    if backend == "sqlite":
        db = f"sqlite:///{tmp_path / 'backchannel.db'}"
    else:
        db = request.getfixturevalue("fault_postgres").new_database()
    store = Store(db)  # migrated before the collector starts, so the two never race to do it
    store.event(EVENT)
    total = 1000 if not stream else 600
    posted: list[dict[str, Any]] = []
    async with FakeMastodon("mastodon.test") as fake:
        collect = Collect(tmp_path, fake, db, stream=stream)
        key = f"mastodon:{fake.base_url.removeprefix('http://')}:slz"
        posting: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(DEADLINE):
                posted += await fake.post_many(5, text="before")
                first = await collect.start()
                try:
                    await eventually(lambda: store.count(EVENT) == 5, timeout=20, what="the first poll")
                    if stream:
                        await eventually(lambda: fake.subscribed("slz"), what="the subscription")
                        posting = asyncio.create_task(poster(fake, total, posted, every=0.003))
                    else:
                        posted += await fake.post_many(total, text="burst")
                    # A random moment: after a random number stored, and a random pause more.
                    kill_after = rng.randrange(5 + 40, 5 + total - 100)
                    await eventually(
                        lambda: store.count(EVENT) >= kill_after, timeout=20, what=f"{kill_after}"
                    )
                    await asyncio.sleep(rng.uniform(0, 0.05))
                    first.send_signal(signal.SIGKILL)
                    assert await asyncio.wait_for(first.wait(), 15) == -signal.SIGKILL
                finally:
                    if first.returncode is None:
                        first.kill()
                        await first.wait()
                at_kill = store.count(EVENT)
                # What the killed collector left: whole transactions only.
                assert_integrity(store)
                rows = list(store.stream(EVENT))
                assert [m.seq for m in rows] == list(range(1, at_kill + 1))
                assert len({m.message.uri for m in rows}) == at_kill
                if not stream:
                    # The cursor was committed with its rows: everything up to it, nothing past it.
                    cursor = int(store.cursor(key) or 0)
                    assert {m.message.network_id for m in rows} == {
                        s["id"] for s in posted if int(s["id"]) <= cursor
                    }

                second = await collect.start()
                try:
                    if posting is not None:
                        await posting
                    await eventually(
                        lambda: store.count(EVENT) == len(posted),
                        timeout=30,
                        what=f"all {len(posted)} stored",
                    )
                    assert "\tcollecting\t" in await collect.status()
                    assert await end(second, signal.SIGTERM) == 0
                finally:
                    if second.returncode is None:
                        second.kill()
                        await second.wait()
            assert_each_once(store, posted)
            assert_integrity(store)
            assert final_state(store) == "stopped"
            assert "Traceback" not in collect.log(2), collect.log(2)
        finally:
            if posting is not None and not posting.done():
                posting.cancel()
            store.close()
    print(
        f"Mastodon {'stream' if stream else 'poll'} on {backend}, collect killed (-9) at "
        f"{at_kill} of {len(posted)} stored: {len(posted)} of {len(posted)} after the restart, "
        "each once, seqs 1..N, integrity ok"
    )


# -- a bug or an unforeseen payload ------------------------------------------------------------


class Clock:
    """The runner's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Unforeseen:
    """A source whose first `failures` tries raise a KeyError, as code reading a field
    that a payload lacks does; then one message a try."""

    key = "test:unforeseen"
    interval = 1.0

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries = 0

    def _next(self, cursor: str | None) -> Page:
        self.tries += 1
        if self.tries <= self.failures:
            raise KeyError("account")
        n = int(cursor or 0) + 1
        return Page(messages=[msg(n)], cursor=str(n))


class UnforeseenPoll(Unforeseen):
    async def poll(self, http: aiohttp.ClientSession, cursor: str | None) -> Page:
        return self._next(cursor)


class UnforeseenStream(Unforeseen):
    def __init__(self, failures: int) -> None:
        super().__init__(failures)
        self.streaming = asyncio.Event()

    async def stream(self, http: aiohttp.ClientSession, cursor: str | None, sink: Any) -> None:
        await sink(self._next(cursor))
        self.streaming.set()
        await asyncio.Event().wait()  # a quiet stream, open until the runner is stopped


async def test_an_unexpected_error_in_a_poll_is_logged_once_and_backed_off(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.event(EVENT)
    clock = Clock()
    runner = SourceRunner(store, EVENT, UnforeseenPoll(failures=3), clock=clock)
    delays = []
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            await runner.poll_once(http)  # raises nothing
            assert runner.state is SourceState.BACKING_OFF and not runner.stopped
            (status,) = store.source_states(EVENT)
            assert status.state == "backing off" and "KeyError" in (status.last_error or "")
            delays.append(runner.not_before - clock.now)
            clock.now = runner.not_before
        await runner.poll_once(http)
    # A server error's rule: 5 s, doubling (with up to 20 % jitter).
    assert 5 <= delays[0] <= 6 and 10 <= delays[1] <= 12 and 20 <= delays[2] <= 24
    assert runner.state is SourceState.COLLECTING and runner.failures == 0
    assert store.count(EVENT) == 1 and store.source_states(EVENT)[0].state == "collecting"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "KeyError" in tracebacks[0].getMessage()


async def test_a_poll_job_that_fails_leaves_apscheduler_quiet(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.event(EVENT)
    source = UnforeseenPoll(failures=1)
    running = Collector(store, EVENT, [source])  # type: ignore[list-item]
    await running.start()
    try:
        runner = running.runners[0]
        await eventually(lambda: runner.state is SourceState.BACKING_OFF, what="the failed poll")
    finally:
        await running.stop()
    assert not [r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno >= logging.ERROR]
    assert store.source_states(EVENT)[0].state == "stopped"


async def test_an_unexpected_error_in_a_stream_is_retried(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.event(EVENT)
    source = UnforeseenStream(failures=2)
    runner = SourceRunner(store, EVENT, source)
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)  # the backoff asked for, not waited: the rules are test_backoff.py's

    async with aiohttp.ClientSession() as http:
        task = asyncio.create_task(runner.run_stream(http, sleep=no_wait))
        try:
            await asyncio.wait_for(source.streaming.wait(), 10)
            assert not task.done() and runner.state is SourceState.COLLECTING
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert len(waits) == 2 and 5 <= waits[0] <= 6 and 10 <= waits[1] <= 12
    assert store.count(EVENT) == 1
    assert len([r for r in caplog.records if r.exc_info]) == 1


async def test_a_stream_runner_that_breaks_is_restarted(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The collector's last guard: a bug in the runner itself (here its connection step
    raising once) is logged, backed off (5 s, the unexpected-error rule) and run again."""
    store.event(EVENT)
    source = UnforeseenStream(failures=0)
    running = Collector(store, EVENT, [source])  # type: ignore[list-item]
    runner = running.runners[0]
    connect = runner._stream_once
    broken = [RuntimeError("a bug in the runner")]

    async def once_broken(http: aiohttp.ClientSession) -> float | None:
        if broken:
            raise broken.pop()
        return await connect(http)

    runner._stream_once = once_broken  # type: ignore[method-assign]
    await running.start()
    try:
        await eventually(
            lambda: [s for s in store.source_states(EVENT) if "RuntimeError" in (s.last_error or "")],
            what="the failure recorded",
        )
        await asyncio.wait_for(source.streaming.wait(), 15)
        assert store.count(EVENT) == 1 and runner.state is SourceState.COLLECTING
    finally:
        await running.stop()
    assert "the stream runner failed; restarting it" in caplog.text


# -- the lease after a database restart --------------------------------------------------------


async def test_a_lease_is_asked_for_again_after_a_database_restart(fault_postgres: Postgres) -> None:
    url = fault_postgres.new_database()
    a, b = PostgresLeases(url), PostgresLeases(url)
    try:
        assert await a.hold("mastodon:x:slz") and not await b.hold("mastodon:x:slz")
        await asyncio.to_thread(fault_postgres.stop)
        # Down: neither may collect, and neither is told another instance does.
        for leases in (a, b):
            with pytest.raises(LeaseUnavailable):
                await leases.hold("mastodon:x:slz")
        await asyncio.to_thread(fault_postgres.start)
        # The restart freed the lock: whoever asks first takes it, the other stands by.
        assert await b.hold("mastodon:x:slz")
        assert not await a.hold("mastodon:x:slz")
        assert await b.hold("mastodon:x:slz")
    finally:
        await a.close()
        await b.close()
