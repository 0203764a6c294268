"""Fixtures shared by the store and session suites: every store kind, a hand-driven clock, Redis clean-up.

Redis is real (127.0.0.1:6379), and so is the Redis Cluster (three nodes of our own, started once per test
session, reached through redis-py's cluster client). Each test gets its own key prefix and deletes only its
own keys. Without Redis the Redis cases skip locally but FAIL when CI=true, so a CI run cannot pass without
having tested them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from athena.config import Settings
from athena.gateway import session_policy
from athena.sessions.manager import SessionManager
from athena.stores import Store, create_store
from tests.support.redis_cluster import LocalCluster

REDIS_URL = os.environ.get("ATHENA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KINDS = ("memory", "sqlite", "redis", "redis-cluster")


class FakeClock:
    """Time that moves only when a test says so. Starts at the wall clock, like Redis key expiry."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


async def require_redis() -> None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except (aioredis.RedisError, OSError):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Redis is required in CI but {REDIS_URL} is unreachable")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    finally:
        await client.aclose()


async def delete_prefix(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class StoreFactory:
    """Store URLs of one kind that all point at the same data (to reopen, or to share between processes)."""

    def __init__(self, kind: str, tmp_path: Path, cluster: LocalCluster | None = None) -> None:
        self.kind = kind
        self.prefix = f"athena-test-{uuid.uuid4().hex[:12]}"
        self.cluster = cluster
        self.url = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{tmp_path / 'sessions' / 'athena.db'}",
            "redis": f"{REDIS_URL}?prefix={self.prefix}",
            "redis-cluster": f"{cluster.url}?prefix={self.prefix}" if cluster else "",
        }[kind]
        self.opened: list[Store] = []

    async def open(self) -> Store:
        store = create_store(self.url)
        await store.open()
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()
        if self.kind == "redis":
            await delete_prefix(self.prefix)
        if self.cluster is not None:
            self.cluster.delete_prefix(self.prefix)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """One real three-node Redis Cluster for the whole test session (tests use their own key prefixes)."""
    with LocalCluster() as cluster:
        yield cluster


@pytest.fixture(params=KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    if request.param == "redis":
        await require_redis()
    cluster = request.getfixturevalue("redis_cluster") if request.param == "redis-cluster" else None
    factory = StoreFactory(request.param, tmp_path, cluster)
    try:
        yield factory
    finally:
        await factory.close_all()


@pytest.fixture
async def store(stores: StoreFactory) -> Store:
    return await stores.open()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_manager(store: Store, clock: FakeClock) -> Callable[..., SessionManager]:
    """manager(**settings): a SessionManager on this test's store and clock (sweep loop not started)."""

    def build(**overrides: object) -> SessionManager:
        settings = Settings(store_url="memory://", **overrides)  # the URL is unused: the store is given
        return SessionManager(store, session_policy(settings), clock=clock)

    return build
