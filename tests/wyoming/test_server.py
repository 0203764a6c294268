"""The Wyoming server against real sockets: what HA 2025.4 and 2026.x send, sessions, streaming, errors."""

from __future__ import annotations

from wyoming.handle import Handled, NotHandled
from wyoming.info import Info

from athena import __version__
from athena.engine.engine import SPOKEN_ERRORS
from athena.wyoming.protocol import NOTHING_SAID, TOO_LONG, UNKNOWN_DEVICE
from tests.api.conftest import llm_messages
from tests.support.fake_llm import FakeLLM, said
from tests.wyoming.conftest import Factory, Served

KITCHEN = "4f1c2a9e8b7d6c5f4e3d2c1b0a998877"  # HA device-registry ids are opaque hex
OFFICE = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


async def test_describe_answers_one_handle_program(wyoming: Served) -> None:
    peer = await wyoming.connect()
    event = await peer.ask("describe")
    info = Info.from_event(event)
    assert [p.name for p in info.handle] == ["Athena"]
    program = info.handle[0]
    assert program.installed and program.version == __version__
    assert program.attribution.name == "Athena"
    assert program.supports_handled_streaming is True
    assert program.supports_home_control is False  # no HA configured: the local path is off
    languages = program.models[0].languages
    assert {"en", "de", "fr", "nl"} <= set(languages)
    assert not (info.asr or info.tts or info.intent or info.wake)
    # The same connection keeps serving: describe again, then a ping.
    assert (await peer.ask("describe")).type == "info"
    pong = await peer.ask("ping", {"text": "x"})
    assert (pong.type, pong.data.get("text")) == ("pong", "x")


async def test_home_control_is_announced_with_the_local_path(wyoming_factory: Factory) -> None:
    served = await wyoming_factory(home_control=True)
    info = Info.from_event(await (await served.connect()).ask("describe"))
    assert info.handle[0].supports_home_control is True


async def test_a_transcript_is_answered_with_its_context(wyoming: Served, fake_llm: FakeLLM) -> None:
    context = {"conversation_id": "01JCONVERSATION0000000000A", "device_id": KITCHEN}
    event = await wyoming.turn("what is the capital of France", context, language="en")
    assert event.type == "handled"
    handled = Handled.from_event(event)
    assert handled.text == "Reply to: what is the capital of France"
    assert handled.context == context
    last = llm_messages(fake_llm)[-1]
    assert last["role"] == "user" and said(last) == "what is the capital of France"


async def test_the_device_keeps_the_session_across_new_conversation_ids(
    wyoming: Served, fake_llm: FakeLLM
) -> None:
    """HA 2026.x: a new conversation id on every wake word, the same device id."""
    await wyoming.turn("first in the kitchen", {"conversation_id": "c1", "device_id": KITCHEN})
    await wyoming.turn("first in the office", {"conversation_id": "c2", "device_id": OFFICE})
    await wyoming.turn("and a follow-up", {"conversation_id": "c3", "device_id": KITCHEN})
    texts = [said(m) for m in llm_messages(fake_llm) if m["role"] == "user"]
    assert texts == ["first in the kitchen", "and a follow-up"]  # the office's turn is another session
    engine = wyoming.gateway.engine
    kitchen, office = await engine.transcript(KITCHEN), await engine.transcript(OFFICE)
    assert kitchen is not None and office is not None
    assert kitchen[0]["id"] != office[0]["id"]
    assert [m.content for m in kitchen[1]] == [
        "first in the kitchen",
        "Reply to: first in the kitchen",
        "and a follow-up",
        "Reply to: and a follow-up",
    ]


async def test_satellite_then_conversation_id_key_the_session(wyoming: Served, fake_llm: FakeLLM) -> None:
    await wyoming.turn("one", {"conversation_id": "a", "satellite_id": "assist_satellite.hall"})
    await wyoming.turn("two", {"conversation_id": "b", "satellite_id": "assist_satellite.hall"})
    assert [said(m) for m in llm_messages(fake_llm) if m["role"] == "user"] == ["one", "two"]
    await wyoming.turn("three", {"conversation_id": "same"})
    await wyoming.turn("four", {"conversation_id": "same"})
    assert [said(m) for m in llm_messages(fake_llm) if m["role"] == "user"] == ["three", "four"]


async def test_ha_2025_4_sends_text_alone_and_each_turn_is_a_one_off(
    wyoming: Served, fake_llm: FakeLLM
) -> None:
    """wyoming 1.5.4's Transcript carries no context and no language: never one session for everyone."""
    first = await wyoming.turn("hello there")
    assert first.type == "handled" and first.data == {"text": "Reply to: hello there"}
    await wyoming.turn("and again")
    assert [said(m) for m in llm_messages(fake_llm) if m["role"] == "user"] == ["and again"]
    assert await wyoming.gateway.engine.sessions_live() != []
    assert all(s["device"].startswith("oneoff:") for s in await wyoming.gateway.engine.sessions_live())


