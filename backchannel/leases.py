"""One collector per source across app instances: PostgreSQL advisory locks.

Each process holds one dedicated connection; a source runs only in the process whose
connection holds that source's advisory lock. PostgreSQL frees a session's locks the
moment its connection ends, so when an instance dies another takes the source over at
its next try (every poll, or every `RETRY` seconds for a stream). On SQLite there is
one process per database file, so every lease is granted.

Overlap is harmless anyway: the store's unique key folds a message collected twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Protocol

log = logging.getLogger(__name__)

# How often a standby instance asks for a stream source's lease: with TCP noticing a
# dead peer at once on a clean exit, a source is back within this many seconds.
RETRY = 10.0


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
        self._conn: object | None = None
        self._held: set[str] = set()
        self._lock = asyncio.Lock()

    def _connect(self) -> object:
        import psycopg

        # Autocommit: session-level advisory locks live as long as the connection, not
        # a transaction, and an idle-in-transaction session would hold back vacuum.
        return psycopg.connect(self.url, autocommit=True)

    def _try(self, key: str) -> bool:
        if self._conn is None or self._conn.closed:  # type: ignore[attr-defined]
            self._held.clear()
            self._conn = self._connect()
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_id(key),)).fetchone()  # type: ignore[attr-defined]
        return bool(row and row[0])

    async def hold(self, key: str) -> bool:
        if key in self._held and self._conn is not None and not self._conn.closed:  # type: ignore[attr-defined]
            return True
        async with self._lock:
            try:
                got = await asyncio.to_thread(self._try, key)
            except Exception as exc:  # the database is away: run nothing rather than twice
                log.warning("could not ask for the lease on %s: %s", key, exc)
                self._conn = None
                return False
        if got:
            self._held.add(key)
            log.info("this instance now collects %s", key)
        return got

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)  # type: ignore[attr-defined]
            self._conn = None
            self._held.clear()


def leases_for(store_url: str) -> Leases:
    return PostgresLeases(store_url) if store_url.startswith("postgresql") else LocalLeases()
