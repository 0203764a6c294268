"""The store contract, run against every store: memory, SQLite (a file under tmp_path) and a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from athena.records import IntentMemory, Message, MessageMeta, ToolCall
from athena.stores import SessionGone, Store
from tests.stores.support import FakeClock, StoreFactory

T, A = 300.0, 3600.0  # timeout, max age


def msg(i: int, role: str = "user") -> Message:
    return Message(role, f"message {i}", 1000.0 + i, MessageMeta(latency_ms=i))  # type: ignore[arg-type]


async def test_acquire_creates_then_touches(store: Store, clock: FakeClock) -> None:
    first = await store.acquire("kitchen", clock.now, T, A, "01A")
    assert first.created and first.ended is None
    assert first.session.id == "01A" and first.session.device == "kitchen"
    assert first.session.expires_at == clock.now + T
    clock.advance(100)
    again = await store.acquire("kitchen", clock.now, T, A, "01B")
    assert not again.created and again.session.id == "01A"
    assert again.session.last_activity == clock.now
    assert again.session.expires_at == clock.now + T
    assert (await store.get("kitchen")) == again.session
    assert (await store.get_by_id("01A")) == again.session
    assert await store.get_by_id("01B") is None
    assert await store.get("office") is None


async def test_acquire_replaces_expired_and_forced(store: Store, clock: FakeClock) -> None:
    await store.acquire("kitchen", clock.now, T, A, "01A")
    await store.append("01A", [msg(1)], clock.now, T, A, 10)
    clock.advance(T)  # expires_at == now: no longer live
    got = await store.acquire("kitchen", clock.now, T, A, "01B")
    assert got.created and got.session.id == "01B"
    assert got.ended is not None and got.ended.id == "01A" and got.ended.turns == 1
    assert await store.history("01A", 10) == []
    assert await store.get_by_id("01A") is None
    forced = await store.acquire("kitchen", clock.now, T, A, "01C", force_new=True)
    assert forced.created and forced.ended is not None and forced.ended.id == "01B"


async def test_max_age_caps_expiry(store: Store, clock: FakeClock) -> None:
    start = clock.now
    await store.acquire("kitchen", clock.now, 300, 500, "01A")
    clock.advance(250)
    touched = (await store.acquire("kitchen", clock.now, 300, 500, "01B")).session
    assert touched.id == "01A" and touched.expires_at == start + 500 and touched.ended_by_age
    clock.advance(250)  # active all along, but 500 s old
    replaced = await store.acquire("kitchen", clock.now, 300, 500, "01C")
    assert replaced.created and replaced.ended is not None and replaced.ended.ended_by_age


async def test_append_history_order_meta_and_cap(store: Store, clock: FakeClock) -> None:
    await store.acquire("kitchen", clock.now, T, A, "01A")
    for i in range(0, 10, 2):
        clock.advance(1)
        session = await store.append("01A", [msg(i), msg(i + 1, "assistant")], clock.now, T, A, 6)
    assert session.turns == 5 and session.last_activity == clock.now
    kept = await store.history("01A", 100)
    assert [m.content for m in kept] == [f"message {i}" for i in range(4, 10)]
    assert kept[0] == msg(4) and kept[1].role == "assistant" and kept[1].meta == MessageMeta(latency_ms=5)
    assert [m.content for m in await store.history("01A", 2)] == ["message 8", "message 9"]
    assert await store.history("01A", 0) == []


async def test_append_to_replaced_session_is_gone(store: Store, clock: FakeClock) -> None:
    await store.acquire("kitchen", clock.now, T, A, "01A")
    await store.acquire("kitchen", clock.now, T, A, "01B", force_new=True)
    with pytest.raises(SessionGone):
        await store.append("01A", [msg(1)], clock.now, T, A, 10)
    with pytest.raises(SessionGone):
        await store.append("01A", [msg(1)], clock.now, T, A, 10, device="kitchen")
    assert await store.history("01B", 10) == []
    await store.clear("kitchen")
    with pytest.raises(SessionGone):
        await store.append("01B", [msg(1)], clock.now, T, A, 10)


async def test_clear_and_listing(store: Store, clock: FakeClock) -> None:
    for i, device in enumerate(("kitchen", "office", "hall")):
        await store.acquire(device, clock.now, T, A, f"01{i}")
    await store.append("010", [msg(1)], clock.now, T, A, 10)
    removed = await store.clear("kitchen")
    assert removed is not None and removed.id == "010" and removed.turns == 1
    assert await store.clear("kitchen") is None
    assert await store.get("kitchen") is None and await store.history("010", 10) == []
    assert sorted(s.device for s in await store.sessions()) == ["hall", "office"]
    assert await store.count(clock.now) == 2


async def test_sweep_removes_only_what_is_due(store: Store, clock: FakeClock) -> None:
    start = clock.now
    for i in range(5):
        await store.acquire(f"dev{i}", start, T, A, f"01{i}")
        await store.append(f"01{i}", [msg(i)], start, T, A, 10)
    clock.advance(200)
    await store.acquire("dev0", clock.now, T, A, "x")  # touched: now due at start+500, indexed at start+300
    await store.append("011", [msg(9)], clock.now, T, A, 10)  # likewise through a turn
    clock.advance(150)  # start+350: dev2..dev4 are past their deadline
    removed = await store.sweep(clock.now, limit=2)
    assert len(removed) == 2
    removed += await store.sweep(clock.now, limit=100)
    assert sorted(s.device for s in removed) == ["dev2", "dev3", "dev4"]
    assert all(s.turns == 1 for s in removed)
    assert await store.sweep(clock.now) == []
    assert sorted(s.device for s in await store.sessions()) == ["dev0", "dev1"]
    assert await store.count(clock.now) == 2
    for i in (2, 3, 4):
        assert await store.history(f"01{i}", 10) == [] and await store.get_by_id(f"01{i}") is None
    clock.advance(151)  # start+501
    assert sorted(s.device for s in await store.sweep(clock.now)) == ["dev0", "dev1"]
    assert await store.count(clock.now) == 0


async def test_concurrent_acquire_and_append_one_device(store: Store, clock: FakeClock) -> None:
    async def turn(i: int) -> str:
        got = await store.acquire("kitchen", clock.now, T, A, f"01ID{i:03d}")
        await store.append(got.session.id, [msg(2 * i), msg(2 * i + 1, "assistant")], clock.now, T, A, 1000)
        return got.session.id

    ids = await asyncio.gather(*(turn(i) for i in range(50)))
    assert len(set(ids)) == 1
    session = await store.get("kitchen")
    assert session is not None and session.turns == 50
    contents = sorted(m.content for m in await store.history(session.id, 1000))
    assert contents == sorted(f"message {i}" for i in range(100))


# memory:// is lost on restart by design
@pytest.mark.parametrize("stores", ["sqlite", "redis", "redis-cluster"], indirect=True)
async def test_reopen_keeps_sessions_and_history(stores: StoreFactory, clock: FakeClock) -> None:
    first = await stores.open()
    await first.acquire("kitchen", clock.now, T, A, "01A")
    await first.append("01A", [msg(1), msg(2, "assistant")], clock.now, T, A, 10)
    await first.close()
    second = await stores.open()
    session = await second.get("kitchen")
    assert session is not None and session.id == "01A" and session.turns == 1
    assert [m.content for m in await second.history("01A", 10)] == ["message 1", "message 2"]
    assert (await second.acquire("kitchen", clock.now + 1, T, A, "01B")).session.id == "01A"


async def test_unicode_and_large_messages_round_trip(store: Store, clock: FakeClock) -> None:
    await store.acquire("kitchen", clock.now, T, A, "01A")
    text = "Schalte das Licht in der Küche an 💡 " * 200
    meta = MessageMeta(
        path="local",
        intent=IntentMemory("HassTurnOn", {"area": "Küche"}, "de", entity_ids=["light.küche"]),
        tool_calls=(ToolCall("call_1", "HassTurnOn", '{"area": "Küche"}'),),
    )
    await store.append("01A", [Message("assistant", text, clock.now, meta)], clock.now, T, A, 10)
    [back] = await store.history("01A", 10)
    assert back.content == text and back.meta == meta
