"""POST /ha/conversation end to end: real gateway, real fake-LLM server, memory store."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson
import pytest
from ulid import ULID

from tests.api.conftest import GatewayFactory, LiveGateway, llm_messages
from tests.support.fake_llm import FakeLLM, said


async def test_response_is_exactly_has_conversation_result(gateway: LiveGateway) -> None:
    body = await gateway.converse("what's the weather", device_id="office", language="de")
    conversation_id = body["conversation_id"]
    ULID.from_str(conversation_id)  # a session id is a ULID
    assert body == {
        "response": {
            "speech": {"plain": {"speech": "Reply to: what's the weather", "extra_data": None}},
            "card": {},
            "language": "de",
            "response_type": "query_answer",
            "data": {"targets": [], "success": [], "failed": []},
        },
        "conversation_id": conversation_id,
        "continue_conversation": False,
    }


async def test_follow_up_from_the_same_device_reaches_the_llm_with_the_first_turn(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    first = await gateway.converse("what's the weather on Saturday?", device_id="office")
    second = await gateway.converse("what about Sunday?", device_id="office")
    assert second["conversation_id"] == first["conversation_id"]
    messages = llm_messages(fake_llm)
    assert messages[0]["role"] == "system"
    assert [{"role": m["role"], "content": said(m)} for m in messages[1:]] == [
        {"role": "user", "content": "what's the weather on Saturday?"},
        {"role": "assistant", "content": "Reply to: what's the weather on Saturday?"},
        {"role": "user", "content": "what about Sunday?"},
    ]
    assert messages[1]["content"] == "what's the weather on Saturday?"  # history as it was said


async def test_another_device_does_not_see_that_history(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    office = await gateway.converse("remember the number seven", device_id="office")
    kitchen = await gateway.converse("what number?", device_id="kitchen")
    assert kitchen["conversation_id"] != office["conversation_id"]
    assert [m["role"] for m in llm_messages(fake_llm)] == ["system", "user"]


async def test_satellite_id_keys_the_session_when_there_is_no_device_id(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    a = await gateway.converse("one", satellite_id="assist_satellite.office")
    b = await gateway.converse("two", satellite_id="assist_satellite.office")
    assert a["conversation_id"] == b["conversation_id"]
    assert len(llm_messages(fake_llm)) == 4


async def test_an_expired_session_starts_fresh(gateway_factory: GatewayFactory, fake_llm: FakeLLM) -> None:
    gw = await gateway_factory(session_timeout=60)
    first = await gw.converse("first question", device_id="office")
    gw.clock.advance(59)
    kept = await gw.converse("still there?", device_id="office")
    assert kept["conversation_id"] == first["conversation_id"]
    gw.clock.advance(61)  # idle past the timeout
    fresh = await gw.converse("new question", device_id="office")
    assert fresh["conversation_id"] != first["conversation_id"]
    assert [m["role"] for m in llm_messages(fake_llm)] == ["system", "user"]


async def test_a_per_device_timeout_override_applies(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    gw = await gateway_factory(session_timeout=600, devices={"garage": {"timeout": 30}})
    a = await gw.converse("hi", device_id="garage")
    b = await gw.converse("hi", device_id="office")
    gw.clock.advance(31)
    assert (await gw.converse("again", device_id="garage"))["conversation_id"] != a["conversation_id"]
    assert (await gw.converse("again", device_id="office"))["conversation_id"] == b["conversation_id"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Which room?", True),
        ('Do you mean the "kitchen?"  ', True),
        ("Which one? ", True),
        ("The lights are on.", False),
        ("Is it? No, it is not.", False),
    ],
)
async def test_continue_conversation_when_the_answer_asks(
    gateway: LiveGateway, fake_llm: FakeLLM, reply: str, expected: bool
) -> None:
    fake_llm.configure(reply=reply)
    body = await gateway.converse("turn on the light", device_id="office")
    assert body["continue_conversation"] is expected


async def test_conversation_id_without_a_device_continues_that_session(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    first = await gateway.converse("hello")
    second = await gateway.converse("and again", conversation_id=first["conversation_id"])
    assert second["conversation_id"] == first["conversation_id"]
    assert len(llm_messages(fake_llm)) == 4


async def test_an_unknown_conversation_id_keys_its_own_session(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    a = await gateway.converse("hello", conversation_id="01JHACONVERSATION0000000000")
    b = await gateway.converse("again", conversation_id="01JHACONVERSATION0000000000")
    assert a["conversation_id"] == b["conversation_id"]
    assert len(llm_messages(fake_llm)) == 4


async def test_requests_without_any_id_get_one_off_sessions(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    a = await gateway.converse("hello")
    b = await gateway.converse("hello")
    assert a["conversation_id"] != b["conversation_id"]
    assert len(llm_messages(fake_llm)) == 2


async def test_turns_home_assistant_answered_are_added_to_the_history_first(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    await gateway.converse(
        "is it cold outside?",
        device_id="office",
        history=[
            {"role": "user", "content": "turn on the heater"},
            {"role": "assistant", "content": "Turned on the heater"},
        ],
    )
    assert [{"role": m["role"], "content": said(m)} for m in llm_messages(fake_llm)[1:]] == [
        {"role": "user", "content": "turn on the heater"},
        {"role": "assistant", "content": "Turned on the heater"},
        {"role": "user", "content": "is it cold outside?"},
    ]
    session = await gateway.session("office")
    assert session is not None
    assert [m["content"] for m in session["messages"]] == [
        "turn on the heater",
        "Turned on the heater",
        "is it cold outside?",
        "Reply to: is it cold outside?",
    ]


async def test_system_prompt_names_the_device_area_time_and_extra_prompt(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    await gateway.converse(
        "is it late?",
        device_id="abc123",
        device_name="Office speaker",
        area="Office",
        extra_system_prompt="The user's name is Sam.",
    )
    system = llm_messages(fake_llm)[0]["content"]
    assert "The user's name is Sam." in system
    assert "plain text" in system  # the built-in voice prompt
    note = llm_messages(fake_llm)[-1]["content"].split("\n", 1)[0]  # what changes comes last
    assert "Office speaker" in note
    assert '"Office"' in note
    assert str(dt.datetime.now().astimezone().year) in note


async def test_the_configured_system_prompt_replaces_the_built_in_one(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    gw = await gateway_factory(system_prompt="You are a pirate.")
    await gw.converse("hello", device_id="office")
    system = llm_messages(fake_llm)[0]["content"]
    assert system.startswith("You are a pirate.")
    assert "plain text" not in system


async def test_new_session_flag_starts_over(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    a = await gateway.converse("one", device_id="office")
    b = await gateway.converse("two", device_id="office", new_session=True)
    assert a["conversation_id"] != b["conversation_id"]
    assert len(llm_messages(fake_llm)) == 2


async def test_two_concurrent_turns_from_one_device_share_one_session(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(delay=0.2)
    a, b = await asyncio.gather(
        gateway.converse("first", device_id="office"), gateway.converse("second", device_id="office")
    )
    assert a["conversation_id"] == b["conversation_id"]
    session = await gateway.session("office")
    assert session is not None
    assert session["turns"] == 2
    assert len(session["messages"]) == 4
    assert sorted(m["content"] for m in session["messages"] if m["role"] == "user") == ["first", "second"]
    listed = (await gateway.client.get("/athena/sessions")).json()["sessions"]
    assert [s["device"] for s in listed] == ["office"]


async def test_the_saved_turn_records_how_it_was_answered(gateway: LiveGateway) -> None:
    await gateway.converse("hello", device_id="office")
    session = await gateway.session("office")
    assert session is not None
    user, assistant = session["messages"]
    assert user["role"] == "user"
    assert assistant["meta"]["path"] == "llm"
    assert assistant["meta"]["device"] == "office"
    assert assistant["meta"]["latency_ms"] >= 0


async def test_start_over_answers_locally_with_a_fresh_session(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    first = await gateway.converse("remember the number seven", device_id="office")
    calls = len(fake_llm.requests)
    resets = await gateway.metric("athena_answers_total", path="reset")
    reset = await gateway.converse("start over", device_id="office")
    assert len(fake_llm.requests) == calls  # answered without the LLM
    assert reset["response"]["response_type"] == "action_done"
    assert reset["response"]["speech"]["plain"]["speech"] == "Okay, let's start over."
    assert reset["conversation_id"] != first["conversation_id"]
    session = await gateway.session("office")
    assert session is not None and session["id"] == reset["conversation_id"] and session["messages"] == []
    after = await gateway.converse("what number?", device_id="office")
    assert after["conversation_id"] == reset["conversation_id"]
    assert [m["role"] for m in llm_messages(fake_llm)] == ["system", "user"]
    assert await gateway.metric("athena_answers_total", path="reset") == resets + 1


@pytest.mark.parametrize("length", [26, 115, 116, 256])
async def test_a_conversation_id_of_any_accepted_length_continues_its_session(
    gateway: LiveGateway, fake_llm: FakeLLM, length: int
) -> None:
    """One limit (256) and one rule for every conversation id: a long one is hashed into its key, never
    turned into a one-off session."""
    for conversation_id in ("c" * length, ("my chat #" * 30)[:length]):  # plain, and with spaces and '#'
        first = await gateway.converse("my name is Ada", conversation_id=conversation_id)
        second = await gateway.converse("what is my name?", conversation_id=conversation_id)
        assert second["conversation_id"] == first["conversation_id"]
        assert [said(m) for m in llm_messages(fake_llm)[1:]] == [
            "my name is Ada", "Reply to: my name is Ada", "what is my name?",
        ]
        # Athena's own session id continues it too (what HA hands back next turn).
        third = await gateway.converse("and again?", conversation_id=first["conversation_id"])
        assert third["conversation_id"] == first["conversation_id"]


async def test_a_conversation_id_over_the_limit_is_refused(gateway: LiveGateway) -> None:
    resp = await gateway.client.post("/ha/conversation", json={"text": "hi", "conversation_id": "c" * 257})
    assert resp.status_code == 422 and "conversation_id" in resp.json()["error"]["message"]


# -- streamed: NDJSON lines as the model writes ------------------------------------------------------------
async def stream_lines(gateway: LiveGateway, **body: Any) -> list[dict[str, Any]]:
    resp = await gateway.client.post("/ha/conversation", json={**body, "stream": True})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in resp.content.splitlines() if line]


async def test_stream_sends_the_session_then_deltas_then_the_result(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(reply="It is sunny and warm today in the kitchen.")
    lines = await stream_lines(gateway, text="weather?", device_id="office")
    start, *deltas, end = lines
    assert start["event"] == "start" and deltas and end["event"] == "result"
    assert all(d["event"] == "delta" for d in deltas) and len(deltas) > 3
    result = end["result"]
    assert "".join(d["text"] for d in deltas) == result["response"]["speech"]["plain"]["speech"]
    assert result["response"]["speech"]["plain"]["speech"] == "It is sunny and warm today in the kitchen."
    assert start["conversation_id"] == result["conversation_id"]
    session = await gateway.session("office")
    assert session is not None and session["id"] == start["conversation_id"]
    said_and_answered = [m["content"] for m in session["messages"]]
    assert said_and_answered == ["weather?", "It is sunny and warm today in the kitchen."]


async def test_stream_deltas_arrive_while_the_model_is_still_writing(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(reply="one two three four five six", chunk_delay=0.3)
    body = {"text": "count", "device_id": "office", "stream": True}
    async with gateway.client.stream("POST", "/ha/conversation", json=body) as resp:
        received = b""
        async for part in resp.aiter_bytes():
            received += part
            if b'"delta"' in received:
                break
        assert b'"result"' not in received  # the first words came before the answer was done


async def test_stream_of_a_local_answer_is_one_delta(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    lines = await stream_lines(gateway, text="start over", device_id="office")
    assert [line["event"] for line in lines] == ["start", "delta", "result"]
    assert lines[1]["text"] == "Okay, let's start over." and fake_llm.requests == []


async def test_stream_failing_mid_answer_ends_in_a_spoken_error_and_keeps_no_answer(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(reply=" ".join(f"w{i}" for i in range(30)), drop_after=4)
    _, *deltas, end = await stream_lines(gateway, text="count", device_id="office", language="de-DE")
    assert deltas  # some words were on their way
    response = end["result"]["response"]
    assert response["response_type"] == "error" and response["data"]["code"] == "failed_to_handle"
    spoken = response["speech"]["plain"]["speech"]
    assert spoken == "Entschuldigung, ich erreiche mein Sprachmodell gerade nicht."
    session = await gateway.session("office")
    # No half answer is kept: only the question and the error, for the operator (the LLM never sees them).
    assert session is not None
    assert [(m["role"], m["content"], m["meta"]["path"]) for m in session["messages"]] == [
        ("user", "count", "error"),
        ("assistant", spoken, "error"),
    ]


async def test_stream_with_the_llm_down_is_start_and_an_error_result(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(status=500)
    lines = await stream_lines(gateway, text="hello", device_id="office", language="fr")
    assert [line["event"] for line in lines] == ["start", "result"]
    speech = lines[1]["result"]["response"]["speech"]["plain"]["speech"]
    assert speech == "Désolé, je n'arrive pas à joindre mon modèle de langage pour le moment."
