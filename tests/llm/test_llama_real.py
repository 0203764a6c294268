"""One chat completion through the real llama.cpp server (skipped until scripts/llama-server has built it)."""

from __future__ import annotations

import aiohttp

from tests.support.llama import LlamaServer


async def test_real_server_answers_a_chat_completion(llama_server: LlamaServer) -> None:
    body = {
        "model": llama_server.model,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 24,
        "temperature": 0,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{llama_server.url}/chat/completions", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        data = await resp.json()
    choice = data["choices"][0]
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
