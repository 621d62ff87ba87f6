"""Fixtures for the fault suite: a PostgreSQL cluster and a Redis server of the test's
own (see `services.py`), which a test may stop, kill and restart. Where the binaries are
missing the tests skip with a reason, except in CI, where they fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from services import Postgres, Redis
from support import unavailable


@pytest.fixture(scope="session")
def _fault_postgres_cluster() -> Iterator[Postgres]:
    try:
        cluster = Postgres()
        cluster.start()
    except (FileNotFoundError, OSError, TimeoutError) as exc:
        unavailable("a throwaway PostgreSQL cluster (initdb, pg_ctl)", exc)
    yield cluster
    cluster.close()


@pytest.fixture
def fault_postgres(_fault_postgres_cluster: Postgres) -> Iterator[Postgres]:
    """The suite's own PostgreSQL cluster, running when the test starts; a test may
    stop, kill or restart it (it is started again afterwards if the test left it down).
    `fault_postgres.new_database()` gives a fresh database's URL."""
    cluster = _fault_postgres_cluster
    if not cluster.running():
        cluster.start()
    yield cluster
    if not cluster.running():
        cluster.start()


@pytest.fixture
def fault_redis() -> Iterator[Redis]:
    """A redis-server of this test's own on a free port; the test may kill and restart it."""
    server = Redis()
    try:
        server.start()
    except (FileNotFoundError, OSError, TimeoutError) as exc:
        unavailable("a throwaway redis-server", exc)
    yield server
    server.close()
