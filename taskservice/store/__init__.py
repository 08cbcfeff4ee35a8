"""Task stores behind one protocol, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from taskservice.store.base import ChangeFeed, Subscription, TaskCursor, TaskStore
from taskservice.store.memory import MemoryTaskStore
from taskservice.store.redis import RedisTaskStore
from taskservice.store.sqlite import SqliteTaskStore

__all__ = [
    "ChangeFeed",
    "MemoryTaskStore",
    "RedisTaskStore",
    "SqliteTaskStore",
    "Subscription",
    "TaskCursor",
    "TaskStore",
    "open_store",
]

SUPPORTED = "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db or redis://host:port/db"


def open_store(url: str) -> TaskStore:
    """Open the store a URL names. Raises ValueError for a URL no backend accepts,
    StoreUnavailable for a store that cannot be opened."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryTaskStore()
    if scheme == "sqlite":
        # As SQLAlchemy spells it: three slashes then the path, so an absolute path has four.
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ValueError(f"bad SQLite store URL {url!r}: use {SUPPORTED}")
        return SqliteTaskStore(url[len("sqlite:///") :])
    if scheme in ("redis", "rediss"):
        return RedisTaskStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use {SUPPORTED}")
