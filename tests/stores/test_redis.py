"""What only the Redis store promises: cluster-safe keys, Redis-side expiry, nothing left behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from athena.records import Message
from athena.stores import Retention
from athena.stores.redis import RedisStore
from tests.stores.support import FakeClock, delete_prefix, require_redis


@pytest.fixture
async def redis_store() -> AsyncIterator[tuple[RedisStore, aioredis.Redis]]:
    url = await require_redis()
    prefix = f"athena-test-{uuid.uuid4().hex[:12]}"
    store = RedisStore(url, prefix=prefix, grace=60)
    client = aioredis.Redis.from_url(url)
    await store.open()
    try:
        yield store, client
    finally:
        await store.close()
        await client.aclose()
        await delete_prefix(prefix)


async def keys(client: aioredis.Redis, prefix: str) -> list[str]:
    return sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}:*")])


async def test_device_keys_share_a_slot_and_carry_an_expiry(
    redis_store: tuple[RedisStore, aioredis.Redis], clock: FakeClock
) -> None:
    store, client = redis_store
    got = await store.acquire("kitchen", clock.now, 300, 3600, "01A")
    await store.append("01A", [Message("user", "hi", clock.now)], clock.now, 300, 3600, 10)
    session_key, history_key, *_ = store._keys("kitchen")
    assert session_key == f"{store.prefix}:{{kitchen}}:session"
    assert key_slot(session_key.encode()) == key_slot(history_key.encode())
    assert await keys(client, store.prefix) == sorted(
        [session_key, history_key, f"{store.prefix}:expiry", f"{store.prefix}:sid:01A"]
    )
    for key in (session_key, history_key):
        ttl = await client.pttl(key)
        assert 300_000 < ttl <= 360_000  # the session's deadline plus the 60 s grace
    assert await client.zscore(f"{store.prefix}:expiry", "01A|kitchen") == got.session.expires_at


@pytest.mark.parametrize("retention_days", [0, 7])
async def test_only_retained_past_sessions_are_left_after_sessions_end(
    redis_store: tuple[RedisStore, aioredis.Redis], clock: FakeClock, retention_days: int
) -> None:
    store, client = redis_store
    store.retention = Retention(transcripts=retention_days * 86_400.0)
    store._retention_ms = int(store.retention.transcripts * 1000)
    for device in ("kitchen", "office", "hall"):
        got = await store.acquire(device, clock.now, 300, 3600, f"01{device}")
        await store.append(got.session.id, [Message("user", "hi", clock.now)], clock.now, 300, 3600, 10)
    await store.acquire("hall", clock.now, 300, 3600, "01new", force_new=True)  # retires 01hall
    await store.clear("office")
    assert await store.get_by_id("01hall") is None and await store.get_by_id("01office") is None
    clock.advance(301)
    assert {s.device for s in await store.sweep(clock.now)} == {"kitchen", "hall"}
    left = await keys(client, store.prefix)
    if not retention_days:
        assert left == []
        return
    # Each ended session: its record and its history (01new had none), expiring with the retention; and
    # each device's index of them.
    p = store.prefix
    assert sorted(left) == sorted(
        [f"{p}:{{{d}}}:past" for d in ("kitchen", "office", "hall")]
        + [f"{p}:{{{d}}}:past:01{d}{h}" for d in ("kitchen", "office", "hall") for h in ("", ":history")]
        + [f"{p}:{{hall}}:past:01new"]
    )
    for key in left:
        assert 0 < await client.pttl(key) <= retention_days * 86_400_000


async def test_a_store_nobody_sweeps_still_empties_itself(
    redis_store: tuple[RedisStore, aioredis.Redis], clock: FakeClock
) -> None:
    store, client = redis_store
    store.grace_ms = 0
    await store.acquire("kitchen", clock.now, 0.05, 3600, "01A")  # a 50 ms session: Redis drops its keys
    session_key, *_ = store._keys("kitchen")
    assert 0 < await client.pttl(session_key) <= 50
