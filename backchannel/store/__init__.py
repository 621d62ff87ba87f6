"""Persistence: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL."""

from backchannel.store.store import EventInfo, IngestResult, Store, normalise_url

__all__ = ["EventInfo", "IngestResult", "Store", "normalise_url"]
