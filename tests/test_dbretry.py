"""Which database errors are retried: each case is a real error from a real database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import free_port, msg

from backchannel import dbretry
from backchannel.errors import DatabaseFailed
from backchannel.store import Store


def raised(action) -> BaseException:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception) as info:
        action()
    return info.value


def test_a_refused_connection_is_transient() -> None:
    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    error = raised(engine.connect)
    engine.dispose()
    assert dbretry.is_database_error(error) and dbretry.is_transient(error)
    assert dbretry.describe(error).startswith("connection failed:")


def test_sqlite_busy_is_transient_and_read_only_is_not(tmp_path: Path) -> None:
    path = tmp_path / "bc.db"
    Store(str(path)).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    busy = raised(lambda: waiter.execute("BEGIN IMMEDIATE"))
    holder.close()
    waiter.close()
    assert dbretry.is_transient(busy)
    with Store(f"sqlite:///file:{path}?mode=ro&uri=true") as readonly:
        error = raised(lambda: readonly.ingest("e", [msg(1)]))
    assert dbretry.is_database_error(error) and not dbretry.is_transient(error)
    assert dbretry.describe(error) == "attempt to write a readonly database"


@pytest.mark.postgres
def test_a_read_only_postgres_transaction_is_permanent(postgres_url: str) -> None:
    with Store(postgres_url) as store, store.engine.connect() as conn:
        conn.exec_driver_sql("SET default_transaction_read_only = on")
        conn.commit()
        error = raised(lambda: conn.exec_driver_sql("CREATE TABLE t (x int)"))
    assert dbretry.is_database_error(error) and not dbretry.is_transient(error)


def test_a_permanent_error_is_not_retried_and_carries_the_count(tmp_path: Path) -> None:
    path = tmp_path / "bc.db"
    Store(str(path)).close()
    calls = []
    with Store(f"sqlite:///file:{path}?mode=ro&uri=true") as readonly:

        def write() -> object:
            calls.append(1)
            return readonly.ingest("e", [msg(1)])

        with pytest.raises(DatabaseFailed, match="readonly") as failure:
            dbretry.call(write, stored=lambda: 42, budget=30)
    assert len(calls) == 1 and failure.value.stored == 42


def test_a_transient_error_is_retried_until_the_budget_runs_out() -> None:
    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    calls = []

    def connect() -> object:
        calls.append(1)
        return engine.connect()

    with pytest.raises(DatabaseFailed, match="connection failed") as failure:
        dbretry.call(connect, stored=lambda: 7, budget=0.5)
    engine.dispose()
    assert len(calls) >= 2 and failure.value.stored == 7


def test_other_errors_pass_through() -> None:
    def broken() -> None:
        raise KeyError("not the database's")

    with pytest.raises(KeyError):
        dbretry.call(broken, stored=lambda: 0)
