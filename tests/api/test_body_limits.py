"""Body limits per endpoint (issue 12): HA's llama_cpp/litellm send the whole chat log with the exposed-entity
overview and every tool schema each turn. The fixture is such a request, built by HA 2026.11's own code
(`bench/ha_request_body.py`: 100 exposed entities, a 20-turn session with device commands and live-context
calls): 66 KB, over the old single 64 KiB limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.api.conftest import GatewayFactory, sse_events
from tests.support.fake_llm import FakeLLM

FIXTURE = Path(__file__).parents[1] / "fixtures" / "ha-2026.11-llama_cpp-100-entities-20-turns.json"


def ha_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(FIXTURE.read_bytes())
    return {**body, **changes}


async def test_what_ha_sends_is_relayed_whole(gateway_factory: GatewayFactory, fake_llm: FakeLLM) -> None:
    gw = await gateway_factory()
    raw = orjson.dumps(ha_body(model="fake-model"))
    assert len(raw) > 65_536  # the old limit for every endpoint
    for stream in (True, False):
        resp = await gw.client.post(
            "/v1/chat/completions",
            content=orjson.dumps(ha_body(model="fake-model", stream=stream)),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 200, resp.text
        if stream:
            assert sse_events(resp.content)[-1] == "[DONE]"
        sent = fake_llm.requests[-1]["body"]
        assert sent["messages"] == ha_body()["messages"] and sent["tools"] == ha_body()["tools"]


async def test_limits_are_per_endpoint(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(max_body_bytes=4096, max_body_bytes_openai=200_000)
    big_turn = {"text": "hello", "history": [{"role": "user", "content": "x" * 5000}]}
    resp = await gw.client.post("/ha/conversation", json=big_turn)
    assert resp.status_code == 413 and "the limit is 4096" in resp.json()["error"]["message"]
    resp = await gw.client.post("/v1/chat/completions", json=ha_body(model="fake-model", stream=False))
    assert resp.status_code == 200
    resp = await gw.client.post(
        "/v1/chat/completions", json=ha_body(messages=[{"role": "user", "content": "x" * 250_000}])
    )
    assert resp.status_code == 413 and "the limit is 200000" in resp.json()["error"]["message"]
