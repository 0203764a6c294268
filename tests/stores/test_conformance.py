"""The store contract, run against every store: memory, SQLite (a file under tmp_path) and a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from athena.records import (
    DeviceRecord,
    DeviceSettings,
    IntentMemory,
    Message,
    MessageMeta,
    ToolCall,
    UsageRow,
    Visit,
)
from athena.stores import DeviceChanged, Retention, SessionGone, Store, create_store
from athena.stores.redis import RedisStore
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


# -- what the operator's console reads: past sessions, devices and their settings, usage ---------------
DAY = 86_400.0


def usage(clock: FakeClock, device: str, sid: str, path: str = "llm", latency: float = 10.0) -> UsageRow:
    return UsageRow(clock.now, device, sid, path, latency)


async def test_ended_sessions_are_kept_with_their_messages_and_why(store: Store, clock: FakeClock) -> None:
    start = clock.now
    await store.acquire("kitchen", clock.now, T, A, "01A")
    await store.append("01A", [msg(1), msg(2, "assistant")], clock.now, T, A, 10)
    clock.advance(10)
    await store.acquire("kitchen", clock.now, T, A, "01B", force_new=True)  # "start over"
    await store.append("01B", [msg(3)], clock.now, T, A, 10)
    clock.advance(10)
    await store.clear("kitchen", clock.now)  # the operator's "end session"
    await store.acquire("kitchen", clock.now, T, A, "01C")
    clock.advance(T)
    await store.acquire("kitchen", clock.now, T, A, "01D")  # 01C timed out
    await store.acquire("hall", clock.now, 300, 400, "01E")
    await store.append("01E", [msg(4)], clock.now, 300, 400, 10)
    clock.advance(250)
    await store.acquire("hall", clock.now, 300, 400, "x")
    clock.advance(200)  # 01E is 450 s old: past its maximum age
    assert {s.id for s in await store.sweep(clock.now)} == {"01D", "01E"}
    past = await store.past("kitchen", clock.now)
    assert [(p.session.id, p.reason) for p in past] == [
        ("01D", "timeout"), ("01C", "timeout"), ("01B", "cleared"), ("01A", "start_over"),
    ]
    assert past[-1].ended_at == start + 10 and past[-1].session.turns == 1
    assert [m.content for m in await store.past_history("kitchen", "01A", 100)] == ["message 1", "message 2"]
    assert [m.content for m in await store.past_history("kitchen", "01A", 1)] == ["message 2"]
    assert await store.history("01A", 10) == []  # an ended session is no live history
    assert await store.past_history("hall", "01A", 10) == []  # another device's
    [hall] = await store.past("hall", clock.now)
    assert hall.reason == "max_age" and hall.session.turns == 1
    # Past the retention (a week by default) it is gone from every store.
    later = clock.now + 7 * DAY + 1
    assert await store.past("kitchen", later) == []
    await store.purge(later)
    if not isinstance(store, RedisStore):  # Redis drops them by key expiry (checked in test_redis.py)
        assert await store.past("kitchen", clock.now) == []
        assert await store.past_history("kitchen", "01A", 100) == []


async def test_no_retention_keeps_no_transcript(stores: StoreFactory, clock: FakeClock) -> None:
    store = create_store(stores.url, Retention(transcripts=0))
    await store.open()
    stores.opened.append(store)
    await store.acquire("kitchen", clock.now, T, A, "01A")
    await store.append("01A", [msg(1)], clock.now, T, A, 10)
    await store.acquire("kitchen", clock.now, T, A, "01B", force_new=True)
    await store.clear("kitchen")
    assert await store.past("kitchen", clock.now) == []
    assert await store.past_history("kitchen", "01A", 10) == []


async def test_a_visit_records_the_device_in_the_same_step(store: Store, clock: FakeClock) -> None:
    first = clock.now
    await store.acquire("kitchen", clock.now, T, A, "01A", visit=Visit("Kitchen Display", "Kitchen", 0))
    clock.advance(5)
    await store.acquire("kitchen", clock.now, T, A, "01B", visit=Visit(None, None, 0))  # names kept
    record = await store.device("kitchen")
    assert record == DeviceRecord(
        "kitchen", "Kitchen Display", "Kitchen", first_seen=first, last_seen=clock.now, turns=2
    )
    await store.acquire("office", clock.now, T, A, "01C")  # no visit (not a device turn): no record
    assert await store.device("office") is None
    assert [d.id for d in await store.devices()] == ["kitchen"]


async def test_a_changed_version_refuses_the_turn_and_writes_nothing(store: Store, clock: FakeClock) -> None:
    await store.acquire("kitchen", clock.now, T, A, "01A", visit=Visit(version=0))
    changed = await store.configure("kitchen", {"timeout": 600.0}, clock.now)
    assert changed.version == 1 and changed.settings == DeviceSettings(timeout=600.0)
    before = await store.get("kitchen")
    clock.advance(5)
    with pytest.raises(DeviceChanged) as caught:
        await store.acquire("kitchen", clock.now, T, A, "01X", force_new=True, visit=Visit(version=0),
                            usage=usage(clock, "kitchen", "01X", "reset"))
    assert caught.value.record.version == 1 and caught.value.record.settings.timeout == 600.0
    assert await store.get("kitchen") == before
    assert (await store.device("kitchen")).turns == 1  # type: ignore[union-attr]
    assert await store.usage(0, clock.now + 1) == []
    got = await store.acquire("kitchen", clock.now, 600, A, "01Y", visit=Visit(version=1))
    assert got.session.id == "01A" and got.session.timeout == 600


async def test_configure_merges_clears_and_counts_versions(store: Store, clock: FakeClock) -> None:
    await store.configure("hall", {"timeout": 600.0, "status": "blocked", "history": 4}, clock.now)
    await store.configure("hall", {"language": "de", "system_prompt": "Sprich Deutsch."}, clock.now)
    record = await store.configure("hall", {"timeout": None, "history": None}, clock.now)
    assert record.version == 3 and record.first_seen is None and record.turns == 0
    assert record.settings == DeviceSettings(language="de", system_prompt="Sprich Deutsch.", status="blocked")
    assert await store.device("hall") == record
    assert [d.id for d in await store.devices()] == ["hall"]


async def test_refused_turns_are_recorded(store: Store, clock: FakeClock) -> None:
    refused = usage(clock, "porch", "", "refused")
    record = await store.refuse("porch", clock.now, Visit("Porch", "Outside", 0), refused)
    assert (record.refused, record.turns, record.name, record.first_seen) == (1, 0, "Porch", clock.now)
    again = await store.refuse("porch", clock.now + 1, Visit(), usage(clock, "porch", "", "refused"))
    assert again.refused == 2 and again.last_seen == clock.now + 1 and again.name == "Porch"
    assert [r.path for r in await store.usage(0, clock.now + 10)] == ["refused", "refused"]
    assert await store.get("porch") is None


async def test_usage_rows_by_time_window_even_when_the_session_is_gone(
    store: Store, clock: FakeClock
) -> None:
    start = clock.now
    await store.acquire("kitchen", clock.now, T, A, "01A", usage=usage(clock, "kitchen", "01A", "reset", 1))
    await store.append("01A", [msg(1)], clock.now, T, A, 10, usage=usage(clock, "kitchen", "01A", "local", 5))
    clock.advance(DAY)  # the next (UTC) day
    await store.acquire("kitchen", clock.now, T, A, "01B", force_new=True)
    late = usage(clock, "kitchen", "01A", "llm", 700)
    with pytest.raises(SessionGone):  # answered, but "start over" won the race: the row is kept
        await store.append("01A", [msg(2)], clock.now, T, A, 10, usage=late)
    await store.append("01B", [msg(3)], clock.now, T, A, 10,
                       usage=UsageRow(clock.now, "kitchen", "01B", "tools", 900.0, tools=2))
    await store.acquire("conversation:x", clock.now, T, A, "01C")
    await store.append("01C", [msg(4)], clock.now, T, A, 10, usage=usage(clock, "conversation:x", "01C"))
    rows = await store.usage(start, clock.now + 1)
    assert sorted((r.ts, r.device, r.session_id, r.path, r.latency_ms, r.tools) for r in rows) == sorted([
        (start, "kitchen", "01A", "reset", 1.0, 0), (start, "kitchen", "01A", "local", 5.0, 0),
        (clock.now, "kitchen", "01A", "llm", 700.0, 0), (clock.now, "kitchen", "01B", "tools", 900.0, 2),
        (clock.now, "conversation:x", "01C", "llm", 10.0, 0),
    ])
    assert [r.ts for r in rows] == sorted(r.ts for r in rows)
    assert [r.path for r in await store.usage(start, start + 1)] == ["reset", "local"]
    assert [r.path for r in await store.usage(start + 1, clock.now)] == []
    assert await store.usage(clock.now, clock.now) == []


async def test_forget_deletes_everything_about_a_device(store: Store, clock: FakeClock) -> None:
    for device in ("kitchen", "hall"):
        await store.acquire(device, clock.now, T, A, f"01{device}", visit=Visit("x", None, 0))
        row = usage(clock, device, f"01{device}")
        await store.append(f"01{device}", [msg(1)], clock.now, T, A, 10, usage=row)
    await store.acquire("kitchen", clock.now, T, A, "01K2", force_new=True, visit=Visit(version=0))
    await store.configure("kitchen", {"timeout": 60.0}, clock.now)
    assert await store.forget("kitchen")
    assert await store.device("kitchen") is None and await store.get("kitchen") is None
    assert await store.get_by_id("01K2") is None
    assert await store.past("kitchen", clock.now) == []
    assert await store.past_history("kitchen", "01kitchen", 9) == []
    assert [r.device for r in await store.usage(0, clock.now + 1)] == ["hall"]
    assert [d.id for d in await store.devices()] == ["hall"]
    assert {s.device for s in await store.sessions()} == {"hall"}
    assert not await store.forget("kitchen")
    # The device comes back as new on its next turn.
    got = await store.acquire("kitchen", clock.now, T, A, "01K3", visit=Visit(version=0))
    assert got.created and (await store.device("kitchen")).turns == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("stores", ["sqlite", "redis"], indirect=True)
async def test_reopen_keeps_devices_past_sessions_and_usage(stores: StoreFactory, clock: FakeClock) -> None:
    first = await stores.open()
    await first.acquire("kitchen", clock.now, T, A, "01A", visit=Visit("Kitchen", None, 0))
    await first.append("01A", [msg(1)], clock.now, T, A, 10, usage=usage(clock, "kitchen", "01A"))
    await first.configure("kitchen", {"timeout": 42.0, "status": "allowed"}, clock.now)
    await first.clear("kitchen", clock.now)
    await first.close()
    second = await stores.open()
    record = await second.device("kitchen")
    assert record is not None and record.settings == DeviceSettings(timeout=42.0, status="allowed")
    assert record.version == 1 and record.name == "Kitchen"
    assert [p.session.id for p in await second.past("kitchen", clock.now)] == ["01A"]
    assert [r.session_id for r in await second.usage(0, clock.now + 1)] == ["01A"]


async def test_acquire_reads_a_found_sessions_newest_messages_in_the_same_step(
    store: Store, clock: FakeClock
) -> None:
    """A turn's one read: the session and its history together (a new session has none)."""
    fresh = await store.acquire("kitchen", clock.now, T, A, "01A", history=4)
    assert fresh.created and fresh.messages == []
    for i in range(0, 6, 2):
        clock.advance(1)
        await store.append("01A", [msg(i), msg(i + 1, "assistant")], clock.now, T, A, 100)
    clock.advance(1)
    found = await store.acquire("kitchen", clock.now, T, A, "01B", history=4)
    assert not found.created and found.session.id == "01A"
    assert [m.content for m in found.messages] == [f"message {i}" for i in range(2, 6)]
    assert found.messages == await store.history("01A", 4)
    assert (await store.acquire("kitchen", clock.now, T, A, "01C")).messages == []  # not asked: not read
    replaced = await store.acquire("kitchen", clock.now, T, A, "01D", force_new=True, history=4)
    assert replaced.created and replaced.messages == []
