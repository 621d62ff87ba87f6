"""One collector per source across app instances: PostgreSQL advisory locks.

Each process holds one dedicated connection; a source runs only in the process whose
connection holds that source's advisory lock. PostgreSQL frees a session's locks the
moment its connection ends, so when an instance dies another takes the source over at
its next try (every poll, or every `RETRY` seconds for a stream). On SQLite there is
one process per database file, so every lease is granted.

Overlap is harmless anyway: the store's unique key folds a message collected twice.

`hold` checks the connection every time: a database restart frees every lock, and
the lease is then asked for again on a new connection (taken, or left to whichever
instance asked first). When the database cannot be asked,
`hold` raises `LeaseUnavailable`: the runner backs off as for any store outage rather
than run the source twice or report a standby that is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any, Protocol

from backchannel.errors import StoreError

log = logging.getLogger(__name__)

# How often a standby instance asks for a stream source's lease: with TCP noticing a
# dead peer at once on a clean exit, a source is back within this many seconds.
RETRY = 10.0


# How long to wait for the database's answer when connecting; a hung connection attempt
# must not hold the source forever (the runner backs off and asks again).
CONNECT_TIMEOUT = 10


class LeaseUnavailable(StoreError):
    """The database that grants leases cannot be asked right now."""


def lock_id(key: str) -> int:
    """A stable signed 64-bit advisory lock id for a source key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


class Leases(Protocol):
    async def hold(self, key: str) -> bool:
        """Whether this process holds (or has just taken) the lease for `key`."""
        ...

    async def close(self) -> None: ...


class LocalLeases:
    """Every lease granted: a single process (SQLite, or no other instance)."""

    async def hold(self, key: str) -> bool:
        return True

    async def close(self) -> None:
        return None


class PostgresLeases:
    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self._conn: Any = None  # a psycopg.Connection (psycopg is imported only when used)
        self._held: set[str] = set()
        self._lock = asyncio.Lock()

    def _connect(self) -> Any:
        import psycopg

        # Autocommit: session-level advisory locks live as long as the connection, not
        # a transaction, and an idle-in-transaction session would hold back vacuum.
        return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)

    def _try(self, key: str) -> bool:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            try:
                return self._ask(key)
            except psycopg.OperationalError:
                # The connection died (a database restart) and its locks with it: ask afresh.
                self._close_quietly()
        self._held.clear()
        self._conn = self._connect()
        return self._ask(key)

    def _ask(self, key: str) -> bool:
        conn = self._conn
        if key in self._held:
            conn.execute("SELECT 1")  # alive: the lock is still ours
            return True
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_id(key),)).fetchone()
        return bool(row and row[0])

    async def hold(self, key: str) -> bool:
        async with self._lock:
            try:
                got = await asyncio.to_thread(self._try, key)
            except Exception as exc:  # the database is away: run nothing rather than twice
                self._close_quietly()
                self._held.clear()
                raise LeaseUnavailable(f"cannot ask for the lease on {key}: {exc}") from exc
        if got and key not in self._held:
            self._held.add(key)
            log.info("this instance now collects %s", key)
        elif not got:
            self._held.discard(key)
        return got

    def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()
        self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
            self._conn = None
            self._held.clear()


def leases_for(store_url: str) -> Leases:
    return PostgresLeases(store_url) if store_url.startswith("postgresql") else LocalLeases()
