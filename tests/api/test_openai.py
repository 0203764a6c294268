"""POST /v1/chat/completions and GET /v1/models: stateless relay, and history kept per X-Athena-Device."""

from __future__ import annotations

from typing import Any

import orjson

from tests.api.conftest import GatewayFactory, LiveGateway, llm_messages, sse_events
from tests.support.fake_llm import FakeLLM, said

CLIENT_MESSAGES = [
    {"role": "system", "content": "You are a helpful home assistant."},
    {"role": "user", "content": "turn on the light"},
    {"role": "assistant", "content": "Which one?"},
    {"role": "user", "content": "the kitchen"},
]


def assert_stream_shape(events: list[Any]) -> str:
    """One id for all chunks, role in the first, finish_reason in the last, then [DONE]; returns the text."""
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) >= 2
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


async def test_relay_forwards_the_clients_conversation_as_it_is(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    resp = await gateway.client.post(
        "/v1/chat/completions", json={"model": "fake-model", "messages": CLIENT_MESSAGES, "temperature": 0.2}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Reply to: the kitchen"}
    assert body["choices"][0]["finish_reason"] == "stop"
    sent = fake_llm.requests[-1]["body"]
    assert sent["messages"] == CLIENT_MESSAGES
    assert sent["temperature"] == 0.2
    # Stateless: nothing kept.
    assert (await gateway.client.get("/athena/sessions")).json()["sessions"] == []


async def test_relay_stream_has_the_openai_chunk_format(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply="The kitchen light is on.")
    resp = await gateway.client.post(
        "/v1/chat/completions", json={"messages": CLIENT_MESSAGES, "stream": True}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert assert_stream_shape(sse_events(resp.content)) == "The kitchen light is on."
    assert fake_llm.requests[-1]["body"]["messages"] == CLIENT_MESSAGES


async def test_relay_stream_chunks_arrive_before_the_answer_is_complete(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(reply="a b c d", chunk_delay=0.3)
    async with gateway.client.stream(
        "POST", "/v1/chat/completions", json={"messages": CLIENT_MESSAGES, "stream": True}
    ) as resp:
        received = b""
        async for part in resp.aiter_bytes():
            received += part
            if b'"a ' in received or b'"a"' in received:
                break
        # The first word came through while the fake was still sending the rest: not buffered.
        assert b"[DONE]" not in received


async def test_device_mode_keeps_the_history(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    headers = {"X-Athena-Device": "kitchen"}
    first = await gateway.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert first.status_code == 200, first.text
    session_id = first.headers["x-athena-session"]
    # The client sends only its newest message; Athena supplies the rest.
    second = await gateway.client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "and now?"}],
            "temperature": 0.1,
            "tools": [{"type": "function", "function": {"name": "x"}}],
        },
        headers=headers,
    )
    assert second.headers["x-athena-session"] == session_id
    assert second.json()["choices"][0]["message"]["content"] == "Reply to: and now?"
    messages = llm_messages(fake_llm)
    assert messages[0]["role"] == "system"
    assert "Be brief." in messages[0]["content"]
    assert "plain text" in messages[0]["content"]  # the voice prompt comes first
    assert [{"role": m["role"], "content": said(m)} for m in messages[1:]] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Reply to: hi"},
        {"role": "user", "content": "and now?"},
    ]
    sent = fake_llm.requests[-1]["body"]
    assert sent["temperature"] == 0.1
    assert sent["tools"] == [{"type": "function", "function": {"name": "x"}}]  # the client's own tools
    session = await gateway.session("kitchen")
    assert session is not None and session["turns"] == 2


async def test_device_mode_stream_saves_the_turn(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply="It is sunny today.")
    resp = await gateway.client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": [{"type": "text", "text": "weather?"}]}],
            "stream": True,
        },
        headers={"X-Athena-Device": "office"},
    )
    assert resp.status_code == 200
    assert assert_stream_shape(sse_events(resp.content)) == "It is sunny today."
    session = await gateway.session("office")
    assert session is not None
    assert resp.headers["x-athena-session"] == session["id"]
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "weather?"),
        ("assistant", "It is sunny today."),
    ]


