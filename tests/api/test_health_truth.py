"""Health that tells the truth (issue 12): readiness checks the model is served, reports each LLM backend
apart, stays ready while any backend answers, and a wrong URL or API kind is not ready. The spoken and
logged turn errors say the same thing readiness says."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from athena.engine.engine import SPOKEN_ERRORS
from tests.api.conftest import GatewayFactory, LiveGateway
from tests.support.fake_llm import FakeLLM
from tests.support.gateway import free_port


@pytest.fixture
async def second_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


async def health(gw: LiveGateway) -> tuple[int, dict[str, Any], int, dict[str, Any]]:
    assert gw.core.probe is not None
    gw.core.probe.ttl = 0  # probe on every call
    ready = await gw.client.get("/health/ready")
    summary = await gw.client.get("/health")
    return ready.status_code, ready.json(), summary.status_code, summary.json()


def spoken(body: dict[str, Any]) -> str:
    assert body["response"]["response_type"] == "error"
    speech: str = body["response"]["speech"]["plain"]["speech"]
    return speech


async def test_a_model_the_server_does_not_serve_is_not_ready_and_says_so(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(known_models_only=True)  # as Ollama and vLLM answer an unknown model
    gw = await gateway_factory(llm_model="no-such-model")
    status, ready, summary_status, summary = await health(gw)
    assert status == 503 and ready["status"] == "unavailable"
    assert "llm: the LLM at" in ready["reason"] and "does not serve model 'no-such-model'" in ready["reason"]
    assert "'fake-model'" in ready["reason"]  # what it does serve
    assert summary_status == 503 and summary["llm"]["ok"] is False
    assert summary["llm"]["problem"] == "model_missing"

    with capture_logs() as logs:
        body = await gw.converse("hello", device_id="office")
    assert spoken(body) == SPOKEN_ERRORS["en"]["llm_model_missing"]
    assert "can't reach" not in spoken(body)
    [failed] = [e for e in logs if e["event"] == "turn.failed"]
    assert failed["failure"] == "llm_model_missing" and "does not serve the model" in failed["error"]
    assert "no-such-model" in failed["error"]


async def test_the_configured_model_served_is_ready(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(known_models_only=True, models=["llama3.2:latest", "fake-model"])
    gw = await gateway_factory(llm_model="llama3.2")  # Ollama's implicit :latest
    status, ready, _, summary = await health(gw)
    assert (status, ready) == (200, {"status": "ready"})
    assert summary["status"] == "ok" and "llm_fallback" not in summary


@pytest.mark.parametrize(
    ("overrides", "speaks", "api"),
    [
        ({"llm_url_suffix": "/wrong/v1"}, None, "openai"),  # a wrong path: the server's own 404 page
        ({"llm_url_suffix": ""}, None, "openai"),  # Ollama's root, where /models is not
        ({"llm_url_suffix": "/v1", "llm_api": "ollama"}, "openai", "ollama"),  # llama.cpp has no /api/tags
        ({"llm_url_suffix": "/v1"}, "ollama", "openai"),  # an Ollama without its OpenAI layer
    ],
    ids=["wrong-path", "missing-v1", "ollama-api-at-an-openai-server", "openai-api-at-an-ollama-server"],
)
async def test_a_wrong_url_or_api_kind_is_not_ready_and_says_so(
    gateway_factory: GatewayFactory,
    fake_llm: FakeLLM,
    overrides: dict[str, str],
    speaks: str | None,
    api: str,
) -> None:
    fake_llm.configure(speaks=speaks)
    suffix = overrides.pop("llm_url_suffix")
    gw = await gateway_factory(llm_url=fake_llm.url + suffix, **overrides)
    status, ready, summary_status, summary = await health(gw)
    assert status == 503, ready
    assert f"so it is not an {api} API there" in ready["reason"] and "HTTP 404" in ready["reason"]
    assert summary_status == 503 and summary["llm"]["problem"] == "wrong_endpoint"
    with capture_logs() as logs:
        body = await gw.converse("hello", device_id="office")
    assert spoken(body) == SPOKEN_ERRORS["en"]["llm_misconfigured"]
    [failed] = [e for e in logs if e["event"] == "turn.failed"]
    assert failed["failure"] == "llm_misconfigured" and "check the URL and the API kind" in failed["error"]


async def test_a_refused_primary_is_reported_apart_and_the_fallback_keeps_it_ready(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    gw = await gateway_factory(
        llm_url=f"http://127.0.0.1:{free_port()}/v1", llm_fallback_url=fake_llm.url + "/v1"
    )
    status, ready, summary_status, summary = await health(gw)
    assert status == 200 and ready["status"] == "degraded"
    assert (
        ready["reason"].startswith("llm: cannot reach the LLM at") and "llm_fallback" not in ready["reason"]
    )
    assert summary_status == 200 and summary["status"] == "degraded"
    assert summary["llm"]["ok"] is False and summary["llm"]["problem"] == "unavailable"  # not "ok" any more
    assert summary["llm_fallback"]["ok"] is True and summary["llm_fallback"]["api"] == "openai-fallback"
    body = await gw.converse("hello", device_id="office")
    assert body["response"]["response_type"] == "query_answer"


async def test_a_hung_primary_does_not_make_a_working_fallback_unready(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM, second_llm: FakeLLM
) -> None:
    second_llm.configure(delay=30)  # accepts, then never answers in time: the probe's own timeout ends it
    gw = await gateway_factory(
        llm_url=second_llm.url + "/v1", llm_fallback_url=fake_llm.url + "/v1", llm_first_token_timeout=0.5
    )
    started = time.monotonic()
    status, ready, summary_status, summary = await health(gw)
    assert status == 200 and ready["status"] == "degraded", ready
    assert "llm: no answer within" in ready["reason"]
    assert summary_status == 200 and summary["llm"]["problem"] == "timeout" and summary["llm_fallback"]["ok"]
    assert time.monotonic() - started < 20  # both probes ran at once, each bounded (not a timing claim)
    body = await gw.converse("hello", device_id="office")
    assert body["response"]["response_type"] == "query_answer"  # the fallback answered


async def test_both_backends_down_is_unavailable_naming_both(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(known_models_only=True)
    gw = await gateway_factory(
        llm_url=f"http://127.0.0.1:{free_port()}/v1",
        llm_fallback_url=fake_llm.url + "/v1",
        llm_fallback_model="not-pulled",
    )
    status, ready, summary_status, summary = await health(gw)
    assert status == 503 and ready["status"] == "unavailable"
    assert "llm: cannot reach" in ready["reason"] and "llm_fallback: the LLM at" in ready["reason"]
    assert summary_status == 503 and summary["llm_fallback"]["problem"] == "model_missing"
