"""Fixtures shared by the store and session suites: every store kind, a hand-driven clock, Redis clean-up.

Redis is real: the run's own `redis-server` on a free port (tests/support/redis_server.py says why), or the
one ATHENA_TEST_REDIS_URL names; so is the Redis Cluster (three nodes of our own, started once per test
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
from tests.support.redis_server import redis_url, unavailable_reason

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


def _no_redis(why: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"Redis is required in CI: {why}", pytrace=False)
    pytest.skip(why)


async def require_redis() -> str:
    """The Redis URL for this run, once it answers; skips (or fails under CI=true) without one."""
    url = redis_url()
    if url is None:
        _no_redis(unavailable_reason())
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as err:
        _no_redis(f"Redis at {url} is unreachable: {err}")
    finally:
        await client.aclose()
    return url


async def delete_prefix(prefix: str) -> None:
    url = redis_url()
    assert url is not None, "delete_prefix after require_redis only"
    client = aioredis.Redis.from_url(url)
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
        if kind == "redis":  # made after require_redis() said there is one
            self.url = f"{redis_url()}?prefix={self.prefix}"
        else:
            self.url = {
                "memory": "memory://",
                "sqlite": f"sqlite:///{tmp_path / 'sessions' / 'athena.db'}",
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