async def test_device_mode_and_ha_share_the_device_session(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    ha = await gateway.converse("remember seven", device_id="office")
    resp = await gateway.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "what number?"}]},
        headers={"X-Athena-Device": "office"},
    )
    assert resp.headers["x-athena-session"] == ha["conversation_id"]
    assert len(llm_messages(fake_llm)) == 4


async def test_device_mode_needs_a_user_message_and_a_valid_device(gateway: LiveGateway) -> None:
    resp = await gateway.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "system", "content": "x"}]},
        headers={"X-Athena-Device": "office"},
    )
    assert resp.status_code == 422
    assert "user message" in resp.json()["error"]["message"]
    resp = await gateway.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}]},
        headers={"X-Athena-Device": "bad device!"},
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_device_id"


async def test_models_come_from_the_backend(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    fake_llm.configure(models=["llama3.2", "qwen2.5"])
    resp = await gateway.client.get("/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["llama3.2", "qwen2.5"]
    fake_llm.configure(status=500)
    resp = await gateway.client.get("/v1/models")
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "llm_unavailable"


async def test_device_mode_start_over_reports_the_fresh_session(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    first = await gateway.converse("hello", device_id="office")
    for stream in (False, True):
        resp = await gateway.client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "start over"}], "stream": stream},
            headers={"X-Athena-Device": "office"},
        )
        assert resp.status_code == 200
        session = await gateway.session("office")
        assert session is not None and session["messages"] == []
        assert resp.headers["x-athena-session"] == session["id"] != first["conversation_id"]
        if stream:
            assert assert_stream_shape(sse_events(resp.content)) == "Okay, let's start over."
        else:
            assert resp.json()["choices"][0]["message"]["content"] == "Okay, let's start over."


