"""The engine on its own: a real SessionManager (memory store) and a real backend talking to the fake LLM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from athena.config import Settings
from athena.engine import Engine, wants_follow_up
from athena.engine.prompt import DEFAULT_PROMPT, build_messages, context_note
from athena.gateway import llm_backend, prompt_settings, session_policy
from athena.records import IntentMemory, Message
from athena.sessions.manager import SessionManager
from athena.stores import create_store
from athena.turns import LocalAnswer, Target, Turn
from tests.support.fake_llm import FakeLLM, said


@pytest.fixture
def settings(tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    return Settings(
        data_dir=tmp_path,
        store_url="memory://",
        llm_url=fake_llm.url + "/v1",
        llm_model="fake-model",
        api_token="t",
        llm_timeout=2.0,
        llm_first_token_timeout=2.0,
    )


@pytest.fixture
async def manager(settings: Settings) -> AsyncIterator[SessionManager]:
    manager = SessionManager(create_store(settings.store_url), session_policy(settings))
    await manager.start()
    yield manager
    await manager.stop()


@pytest.fixture
async def engine(settings: Settings, manager: SessionManager) -> AsyncIterator[Engine]:
    llm = llm_backend(settings)
    await llm.open()
    yield Engine(manager, llm, prompt=prompt_settings(settings))
    await llm.close()


class Lights:
    """A local handler that knows one sentence (a real implementation of the protocol, not a mock)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    async def handle(self, turn: Turn, history: Sequence[Message]) -> LocalAnswer | None:
        self.seen.append((turn.text, len(history)))
        if turn.text != "turn on the lights":
            return None
        return LocalAnswer(
            speech="Turned on the lights",
            success=[Target("Office Lights", "light.office")],
            memory=IntentMemory("HassTurnOn", {"area": "Office"}, "en", entity_ids=["light.office"]),
        )


class Never:
    async def handle(self, turn: Turn, history: Sequence[Message]) -> LocalAnswer | None:
        return None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Which room?", True),
        ("Which room?\n", True),
        ('"Which room?"', True),
        ("Which room?”", True),
        ("Done.", False),
        ("", False),
        ("?!", False),
    ],
)
def test_wants_follow_up(answer: str, expected: bool) -> None:
    assert wants_follow_up(answer) is expected


def test_prompt_parts_instructions_first_context_last(settings: Settings) -> None:
    now = datetime(2026, 11, 25, 14, 5, tzinfo=timezone(timedelta(hours=1)))
    turn = Turn(
        "hi",
        device_id="office",
        device_name="Desk",
        area="Office",
        extra_system_prompt="Extra.",
        system_prompt="Client.",
    )
    messages = build_messages(prompt_settings(settings), turn, [], now)
    instructions = messages[0]["content"]
    assert messages[0]["role"] == "system" and instructions.startswith(DEFAULT_PROMPT)
    assert instructions.index("Extra.") < instructions.index("Client.")
    assert "Desk" not in instructions and "2026" not in instructions  # nothing that changes per turn
    note, text = messages[-1]["content"].split("\n", 1)
    assert text == "hi" and messages[-1]["role"] == "user"
    assert 'to the device "Desk" in the area "Office"' in note
    assert "Wednesday 25 November 2026, 14:05" in note


def test_the_prompt_prefix_stays_the_same_across_turns_minutes_and_devices(settings: Settings) -> None:
    """What a local server caches: turn 2's prompt begins with all of turn 1's but its last message."""
    prompt = prompt_settings(settings)
    first = build_messages(
        prompt, Turn("a", device_id="d1", device_name="Desk", area="Office"), [],
        datetime(2026, 11, 25, 14, 5, tzinfo=UTC),
    )
    history = [Message("user", "a", 1.0), Message("assistant", "b", 1.0)]
    second = build_messages(
        prompt, Turn("c", device_id="d1", device_name="Desk", area="Office"), history,
        datetime(2026, 11, 25, 14, 9, tzinfo=UTC),
    )
    assert second[: len(first) - 1] == first[:-1]
    other = build_messages(prompt, Turn("x", device_id="d2", device_name="Hall", area="Hall"), [])
    assert other[0] == first[0]  # the instructions are the same for every device


def test_context_note_uses_configured_time_zone(settings: Settings) -> None:
    zoned = settings.model_copy(update={"time_zone": "Pacific/Kiritimati"})  # UTC+14: never the host's zone
    assert "(+14)" in context_note(prompt_settings(zoned), Turn("hi", device_id="office"))


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        Settings(time_zone="Mars/Olympus")


def test_messages_keep_only_user_and_assistant_history(settings: Settings) -> None:
    history = [Message("user", "a", 1.0), Message("system", "x", 1.0), Message("assistant", "b", 1.0)]
    messages = build_messages(prompt_settings(settings), Turn("c", device_id="office"), history)
    assert [(m["role"], said(m)) for m in messages[1:]] == [
        ("user", "a"),
        ("assistant", "b"),
        ("user", "c"),
    ]


