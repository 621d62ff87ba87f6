"""Shared fixtures: real SQLite files and real PostgreSQL databases.

PostgreSQL tests get a database of their own (created and dropped per test), so
parallel runs never see each other's rows. Where PostgreSQL or Redis is missing the
tests skip with a reason, except in CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import unavailable

from backchannel.store import Store

PG_ADMIN_URL = os.environ.get("BACKCHANNEL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BACKCHANNEL_TEST_REDIS", "redis://127.0.0.1:6379/0")
DATA = Path(__file__).parent / "data"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'backchannel.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        unavailable("psycopg", exc)
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"bc_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL at " + admin, exc)
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test against a SQLite file and a PostgreSQL database."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def redis_url() -> str:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover
        unavailable("redis-py", exc)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable("Redis at " + REDIS_URL, exc)
    return REDIS_URL