async def test_relay_passes_an_upstream_client_error_on(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    fake_llm.configure(known_models_only=True)  # the client's own model is not served: its mistake
    for stream in (False, True):
        resp = await gateway.client.post(
            "/v1/chat/completions",
            json={
                "model": "no-such-model",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": stream,
            },
        )
        assert resp.status_code == 404
        assert "no-such-model" in resp.json()["error"]["message"]


# -- device mode is a faithful OpenAI endpoint -------------------------------------------------------------
DEVICE = {"X-Athena-Device": "office"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_device_mode_reports_the_models_finish_reason_and_usage(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(replies=[{"content": "Once upon a time there", "finish_reason": "length"}])
    resp = await gateway.client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "a story"}]}, headers=DEVICE
    )
    body = resp.json()
    assert body["choices"][0]["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["completion_tokens"] == 5 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Kept, and marked as cut off: the user heard it, and a later turn knows it was incomplete.
    session = await gateway.session("office")
    assert session is not None
    assert session["messages"][-1]["meta"]["finish_reason"] == "length"


async def test_device_mode_stream_sends_usage_only_when_asked(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    for include in (True, False):
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        if include:
            body["stream_options"] = {"include_usage": True}
        resp = await gateway.client.post("/v1/chat/completions", json=body, headers=DEVICE)
        events = sse_events(resp.content)
        if include:
            *chunks, usage, done = events
            assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
            assert usage["id"] == chunks[0]["id"]
            assert assert_stream_shape([*chunks, done]) == "Reply to: hi"
        else:
            assert all("usage" not in e for e in events[:-1])
            assert assert_stream_shape(events) == "Reply to: hi"


async def test_device_mode_round_trips_a_clients_own_tools(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    for api, url in (("openai", fake_llm.url + "/v1"), ("ollama", fake_llm.url)):
        gateway = await gateway_factory(llm_api=api, llm_url=url)
        device = {"X-Athena-Device": f"tools-{api}"}
        for stream in (False, True):
            fake_llm.configure(
                replies=[
                    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
                    "It is sunny in Paris.",
                ]
            )
            asked = [{"role": "user", "content": "weather in Paris?"}]
            resp = await gateway.client.post(
                "/v1/chat/completions", json={"messages": asked, "tools": TOOLS, "stream": stream},
                headers=device,
            )
            assert resp.status_code == 200, resp.text
            if stream:
                events = sse_events(resp.content)
                calls = [c for e in events[:-1] for c in e["choices"][0]["delta"].get("tool_calls") or []]
                finish = events[-2]["choices"][0]["finish_reason"]
            else:
                choice = resp.json()["choices"][0]
                calls, finish = choice["message"]["tool_calls"], choice["finish_reason"]
            assert finish == "tool_calls"
            [call] = calls
            assert call["function"]["name"] == "get_weather"
            assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
            sent = fake_llm.requests[-1]["body"]
            assert sent["tools"][0]["function"]["name"] == "get_weather"

            # The client runs the tool and sends only its result: Athena has the rest of the conversation.
            result = {"role": "tool", "tool_call_id": call["id"], "content": '{"sky": "sunny"}'}
            resp = await gateway.client.post(
                "/v1/chat/completions",
                json={"messages": [*asked, {"role": "assistant", "tool_calls": [call]}, result],
                      "tools": TOOLS, "stream": stream},
                headers=device,
            )
            assert resp.status_code == 200, resp.text
            text = (
                assert_stream_shape(sse_events(resp.content)) if stream
                else resp.json()["choices"][0]["message"]["content"]
            )
            assert text == "It is sunny in Paris."
            sent_messages = fake_llm.requests[-1]["body"]["messages"]
            roles = [m["role"] for m in sent_messages]
            assert roles[-3:] == ["user", "assistant", "tool"]
            assert sent_messages[-1]["content"] == '{"sky": "sunny"}'
            if api == "openai":
                assert sent_messages[-2]["tool_calls"][0]["id"] == call["id"]
                assert sent_messages[-1]["tool_call_id"] == call["id"]
            else:  # Ollama's own format: arguments as an object, results named by the tool
                assert sent_messages[-2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
                assert sent_messages[-1]["tool_name"] == "get_weather"
            session = await gateway.session(f"tools-{api}")
            assert session is not None
            kept = session["messages"][-4:]
            assert [m["role"] for m in kept] == ["user", "assistant", "tool", "assistant"]
            assert kept[1]["meta"]["tool_calls"][0]["name"] == "get_weather"
            assert kept[2]["meta"]["tool_call_id"] == call["id"]


async def test_one_error_code_per_failure_before_and_during_a_stream(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    long = " ".join(f"w{i}" for i in range(30))
    for headers in ({}, DEVICE):
        fake_llm.configure(status=500)
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        before = await gateway.client.post("/v1/chat/completions", json=body, headers=headers)
        assert before.status_code == 502 and before.json()["error"]["code"] == "llm_unavailable"
        fake_llm.configure(status=None, reply=long, drop_after=3)
        during = await gateway.client.post("/v1/chat/completions", json=body, headers=headers)
        assert during.status_code == 200
        error = sse_events(during.content)[-2]
        assert error["error"]["code"] == "llm_unavailable", error
        fake_llm.configure(drop_after=None)


async def test_a_wrong_upstream_path_is_not_passed_on_as_athenas_404(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    """A 404 that is not about a model means ATHENA_LLM_URL (or the API kind) is wrong: a 502 saying so."""
    gateway = await gateway_factory(llm_url=fake_llm.url + "/wrong/v1")  # aiohttp's bare 404 page
    for stream in (False, True):
        resp = await gateway.client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "stream": stream}
        )
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "llm_misconfigured"
        assert "HTTP 404" in resp.json()["error"]["message"]
        assert "check the URL and the API kind" in resp.json()["error"]["message"]


async def test_an_openai_shaped_404_about_a_path_is_not_passed_on(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    """llama.cpp answers an unknown path with OpenAI's error shape ("File Not Found"): still Athena's URL."""
    fake_llm.configure(status=404)  # {"error": {"message": "fake LLM failure 404", ...}}: no model named
    body = {"messages": [{"role": "user", "content": "hi"}]}
    resp = await gateway.client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "llm_misconfigured"


async def test_allow_names_every_method_of_a_session(gateway: LiveGateway) -> None:
    resp = await gateway.client.put("/athena/sessions/office")
    assert resp.status_code == 405
    assert {m.strip() for m in resp.headers["allow"].split(",")} >= {"GET", "DELETE"}