async def test_local_handlers_are_tried_in_order_before_the_llm(
    engine: Engine, manager: SessionManager, fake_llm: FakeLLM
) -> None:
    lights = Lights()
    engine.handlers = [Never(), lights]
    reply = await engine.handle(Turn("turn on the lights", device_id="office"))
    assert (reply.path, reply.response_type, reply.speech) == ("local", "action_done", "Turned on the lights")
    assert list(reply.success) == [Target("Office Lights", "light.office")]
    assert fake_llm.requests == []
    session = await manager.active("office")
    assert session is not None
    saved = await manager.history(session)
    assert [m.content for m in saved] == ["turn on the lights", "Turned on the lights"]
    assert saved[1].meta.intent is not None
    assert saved[1].meta.intent.name == "HassTurnOn" and saved[1].meta.path == "local"

    # The next turn falls through to the LLM, which sees the local turn in its history.
    reply = await engine.handle(Turn("is it bright now?", device_id="office"))
    assert reply.path == "llm"
    assert lights.seen[-1] == ("is it bright now?", 2)
    assert [said(m) for m in fake_llm.requests[-1]["body"]["messages"][1:]] == [
        "turn on the lights",
        "Turned on the lights",
        "is it bright now?",
    ]


async def test_a_reset_answer_saves_nothing_and_replies_with_the_fresh_session(
    engine: Engine, manager: SessionManager
) -> None:
    first = await engine.handle(Turn("hello", device_id="office"))
    reply = await engine.handle(Turn("forget everything", device_id="office"))
    assert reply.path == "reset" and reply.speech == "Okay, let's start over."
    assert reply.session_id != first.session_id
    session = await manager.active("office")
    assert session is not None and session.id == reply.session_id
    assert await manager.history(session) == []


async def test_start_over_racing_a_slow_answer_still_answers(
    engine: Engine, manager: SessionManager, fake_llm: FakeLLM
) -> None:
    await engine.handle(Turn("hello", device_id="office"))
    fake_llm.configure(delay=0.3)
    pending = asyncio.create_task(engine.handle(Turn("tell me a story", device_id="office")))
    for _ in range(500):  # until the LLM has the question (it records before its delay)
        if len(fake_llm.requests) >= 2:
            break
        await asyncio.sleep(0.01)
    assert await manager.clear("office")  # "start over" from another request while the LLM thinks
    reply = await pending
    assert reply.response_type == "query_answer" and reply.speech == "Reply to: tell me a story"
    assert await manager.active("office") is None  # the cleared session was not brought back


async def test_stream_yields_deltas_then_saves(
    engine: Engine, manager: SessionManager, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(reply="It is sunny and warm.")
    run = await engine.open(Turn("weather?", device_id="office"))
    deltas = [d async for d in run.deltas()]
    assert deltas and "".join(deltas) == "It is sunny and warm."
    assert run.reply is not None and run.reply.session_id == run.session_id
    session = await manager.active("office")
    assert session is not None
    assert [m.content for m in await manager.history(session)] == ["weather?", "It is sunny and warm."]


async def test_a_stream_that_breaks_ends_in_an_error_reply_and_saves_nothing(
    engine: Engine, manager: SessionManager, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(reply="one two three four", drop_after=2)
    run = await engine.open(Turn("count", device_id="office"))
    got = [delta async for delta in run.deltas()]
    assert got  # it broke after text had started
    assert run.reply is not None and run.reply.failure == "llm_error"
    assert run.reply.speech == "Sorry, I can't reach my language model right now."
    session = await manager.active("office")
    assert session is not None and await manager.history(session) == []


async def test_an_empty_llm_answer_is_an_error(engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply="   ")
    reply = await engine.handle(Turn("hello", device_id="office"))
    assert reply.response_type == "error" and reply.failure == "llm_error"


async def test_history_sent_is_trimmed_to_the_context_size(
    settings: Settings, engine: Engine, fake_llm: FakeLLM
) -> None:
    engine.sessions.policy = session_policy(settings.model_copy(update={"history_context_messages": 2}))
    for i in range(3):
        await engine.handle(Turn(f"question {i}", device_id="office"))
    sent = fake_llm.requests[-1]["body"]["messages"]
    assert [said(m) for m in sent[1:]] == ["question 1", "Reply to: question 1", "question 2"]


class Broken:
    """A handler with a bug: the turn must still reach the LLM."""

    async def handle(self, turn: Turn, history: Sequence[Message]) -> LocalAnswer | None:
        raise RuntimeError("bug in a local handler")


async def test_a_failing_local_handler_falls_through_to_the_llm(engine: Engine, fake_llm: FakeLLM) -> None:
    engine.handlers = [Broken()]
    reply = await engine.handle(Turn("hello", device_id="office"))
    assert (reply.path, reply.speech) == ("llm", "Reply to: hello")
    run = await engine.open(Turn("again", device_id="office"))
    assert "".join([d async for d in run.deltas()]) == "Reply to: again"
