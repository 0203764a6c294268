"""Metrics operators need (issue 12): why turns fail, fallback use, LLM errors by backend, requests in flight,
time to first token on every LLM call, and no `_created` series."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api.conftest import GatewayFactory, LiveGateway
from tests.support.fake_llm import FakeLLM
from tests.support.gateway import free_port

REASONS = ("llm_timeout", "llm_error", "llm_model_missing", "llm_misconfigured", "store", "internal")
HELLO = {"messages": [{"role": "user", "content": "hello"}]}


async def test_every_failure_reason_is_exported_from_the_start(gateway: LiveGateway) -> None:
    text = (await gateway.client.get("/metrics")).text
    for reason in REASONS:
        assert f'athena_turn_failures_total{{reason="{reason}"}}' in text


async def test_no_created_series(gateway: LiveGateway) -> None:
    await gateway.converse("hello", device_id="office")
    text = (await gateway.client.get("/metrics")).text
    assert "athena_answers_total" in text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert [n for n in names if n.endswith("_created")] == []


@pytest.mark.parametrize(
    ("knobs", "settings", "reason", "kind"),
    [
        ({"status": 500}, {}, "llm_error", "http"),
        ({"delay": 2}, {"llm_timeout": 0.3, "llm_first_token_timeout": 0.3}, "llm_timeout", "timeout"),
        ({"known_models_only": True}, {"llm_model": "no-such-model"}, "llm_model_missing", "model_missing"),
        ({"garbage": True}, {}, "llm_error", "protocol"),
    ],
    ids=["http-500", "timeout", "model-missing", "garbage"],
)
async def test_a_failed_turn_counts_its_reason_and_the_backends_error(
    gateway_factory: GatewayFactory,
    fake_llm: FakeLLM,
    knobs: dict[str, Any],
    settings: dict[str, Any],
    reason: str,
    kind: str,
) -> None:
    gw = await gateway_factory(**settings)
    failures = await gw.metric("athena_turn_failures_total", reason=reason)
    errors = await gw.metric("athena_llm_errors_total", backend="openai", kind=kind)
    fake_llm.configure(**knobs)
    await gw.converse("hello", device_id="office")  # a streamed turn
    await gw.client.post("/v1/chat/completions", json=HELLO)  # a relayed, whole one
    assert await gw.metric("athena_turn_failures_total", reason=reason) == failures + 2
    assert await gw.metric("athena_llm_errors_total", backend="openai", kind=kind) == errors + 2


async def test_fallback_use_and_the_primarys_errors_are_counted(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    gw = await gateway_factory(
        llm_url=f"http://127.0.0.1:{free_port()}/v1", llm_fallback_url=fake_llm.url + "/v1"
    )
    fallbacks = await gw.metric("athena_llm_fallbacks_total", backend="openai")
    unreachable = await gw.metric("athena_llm_errors_total", backend="openai", kind="unreachable")
    answered = await gw.metric("athena_llm_duration_seconds_count", backend="openai-fallback")
    body = await gw.converse("hello", device_id="office")
    assert body["response"]["response_type"] == "query_answer"
    assert (await gw.client.post("/v1/chat/completions", json=HELLO)).status_code == 200
    assert await gw.metric("athena_llm_fallbacks_total", backend="openai") == fallbacks + 2
    assert await gw.metric("athena_llm_errors_total", backend="openai", kind="unreachable") == unreachable + 2
    assert await gw.metric("athena_llm_duration_seconds_count", backend="openai-fallback") == answered + 2
    # Readiness probes of the refused primary are not answers: they add no errors.
    assert gw.core.probe is not None
    gw.core.probe.ttl = 0
    for _ in range(3):
        await gw.client.get("/health/ready")
    assert await gw.metric("athena_llm_errors_total", backend="openai", kind="unreachable") == unreachable + 2


async def test_the_first_token_histogram_sees_every_llm_call(gateway: LiveGateway) -> None:
    count = "athena_llm_first_token_seconds_count"
    before = await gateway.metric(count, backend="openai")
    answers = await gateway.metric("athena_llm_duration_seconds_count", backend="openai")
    await gateway.client.post("/v1/chat/completions", json=HELLO)  # relayed whole: first token = the end
    await gateway.client.post("/v1/chat/completions", json={**HELLO, "stream": True})
    await gateway.client.post("/v1/chat/completions", json=HELLO, headers={"X-Athena-Device": "office"})
    await gateway.converse("hello", device_id="office")
    assert await gateway.metric(count, backend="openai") == before + 4
    assert await gateway.metric("athena_llm_duration_seconds_count", backend="openai") == answers + 4


async def test_requests_in_flight(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    idle = await gateway.metric("athena_http_requests_in_flight")  # this /metrics request itself
    assert idle >= 1
    fake_llm.configure(delay=1.0)
    slow = [asyncio.create_task(gateway.converse("hello", device_id=f"dev{i}")) for i in range(3)]
    for _ in range(100):
        if len([r for r in fake_llm.requests if r["path"].endswith("/chat/completions")]) == 3:
            break
        await asyncio.sleep(0.02)
    assert await gateway.metric("athena_http_requests_in_flight") == idle + 3
    await asyncio.gather(*slow)
    assert await gateway.metric("athena_http_requests_in_flight") == idle
