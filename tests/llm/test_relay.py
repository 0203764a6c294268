"""The stateless OpenAI relay: OpenAI request in, OpenAI wire format out, from either backend."""

from __future__ import annotations

import json

import pytest

from athena.llm import LLMError, LLMHTTPError, OllamaBackend, OpenAIBackend, RelayChunk
from athena.llm.ollama import ollama_request
from tests.llm.conftest import backend_for
from tests.support.fake_llm import FakeLLM

Backend = OpenAIBackend | OllamaBackend
REQUEST = {"model": "", "messages": [{"role": "user", "content": "what time is it"}], "temperature": 0.1}


def parse_events(chunks: list[RelayChunk]) -> list[dict]:
    """Check each chunk is whole SSE frames, [DONE] last; return the JSON payloads (without [DONE])."""
    payloads = []
    for chunk in chunks:
        assert chunk.event.endswith(b"\n\n")
        for frame in chunk.event[:-2].split(b"\n\n"):
            assert frame.startswith(b"data: ")
            assert b"\n" not in frame
            if frame != b"data: [DONE]":
                payloads.append(json.loads(frame[6:]))
    assert chunks[-1].event.endswith(b"data: [DONE]\n\n")
    assert b"".join(c.event for c in chunks).count(b"[DONE]") == 1
    return payloads


async def test_relay_answers_a_chat_completion(llm: Backend, fake_llm: FakeLLM) -> None:
    relayed = await llm.relay(REQUEST)
    answer = json.loads(relayed.body)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Reply to: what time is it"}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert relayed.text == "Reply to: what time is it"
    assert fake_llm.requests[-1]["body"]["model"] == "fake-model"  # filled in when empty
    assert fake_llm.requests[-1]["body"]["stream"] is False


async def test_openai_relay_passes_the_upstream_bytes_unchanged(fake_llm: FakeLLM) -> None:
    upstream = (
        '{"id": "x", "object": "chat.completion", "choices": [{"message": {"content": "hi"}}], "extra": 1}'
    )
    fake_llm.configure(body=upstream)
    async with backend_for("openai", fake_llm.url) as llm:
        relayed = await llm.relay({**REQUEST, "model": "their-model", "tools": [{"type": "function"}]})
    assert relayed.body == upstream.encode()
    sent = fake_llm.requests[-1]["body"]
    assert sent["model"] == "their-model"
    assert sent["tools"] == [{"type": "function"}]


async def test_relay_passes_tool_calls(fake_llm: FakeLLM) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "HassTurnOn", "arguments": "{}"}}
    fake_llm.configure(body=json.dumps({"choices": [{"message": {"content": None, "tool_calls": [call]}}]}))
    async with backend_for("openai", fake_llm.url) as llm:
        relayed = await llm.relay(REQUEST)
        assert relayed.text == ""
        with pytest.raises(LLMError, match="called a tool"):
            await llm.chat(REQUEST["messages"])


async def test_relay_stream_gives_complete_events_ending_with_done(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply="It is noon.")
    chunks = [c async for c in llm.relay_stream(REQUEST)]
    payloads = parse_events(chunks)
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads)
    assert text == "It is noon."
    assert "".join(c.text for c in chunks) == "It is noon."
    assert fake_llm.requests[-1]["body"]["stream"] is not False


async def test_ollama_relay_converts_tool_calls(fake_llm: FakeLLM) -> None:
    answer = {
        "model": "fake-model",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "HassTurnOn", "arguments": {"area": "kitchen"}}}],
        },
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 3,
        "eval_count": 2,
    }
    fake_llm.configure(body=json.dumps(answer))
    async with backend_for("ollama", fake_llm.url) as llm:
        relayed = await llm.relay(REQUEST)
    choice = json.loads(relayed.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "HassTurnOn", "arguments": '{"area":"kitchen"}'}
    assert json.loads(relayed.body)["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }


def test_ollama_request_maps_an_openai_body() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
            ],
        },
    ]
    options = {"max_completion_tokens": 5, "stop": ["\n"], "user": "conv-1", "n": 1, "tools": [{"x": 1}]}
    body = ollama_request("m", messages, options, stream=True, keep_alive="5m")
    assert body["messages"][0] == {"role": "user", "content": "hi there"}
    assert body["messages"][1]["tool_calls"] == [{"function": {"name": "f", "arguments": {"a": 1}}}]
    assert body["options"] == {"num_predict": 5, "stop": ["\n"]}
    assert body["tools"] == [{"x": 1}]
    assert body["keep_alive"] == "5m"


async def test_relay_errors(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(status=400)
    with pytest.raises(LLMHTTPError) as info:
        await llm.relay(REQUEST)
    assert info.value.status == 400
    assert b"fake LLM failure 400" in info.value.body
    fake_llm.configure(status=None, reply="one two three four five", drop_after=3)
    got = []
    with pytest.raises(LLMError):
        async for chunk in llm.relay_stream(REQUEST):
            got.append(chunk)
    assert got


async def test_ollama_relay_needs_messages(fake_llm: FakeLLM) -> None:
    async with backend_for("ollama", fake_llm.url) as llm:
        with pytest.raises(LLMError, match="no 'messages'"):
            await llm.relay({"model": "m"})


async def test_relay_stream_first_chunk_carries_text(llm: Backend, fake_llm: FakeLLM) -> None:
    """The role-only event is held until the model's first words, so the first chunk means 'started'."""
    fake_llm.configure(reply="Sure, done.", chunk_delay=0.03)  # the role event arrives on its own
    chunks = [c async for c in llm.relay_stream(REQUEST)]
    assert chunks[0].text == "Sure, "
    assert b'"role":' in chunks[0].event.replace(b" ", b"")
    assert len(chunks) > 2
    assert "".join(c.text for c in chunks) == "Sure, done."
    parse_events(chunks)
