"""The session policy over every store: timeouts, max age, overrides, clear, listing, sweep, history."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from athena.config import DevicePolicy
from athena.records import InvalidDeviceId, Message
from athena.sessions import manager as manager_module
from athena.sessions.manager import SessionManager
from athena.stores import SessionGone, Store, StoreError
from tests.stores.support import FakeClock

Build = Callable[..., SessionManager]


def turn(i: int, text: str | None = None) -> tuple[Message, Message]:
    return (Message("user", text or f"question {i}", 0.0), Message("assistant", f"answer {i}", 0.0))


def events(logs: list[dict], name: str) -> list[dict]:
    return [e for e in logs if e["event"] == name]


def ended(reason: str) -> float:
    return REGISTRY.get_sample_value("athena_sessions_ended_total", {"reason": reason}) or 0.0


async def test_follow_up_lands_in_same_session_until_timeout(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager(session_timeout=300)
    with capture_logs() as logs:
        first = await m.resolve("kitchen")
        clock.advance(299)
        assert (await m.resolve("kitchen")).id == first.id
        clock.advance(299)  # idle time counts from the last activity
        assert (await m.resolve("kitchen")).id == first.id
        before = ended("timeout")
        clock.advance(300)
        second = await m.resolve("kitchen")
    assert second.id != first.id and second.turns == 0
    assert [e["session_id"] for e in events(logs, "session.created")] == [first.id, second.id]
    assert len(events(logs, "session.found")) == 2
    [expired] = events(logs, "session.expired")
    assert expired["reason"] == "timeout" and expired["session_id"] == first.id
    assert ended("timeout") == before + 1


async def test_max_age_ends_a_busy_session(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager(session_timeout=300, session_max_age=1000)
    first = await m.resolve("kitchen")
    for _ in range(4):
        clock.advance(240)
        await m.append_turn(await m.resolve("kitchen"), *turn(1))
    info = await m.describe("kitchen")
    assert info is not None and info["expires_reason"] == "max_age"
    assert info["expires_at"] == first.created_at + 1000 and info["turns"] == 4
    clock.advance(40)  # 1000 s old; idle only 40 s
    with capture_logs() as logs:
        second = await m.resolve("kitchen")
    assert second.id != first.id
    assert events(logs, "session.expired")[0]["reason"] == "max_age"


async def test_expiry_is_enforced_at_lookup_without_a_sweep(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager(session_timeout=60)
    session = await m.resolve("kitchen")
    assert (await m.active("kitchen")) == session and (await m.get(session.id)) == session
    clock.advance(60)
    assert await m.active("kitchen") is None
    assert await m.get(session.id) is None
    assert await m.describe("kitchen") is None
    assert await m.list_active() == []


async def test_per_device_overrides_by_id_and_by_name(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager(
        session_timeout=300,
        devices={"kitchen": DevicePolicy(timeout=900), "office speaker": DevicePolicy(max_age=600)},
    )
    kitchen = await m.resolve("kitchen")
    office = await m.resolve("a1b2c3", name="office speaker")
    hall = await m.resolve("hall", name="unknown name")
    assert (kitchen.timeout, kitchen.max_age) == (900, 86_400)
    assert (office.timeout, office.max_age) == (300, 600)
    assert (hall.timeout, hall.max_age) == (300, 86_400)
    clock.advance(500)
    assert (await m.resolve("kitchen")).id == kitchen.id
    assert (await m.resolve("hall")).id != hall.id
    # The turn keeps the policy its session was resolved with, though the name is not passed again.
    updated = await m.append_turn(office, *turn(1))
    assert updated.max_age == 600 and updated.expires_at == office.created_at + 600


async def test_clear_starts_over(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager()
    session = await m.resolve("kitchen")
    await m.append_turn(session, *turn(1))
    before = ended("cleared")
    with capture_logs() as logs:
        assert await m.clear("kitchen") is True
    assert events(logs, "session.cleared")[0]["session_id"] == session.id
    assert ended("cleared") == before + 1
    assert await m.clear("kitchen") is False
    assert await m.active("kitchen") is None
    fresh = await m.resolve("kitchen")
    assert fresh.id != session.id and await m.history(fresh) == []
    with pytest.raises(SessionGone):
        await m.append_turn(session, *turn(2))


async def test_new_session_on_request_retires_the_old(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager()
    old = await m.resolve("kitchen")
    new = await m.resolve("kitchen", new=True)
    assert new.id != old.id
    with pytest.raises(SessionGone):
        await m.append_turn(old, *turn(1))
    await m.append_turn(new, *turn(1))
    assert [x.content for x in await m.history(new)] == ["question 1", "answer 1"]


async def test_describe_and_list_active(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager(session_timeout=300)
    await m.resolve("hall")
    clock.advance(100)
    kitchen = await m.append_turn(await m.resolve("kitchen"), *turn(1))
    clock.advance(100)
    await m.resolve("office")
    clock.advance(150)  # hall (idle 250 s) is live, then expires
    info = await m.describe("kitchen")
    assert info == {
        "id": kitchen.id, "device": "kitchen", "created_at": kitchen.created_at,
        "last_activity": kitchen.last_activity, "turns": 1, "expires_at": kitchen.last_activity + 300,
        "expires_in": 50.0, "expires_reason": "timeout", "timeout": 300.0, "max_age": 86_400.0,
    }
    assert [d["device"] for d in await m.list_active()] == ["office", "kitchen"]
    assert await m.describe("nobody") is None


async def test_history_is_trimmed_by_count_and_tokens(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager(history_context_messages=4, history_token_budget=1000)
    session = await m.resolve("kitchen")
    for i in range(5):
        session = await m.append_turn(session, *turn(i))
    assert session.turns == 5
    expected = ["question 3", "answer 3", "question 4", "answer 4"]
    assert [x.content for x in await m.history(session)] == expected

    # "answer N" is 2 tokens, the long question 25: a budget of 28 keeps newest-first while they fit.
    m = make_manager(history_context_messages=20, history_token_budget=28)
    session = await m.append_turn(session, *turn(9, text="x" * 100))
    assert [x.content for x in await m.history(session)] == ["x" * 100, "answer 9"]
    m = make_manager(history_context_messages=20, history_token_budget=26)
    assert [x.content for x in await m.history(session)] == ["answer 9"]
    m = make_manager(history_context_messages=0)
    assert await m.history(session) == []


async def test_stored_history_is_capped(make_manager: Build, store: Store, clock: FakeClock) -> None:
    m = make_manager(history_max_messages=6, history_context_messages=100)
    session = await m.resolve("chatty")
    for i in range(20):
        session = await m.append_turn(session, *turn(i))
    assert session.turns == 20
    stored = await store.history(session.id, 1000)
    assert [x.content for x in stored] == [f"{k} {i}" for i in (17, 18, 19) for k in ("question", "answer")]


async def test_sweep_reports_what_ended(make_manager: Build, clock: FakeClock,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "SWEEP_BATCH", 2)  # several batches in one sweep
    m = make_manager(session_timeout=300, session_max_age=400)
    for i in range(5):
        await m.resolve(f"dev{i}")
    clock.advance(250)
    await m.resolve("dev0")
    await m.resolve("dev1")
    clock.advance(100)  # dev2..dev4 timed out
    with capture_logs() as logs:
        assert await m.sweep() == 3
    cleaned = events(logs, "session.cleaned_up")
    assert sorted(e["device"] for e in cleaned) == ["dev2", "dev3", "dev4"]
    assert {e["reason"] for e in cleaned} == {"timeout"}
    [done] = events(logs, "sweep.completed")
    assert done["removed"] == 3 and done["timeout"] == 3 and done["active"] == 2
    assert REGISTRY.get_sample_value("athena_sessions_active") == 2
    clock.advance(50)  # 400 s old
    with capture_logs() as logs:
        assert await m.sweep() == 2
    assert {e["reason"] for e in events(logs, "session.cleaned_up")} == {"max_age"}
    assert await m.list_active() == []


async def test_background_sweep_runs(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager(session_timeout=1, cleanup_interval=0.01)
    await m.start()
    try:
        await m.resolve("kitchen")
        clock.advance(5)
        for _ in range(500):  # waits on the real sweep task; bounded, no timing assertion
            await asyncio.sleep(0.01)
            if not await m.store.sessions():
                break
        assert await m.store.sessions() == []
    finally:
        await m.stop()


async def test_fifty_concurrent_turns_from_one_device(make_manager: Build, store: Store) -> None:
    m = make_manager()

    async def one(i: int) -> str:
        session = await m.resolve("kitchen")
        await m.append_turn(session, *turn(i))
        return session.id

    ids = await asyncio.gather(*(one(i) for i in range(50)))
    assert len(set(ids)) == 1
    current = await m.active("kitchen")
    assert current is not None and current.turns == 50
    stored = await store.history(current.id, 1000)
    assert len(stored) == 100
    expected = sorted(c for i in range(50) for c in (f"question {i}", f"answer {i}"))
    assert sorted(x.content for x in stored) == expected


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "{tag}", "../..", "-lead", "ümlaut", "a\nb"])
async def test_bad_device_ids_are_rejected(make_manager: Build, bad: str) -> None:
    m = make_manager()
    for call in (m.resolve, m.active, m.describe, m.clear):
        with pytest.raises(InvalidDeviceId):
            await call(bad)
    assert await m.list_active() == []


async def test_lookup_by_session_id(make_manager: Build) -> None:
    m = make_manager()
    session = await m.resolve("kitchen")
    found = await m.get(session.id)
    assert found is not None and found.device == "kitchen"
    assert await m.get("01NOSUCHSESSION000000000000") is None
    assert await m.get("") is None
    await m.clear("kitchen")
    assert await m.get(session.id) is None


async def test_ping_answers_while_the_store_is_open_and_fails_once_closed(
    make_manager: Build, store: Store
) -> None:
    manager = make_manager()
    await manager.ping()
    await store.close()
    with pytest.raises(StoreError):
        await manager.ping()


async def test_what_people_say_is_never_logged(make_manager: Build, clock: FakeClock) -> None:
    m = make_manager(session_timeout=300)
    secret = "my door code is 4711"
    with capture_logs() as logs:
        session = await m.resolve("kitchen")
        said = Message("user", secret, 0.0)
        await m.append_turn(session, said, Message("assistant", f"noted: {secret}", 0.0))
        await m.history(session)
        await m.describe("kitchen")
        clock.advance(400)
        await m.sweep()
    assert {e["event"] for e in logs} >= {"session.created", "session.cleaned_up", "sweep.completed"}
    assert not [e for e in logs if "4711" in repr(e)]
