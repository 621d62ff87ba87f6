"""The writing commands (`import`, `replay`) under database restarts and kill -9.

What must hold after every fault: each message of the archive stored exactly once, the
event's sequence numbers 1..N without a gap, `events.last_seq` = N, and on SQLite
`PRAGMA integrity_check` ok. Commands run as real subprocesses where the exit status
or a kill matters; PostgreSQL is the suite's own throwaway cluster (`fault_postgres`)
whenever a test stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from services import Postgres
from support import msg

from backchannel.core.models import Message
from backchannel.pipeline import Pipeline
from backchannel.sources.replay import replay
from backchannel.store import Store
from backchannel.store.store import normalise_url

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
# Every wait for a subprocess is bounded: a command that hangs fails the test.
COMMAND_TIMEOUT = 60.0


def write_archive(path: Path, count: int, *, spacing: float = 1.0) -> Path:
    """A JSONL archive (replay_data/README.md) of `count` messages `spacing` seconds apart."""
    with path.open("wb") as fh:
        for i in range(1, count + 1):
            record = {
                "network": "x",
                "network_id": str(i),
                "author_handle": f"user{i % 97}",
                "text": f"message {i} #fault",
                "created_at": (T0 + timedelta(seconds=i * spacing)).isoformat(),
            }
            fh.write(orjson.dumps(record) + b"\n")
    return path


def backchannel(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "backchannel", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    return proc.returncode, out, err


COUNT = sa.text("SELECT count(*) FROM messages m JOIN events e ON e.id = m.event_id WHERE e.name = :name")
CHECK = sa.text(
    "SELECT count(*), count(DISTINCT m.uri), min(m.seq), max(m.seq) "
    "FROM messages m JOIN events e ON e.id = m.event_id WHERE e.name = :name"
)
LAST_SEQ = sa.text("SELECT last_seq FROM events WHERE name = :name")


def stored_count(url: str, event: str) -> int:
    """How many messages the event holds, 0 before the command has created it."""
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(COUNT, {"name": event}).scalar_one())
    except sa.exc.DBAPIError:
        return 0  # not created yet, or the database is down
    finally:
        engine.dispose()


def wait_for_count(url: str, event: str, at_least: int, proc: subprocess.Popen[str] | None = None) -> int:
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while time.monotonic() < deadline:
        if (n := stored_count(url, event)) >= at_least:
            return n
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the command ended before storing {at_least}: {proc.communicate()}")
        time.sleep(0.02)
    raise TimeoutError(f"{event} never held {at_least} messages")


def assert_exactly_once(url: str, event: str, expected: int) -> None:
    with Store(url) as store, store.engine.connect() as conn:
        total, distinct, low, high = conn.execute(CHECK, {"name": event}).one()
        last_seq = conn.execute(LAST_SEQ, {"name": event}).scalar_one()
        if store.dialect == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    assert (total, distinct, low, high, last_seq) == (expected, expected, 1, expected, expected)


# -- PostgreSQL restarted during a replay ------------------------------------------------------


@pytest.mark.parametrize("crash", [False, True], ids=["fast-shutdown", "kill-9"])
async def test_replay_at_speed_0_rides_out_a_postgres_restart(fault_postgres: Postgres, crash: bool) -> None:
    """Deterministic: the archive itself stops the server after 2,500 of 5,000 messages
    and starts it again 1.5 s later, so the batches written meanwhile fail and are
    retried; nothing may be lost or stored twice."""
    url = fault_postgres.new_database()
    total, down_at, down_for = 5000, 2500, 1.5
    timers: list[threading.Timer] = []

    def messages() -> Iterator[Message]:
        for i in range(1, total + 1):
            if i == down_at:
                fault_postgres.kill() if crash else fault_postgres.stop()
                timers.append(threading.Timer(down_for, fault_postgres.start))
                timers[0].start()
            yield msg(i)

    published: list[int] = []
    try:
        with Store(url) as store:
            pipeline = Pipeline(
                store,
                "fault",
                batch_size=200,
                publish=lambda _e, added: published.extend(m.seq for m in added),
            )
            started = time.monotonic()
            assert await replay(messages(), pipeline, speed=0) == total
            elapsed = time.monotonic() - started
    finally:
        for timer in timers:  # the server is up again before the next test, or the fixture, starts it
            timer.join(timeout=30)
    assert pipeline.stats.added + pipeline.stats.duplicates == total
    assert elapsed >= down_for
    assert_exactly_once(url, "fault", total)
    # What was published live is in order and never twice (a batch whose commit's
    # acknowledgement was lost may be missing from it: dashboards read it on resume).
    assert published == sorted(set(published))


def test_a_paced_replay_rides_out_a_postgres_restart(fault_postgres: Postgres, tmp_path: Path) -> None:
    """`backchannel replay` at its original pace (600 messages, 10 ms apart at this
    speed, six seconds) while the server is down for a second: exit 0, all stored."""
    url = fault_postgres.new_database()
    archive = write_archive(tmp_path / "fault.jsonl", 600, spacing=1.0)
    out = run_through_a_restart(fault_postgres, url, "replay", str(archive), "--speed", "100", after=100)
    assert "600 added" in out
    assert_exactly_once(url, "fault", 600)


def run_through_a_restart(fault_postgres: Postgres, url: str, *args: str, after: int) -> str:
    """Run a command into `url`'s event "fault"; once it has stored `after` messages,
    restart the server, down for a second. The command must meet the outage, say so,
    and end with status 0; return its output."""
    proc = backchannel(*args, "--event", "fault", "--db", url)
    try:
        wait_for_count(url, "fault", after, proc)
        fault_postgres.restart(down_for=1.0)
        status, out, err = finish(proc)
    finally:
        proc.kill()
    assert status == 0, err
    assert "Traceback" not in err
    assert "the database is unavailable" in err  # it did meet the outage, and said so
    return out


def test_a_database_down_longer_than_the_retry_budget_exits_3_with_the_count(
    fault_postgres: Postgres, tmp_path: Path
) -> None:
    url = fault_postgres.new_database()
    archive = write_archive(tmp_path / "fault.jsonl", 600, spacing=1.0)
    proc = backchannel(
        "replay",
        str(archive),
        "--event",
        "fault",
        "--speed",
        "100",
        "--db",
        url,
        env={"BACKCHANNEL_DB_RETRY": "2"},
    )
    try:
        wait_for_count(url, "fault", 100, proc)
        fault_postgres.stop()
        started = time.monotonic()
        status, _, err = finish(proc)
        gave_up_after = time.monotonic() - started
    finally:
        proc.kill()
        fault_postgres.start()
    assert status == 3, err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("backchannel:")]
    assert "the database failed" in line
    stored = int(line.split("; ")[-1].split(" messages stored")[0].replace(",", ""))
    assert stored == stored_count(url, "fault") >= 100
    assert gave_up_after < 2 + 5 + 10  # the budget, one more wait at most, slack for a busy machine


def test_an_import_rides_out_a_postgres_restart(fault_postgres: Postgres, tmp_path: Path) -> None:
    """`backchannel import` of 60,000 messages (batches of 20,000 on PostgreSQL) with the
    server restarted, down for a second, after the first batch is stored."""
    url = fault_postgres.new_database()
    archive = write_archive(tmp_path / "fault.jsonl", 60_000)
    assert "0 rejected" in run_through_a_restart(fault_postgres, url, "import", str(archive), after=1)
    assert_exactly_once(url, "fault", 60_000)


# -- kill -9 at a random moment, then run again -------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("command", ["import", "replay"])
def test_kill_9_at_a_random_moment_then_a_rerun_stores_each_message_once(
    request: pytest.FixtureRequest, tmp_path: Path, database: str, command: str
) -> None:
    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "postgres_url")
    total = 30_000
    archive = write_archive(tmp_path / "fault.jsonl", total)
    args = [command, str(archive), "--event", "fault", "--db", url]
    if command == "replay":
        args += ["--speed", "0"]
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    proc = backchannel(*args)
    try:
        # Wait for the first stored batch, so the kill lands while it writes, then a
        # random moment more.
        wait_for_count(url, "fault", 1, proc)
        time.sleep(rng.uniform(0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        proc.kill()
    partial = stored_count(url, "fault")
    status, out, err = finish(backchannel(*args))
    assert status == 0, f"seed {seed}: {err}"
    assert f"{total - partial} added, {partial} already present" in out, f"seed {seed}"
    assert_exactly_once(url, "fault", total)


async def test_a_flush_cancelled_during_an_outage_keeps_its_batch(fault_postgres: Postgres) -> None:
    """Ctrl-C while the database is down: the batch being retried is not dropped; the
    next flush (a replay's last, once the database is back) stores it."""
    url = fault_postgres.new_database()
    retrying = asyncio.Event()

    class RetrySignal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            retrying.set()

    signal_handler = RetrySignal()
    logging.getLogger("backchannel.dbretry").addHandler(signal_handler)
    with Store(url) as store:
        pipeline = Pipeline(store, "fault", batch_size=1000)
        await pipeline.put_many([msg(i) for i in range(1, 11)])
        await pipeline.flush()
        fault_postgres.stop()
        await pipeline.put_many([msg(i) for i in range(11, 21)])
        flushing = asyncio.create_task(pipeline.flush())
        # Once it has failed and waits to try again, cancel it, as Ctrl-C does.
        try:
            await asyncio.wait_for(retrying.wait(), timeout=30)
        finally:
            logging.getLogger("backchannel.dbretry").removeHandler(signal_handler)
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        fault_postgres.start()
        await asyncio.wait_for(pipeline.flush(), timeout=30)
    assert_exactly_once(url, "fault", 20)
