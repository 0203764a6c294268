"""The stored shape of a message's metadata: every field survives a round trip, and records written by another
version (or by hand) load without failing."""

from __future__ import annotations

import orjson

from athena.records import EMPTY_META, IntentMemory, MessageMeta, ToolCall


def full_meta() -> MessageMeta:
    return MessageMeta(
        device="kitchen", path="llm", latency_ms=12.5, backend="openai", model="m", finish_reason="length",
        source="home_assistant", intent=IntentMemory("HassTurnOn", {"area": "Kitchen"}, "en", domain="light",
                                                     entity_ids=["light.a"]),
        follow_up="off", recognize_ms=1.5, ha_ms=8.0, tool_calls=(ToolCall("c1", "HassTurnOn", '{"a": 1}'),),
        tool_call_id="c1", tool_name="HassTurnOn", error="llm_error: down",
    )


def test_every_field_round_trips_through_json() -> None:
    meta = full_meta()
    assert MessageMeta.from_dict(orjson.loads(orjson.dumps(meta.to_dict()))) == meta
    assert MessageMeta.from_dict({}) is EMPTY_META and MessageMeta.from_dict(None) is EMPTY_META


def test_unknown_keys_and_wrong_types_are_ignored() -> None:
    raw = {"device": 7, "path": "llm", "latency_ms": "fast", "ha_ms": True, "future": {"x": 1},
           "tool_calls": "nope", "intent": {"slots": {}}}
    assert MessageMeta.from_dict(raw) == MessageMeta(path="llm")
    calls = MessageMeta.from_dict({"tool_calls": [{"id": "a", "name": "b"}, "junk"]}).tool_calls
    assert calls == (ToolCall("a", "b", "{}"),)


def test_the_0_1_layout_loads_and_top_level_keys_win() -> None:
    local = {"follow_up": "off", "ha_ms": 3, "recognize_ms": 2, "other": 1}
    raw = {"path": "local", "local": local, "ha_ms": 5}
    meta = MessageMeta.from_dict(raw)
    assert (meta.follow_up, meta.recognize_ms, meta.ha_ms, meta.path) == ("off", 2.0, 5.0, "local")