async def test_start_over_is_answered_locally(wyoming: Served, fake_llm: FakeLLM) -> None:
    await wyoming.turn("remember the milk", {"device_id": KITCHEN})
    reset = await wyoming.turn("start over", {"device_id": KITCHEN})
    assert reset.type == "handled" and reset.data["text"]
    await wyoming.turn("what was I saying", {"device_id": KITCHEN})
    assert [said(m) for m in llm_messages(fake_llm) if m["role"] == "user"] == ["what was I saying"]


async def test_a_failing_llm_is_a_spoken_not_handled(wyoming: Served, fake_llm: FakeLLM) -> None:
    fake_llm.configure(status=500)
    context = {"conversation_id": "c", "device_id": KITCHEN}
    event = await wyoming.turn("anything", context)
    assert event.type == "not-handled"
    assert NotHandled.from_event(event).text == SPOKEN_ERRORS["en"]["llm_error"]
    assert event.data["context"] == context


async def test_bad_transcripts_get_a_sentence_and_the_connection_goes_on(wyoming: Served) -> None:
    peer = await wyoming.connect()
    cases = [
        ({"text": "   "}, NOTHING_SAID),
        ({"text": 42}, NOTHING_SAID),
        ({}, NOTHING_SAID),
        ({"text": "x" * 2001}, TOO_LONG),
        ({"text": "hi", "context": {"device_id": "no spaces allowed"}}, UNKNOWN_DEVICE),
        ({"text": "hi", "context": {"device_id": 7}}, UNKNOWN_DEVICE),
        ({"text": "hi", "context": {"conversation_id": "c" * 257}}, UNKNOWN_DEVICE),
    ]
    for data, sentence in cases:
        event = await peer.ask("transcript", data)
        assert (event.type, event.data.get("text")) == ("not-handled", sentence), data
    assert (await peer.ask("transcript", {"text": "fine now"})).type == "handled"


async def test_several_turns_on_one_connection(wyoming: Served) -> None:
    peer = await wyoming.connect()
    for i in range(3):
        event = await peer.ask("transcript", {"text": f"turn {i}", "context": {"device_id": KITCHEN}})
        assert event.data["text"] == f"Reply to: turn {i}"


async def test_unknown_events_are_dropped(wyoming: Served) -> None:
    peer = await wyoming.connect()
    await peer.send("audio-start", {"rate": 16000, "width": 2, "channels": 1})
    await peer.send("select-program", {"name": "Athena"})
    assert (await peer.ask("describe")).type == "info"


async def test_streaming_when_the_peer_announces_it(wyoming: Served, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply="One two three four five.", chunk_words=1)
    peer = await wyoming.connect()
    await peer.send("info", {"handle": [{"name": "client", "supports_handled_streaming": True}]})
    context = {"conversation_id": "c", "device_id": KITCHEN}
    await peer.send("transcript", {"text": "count", "context": context})
    events = await peer.until("handled-stop")
    kinds = [e.type for e in events]
    assert kinds[0] == "handled-start" and events[0].data == {"context": context}
    assert kinds[-2:] == ["handled", "handled-stop"]
    chunks = [e.data["text"] for e in events if e.type == "handled-chunk"]
    assert len(chunks) > 1 and "".join(chunks).strip() == "One two three four five."
    assert events[-2].data == {"text": "One two three four five.", "context": context}
    # A streamed answer is kept like any other.
    stored = await wyoming.gateway.engine.transcript(KITCHEN)
    assert stored is not None and [m.content for m in stored[1]][-1] == "One two three four five."


async def test_streaming_peer_gets_a_whole_not_handled_on_failure(wyoming: Served, fake_llm: FakeLLM) -> None:
    fake_llm.configure(status=503)
    peer = await wyoming.connect()
    await peer.send("info", {"handle": [{"supports_handled_streaming": True}]})
    event = await peer.ask("transcript", {"text": "count"})
    assert event.type == "not-handled" and event.data["text"] == SPOKEN_ERRORS["en"]["llm_error"]


async def test_without_the_announcement_no_stream_events(wyoming: Served, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply="One two three.", chunk_words=1)
    peer = await wyoming.connect()
    await peer.send("info", {"handle": [{"supports_handled_streaming": False}]})
    event = await peer.ask("transcript", {"text": "count"})
    assert event.type == "handled" and event.data["text"] == "One two three."
