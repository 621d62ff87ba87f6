"""The fault suite's own services start, die and come back as the other fault tests expect."""

from __future__ import annotations

import psycopg
import pytest
import redis
from services import Postgres, Redis


def test_postgres_cluster_survives_a_crash_and_a_restart(fault_postgres: Postgres) -> None:
    url = fault_postgres.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    fault_postgres.kill()
    assert not fault_postgres.running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    fault_postgres.start()
    fault_postgres.restart(down_for=0.2)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_redis_server_can_be_killed_and_restarted(fault_redis: Redis) -> None:
    client = redis.Redis.from_url(fault_redis.url, socket_connect_timeout=1)
    assert client.ping()
    fault_redis.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    fault_redis.start()
    assert client.ping()
    client.close()
