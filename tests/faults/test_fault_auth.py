"""Sessions while the database is down: nobody is logged out by the outage, nobody is
let in by it, and a session ended after it still closes its sockets everywhere.

Two app instances on one PostgreSQL database of the fault suite's own cluster, which
the test stops and starts.
"""

# The fixtures imported from test_server are requested by name, as parameters that
# shadow the imports: that is how pytest fixtures work, not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from cryptography.fernet import Fernet
from services import Postgres
from test_server import TIMEOUT, Moderator, Serve, http, serve  # noqa: F401 - fixtures
from test_sessions import browser_with, closed_by_server, cookie_of, dashboard, refused_everywhere

from backchannel.cli import main
from backchannel.server import sessions
from backchannel.store import Store

CHECK_EVERY = 0.5


@pytest.fixture
def store(fault_postgres: Postgres) -> Iterator[Store]:
    """The `serve` fixture's store: a database on the cluster this test may stop."""
    s = Store(fault_postgres.new_database())
    yield s
    s.close()


class FailedChecks(logging.Handler):
    """Counts the socket checks that could not reach the store, and lets a test await one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("could not check the sessions"):
            self.count += 1
            self.seen.set()

    async def next(self) -> None:
        self.seen.clear()
        await asyncio.wait_for(self.seen.wait(), TIMEOUT)


@pytest.fixture
def failed_checks() -> Iterator[FailedChecks]:
    handler = FailedChecks()
    logger = logging.getLogger(sessions.__name__)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def test_a_database_outage_ends_no_session_and_lets_no_one_in(
    serve: Serve,
    http: Callable[..., aiohttp.ClientSession],
    store: Store,
    fault_postgres: Postgres,
    failed_checks: FailedChecks,
) -> None:
    secret = Fernet.generate_key().decode()
    with Store(store.url) as other:
        a = await serve(secret=secret, session_check_every=CHECK_EVERY)
        b = await serve(on=other, secret=secret, session_check_every=CHECK_EVERY)
        alice = Moderator(a, http())
        await alice.login("alice")
        on_b = browser_with(b, http, cookie_of(alice))
        async with dashboard(on_b) as ws:
            await asyncio.to_thread(fault_postgres.stop)
            # B's socket check fails twice: the socket stays open all the same...
            await failed_checks.next()
            await failed_checks.next()
            assert not ws.closed
            # ... and a request can be neither served nor refused: 503, not 401 or 500.
            async with on_b.http.get(b.url("/api/session")) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "5"
            await asyncio.to_thread(fault_postgres.start)
            # The session outlived the outage: it is in the database.
            assert (await on_b.session_info())["user"] == "alice"
            # Removed from the command line after it: B closes the socket within its check.
            started = time.monotonic()
            assert await asyncio.to_thread(main, ["user", "remove", "alice", "--db", store.url]) == 0
            await closed_by_server(ws)
            print(f"closed {time.monotonic() - started:.2f} s after `user remove`")
        await refused_everywhere(on_b, alice.csrf)
        await refused_everywhere(alice, alice.csrf)
