"""Riding out a database outage: which store errors are worth retrying, and the retry.

Transient: the connection failed or was lost (a PostgreSQL server restarting, shutting
down or starting up, connection refused or reset) or SQLite was busy. Permanent: every
other database error (disk full, read-only database, permission denied, …) and a
transient one that lasts longer than the retry budget (`BACKCHANNEL_DB_RETRY`, 60 s).

Retrying a write is safe because each store write is one transaction, so a failed one
left nothing behind, and ingest is idempotent by URI: a batch sent again is stored
once, numbered without a gap. (When a commit succeeded but its acknowledgement was
lost, the batch sent again counts as "already present", and those rows are not
published live; dashboards read them back from the store on their next resume.)

A writer that gives up raises `DatabaseFailed` with what it had stored; the command
line turns that into one line and exit status 3. Nothing here knows a command.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy.exc
import tenacity

from backchannel import config
from backchannel.errors import DatabaseFailed

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATEs that PostgreSQL sends when it is going away or not yet back: "terminating
# connection due to administrator command", crash shutdown, "cannot connect now"
# (starting up, shutting down, in recovery), too many connections. Class 08 is the
# standard's "connection exception".
_PG_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# SQLite's only transient failures: another connection holds the lock past the busy timeout.
_SQLITE_TRANSIENT = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


def _driver_error(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None else exc


def is_database_error(exc: BaseException) -> bool:
    """An error the database or its driver raised (SQLAlchemy's, sqlite3's or psycopg's)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError | sqlite3.Error):
        return True
    return type(exc).__module__.split(".")[0] == "psycopg" and isinstance(exc, Exception)


def is_transient(exc: BaseException) -> bool:
    """Whether the same call may well succeed a moment later (see the module docstring)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    driver = _driver_error(exc)
    if isinstance(driver, sqlite3.Error):
        return getattr(driver, "sqlite_errorname", None) in _SQLITE_TRANSIENT
    if type(driver).__module__.split(".")[0] != "psycopg":
        return False
    import psycopg

    if not isinstance(driver, psycopg.OperationalError):
        return False
    state = driver.sqlstate
    # A connection that failed or broke carries no SQLSTATE; the server's own errors
    # do, and among the operational ones only these mean "not now" (a full disk, 53100,
    # is operational too, and permanent).
    return state is None or state.startswith("08") or state in _PG_TRANSIENT_STATES


def describe(exc: BaseException) -> str:
    """The driver's message on one line, without SQLAlchemy's statement and links."""
    driver = _driver_error(exc)
    lines = [line.strip() for line in str(driver).splitlines() if line.strip()]
    return lines[0] if lines else type(driver).__name__


def retry_budget() -> float:
    return float(config.setting("db_retry"))


def _policy(budget: float | None) -> dict[str, object]:
    return {
        "retry": tenacity.retry_if_exception(is_transient),
        # The first retry comes 0.1 s later, which catches a fast restart (PostgreSQL's
        # takes a few hundred milliseconds); then doubling with up to 0.1 s of jitter to at
        # most 5 s between tries, so a longer outage is not hammered and several writers
        # do not all come back at once. No try starts after the budget: a database down
        # that long is an outage an operator must hear about.
        "wait": tenacity.wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
        "stop": tenacity.stop_before_delay(retry_budget() if budget is None else budget),
        "before_sleep": _log_retry,
        "reraise": True,
    }


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "the database is unavailable (%s); trying again in %.1f s", describe(exc) if exc else "?", wait
    )


def call(fn: Callable[[], T], *, stored: Callable[[], int], budget: float | None = None) -> T:
    """`fn()`, tried again through transient database errors; a permanent one (or the
    budget running out) raises `DatabaseFailed` carrying `stored()`, the caller's count of
    messages stored so far."""
    try:
        return tenacity.Retrying(**_policy(budget))(fn)  # type: ignore[arg-type]
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise DatabaseFailed(describe(exc), stored=stored()) from exc


async def call_async(
    fn: Callable[[], Awaitable[T]], *, stored: Callable[[], int], budget: float | None = None
) -> T:
    """As `call`, for a coroutine function; the waits between tries do not block the loop."""

    async def attempt() -> T:
        # A coroutine function of its own: tenacity awaits only what one returns.
        return await fn()

    try:
        return await tenacity.AsyncRetrying(**_policy(budget))(attempt)  # type: ignore[arg-type]
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise DatabaseFailed(describe(exc), stored=stored()) from exc
