"""Session stores, chosen by URL: `sqlite:///path`, `redis://host:port/db[?prefix=name]`,
`redis+cluster://host:port[?prefix=name]` (a Redis Cluster, one seed node), `memory://`."""

from __future__ import annotations

from athena.stores.base import Acquired, SessionGone, Store, StoreDegraded, StoreError

__all__ = [
    "Acquired", "SessionGone", "Store", "StoreDegraded", "StoreError", "create_store", "store_kind",
]


def store_kind(url: str) -> str:
    """"sqlite", "redis", "redis-cluster" or "memory", as /athena/info reports it."""
    scheme = url.split(":", 1)[0]
    if scheme in ("redis+cluster", "rediss+cluster"):
        return "redis-cluster"
    return "redis" if scheme in ("redis", "rediss") else scheme


def create_store(url: str) -> Store:
    """A store for the URL, not yet opened (call `open()`; the session manager's `start()` does)."""
    kind = store_kind(url)
    if kind == "memory":
        from athena.stores.memory import MemoryStore

        return MemoryStore()
    if kind == "sqlite":
        from athena.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if kind in ("redis", "redis-cluster"):
        from athena.stores.redis import RedisStore

        return RedisStore.from_url(url)
    raise ValueError(f"unknown store URL {url!r}; use sqlite:///path, redis://host:port/db or memory://")
