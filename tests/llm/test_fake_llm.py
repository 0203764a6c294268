"""The fake LLM itself: other suites lean on its knobs, so they must do what they say."""

from __future__ import annotations

import aiohttp

from tests.support.fake_llm import FakeLLM


async def test_default_reply_echoes_the_last_user_message(fake_llm: FakeLLM) -> None:
    async with aiohttp.ClientSession() as http:
        messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        body = {"model": "m", "messages": messages}
        async with http.post(f"{fake_llm.url}/v1/chat/completions", json=body) as resp:
            data = await resp.json()
    assert data["choices"][0]["message"]["content"] == "Reply to: b"
    assert fake_llm.requests[0]["path"] == "/v1/chat/completions"
    assert fake_llm.requests[0]["body"] == body


async def test_control_endpoints_change_and_reset_knobs(fake_llm: FakeLLM) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake_llm.url}/_control", json={"reply": "Which room?"}) as resp:
            assert resp.status == 200
        async with http.post(f"{fake_llm.url}/_control", json={"nope": 1}) as resp:
            assert resp.status == 400
        async with http.post(f"{fake_llm.url}/api/chat", json={"model": "m", "stream": False}) as resp:
            assert (await resp.json(content_type=None))["message"]["content"] == "Which room?"
        async with http.get(f"{fake_llm.url}/_requests") as resp:
            recorded = await resp.json()
        assert [r["path"] for r in recorded] == ["/api/chat"]
        async with http.post(f"{fake_llm.url}/_reset") as resp:
            assert resp.status == 200
    assert fake_llm.requests == []
    assert fake_llm.knobs.reply is None
