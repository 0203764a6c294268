"""Health, readiness, metrics and the operator's session endpoints."""

from __future__ import annotations

from tests.api.conftest import GatewayFactory, LiveGateway
from tests.support.fake_llm import FakeLLM


async def test_live_and_ready(gateway: LiveGateway) -> None:
    assert (await gateway.client.get("/health/live")).json() == {"status": "ok"}
    assert (await gateway.client.get("/health/ready")).json() == {"status": "ready"}


async def test_ready_is_503_with_a_reason_when_the_llm_is_down(
    gateway: LiveGateway, fake_llm: FakeLLM
) -> None:
    assert gateway.core.probe is not None
    gateway.core.probe.ttl = 0  # probe on every call for this test
    assert (await gateway.client.get("/health/ready")).status_code == 200
    fake_llm.configure(status=503)
    resp = await gateway.client.get("/health/ready")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("llm:")
    assert (await gateway.client.get("/health/live")).status_code == 200  # alive all the same
    summary = await gateway.client.get("/health")
    assert summary.status_code == 503
    assert summary.json()["status"] == "unavailable"  # no backend can answer
    assert summary.json()["llm"]["ok"] is False
    assert summary.json()["store"]["ok"] is True


async def test_ready_probes_are_cached(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    await gateway.client.get("/health/ready")
    probes = len([r for r in fake_llm.requests if r["path"].endswith("/models")])
    for _ in range(5):
        await gateway.client.get("/health/ready")
    assert len([r for r in fake_llm.requests if r["path"].endswith("/models")]) == probes


async def test_health_summary(gateway: LiveGateway) -> None:
    body = (await gateway.client.get("/health")).json()
    assert body["status"] == "ok"
    assert body["version"] == "0.1.0"
    assert body["store"]["kind"] == "memory" and body["store"]["ok"] is True
    assert (
        body["llm"]["api"] == "openai" and body["llm"]["model"] == "fake-model" and body["llm"]["ok"] is True
    )
    assert "enabled" in body["local_path"]


async def test_metrics_count_requests_and_answers(gateway: LiveGateway) -> None:
    before = await gateway.metric("athena_answers_total", path="llm")
    requests_before = await gateway.metric(
        "athena_http_requests_total", endpoint="/ha/conversation", status="200"
    )
    await gateway.converse("hello", device_id="office")
    resp = await gateway.client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    assert "athena_http_request_duration_seconds_bucket" in resp.text
    assert await gateway.metric("athena_answers_total", path="llm") == before + 1
    assert (
        await gateway.metric("athena_http_requests_total", endpoint="/ha/conversation", status="200")
        == requests_before + 1
    )
    # Unknown paths share one label instead of growing the metric without bound.
    await gateway.client.get("/no/such/path/12345")
    assert "/no/such/path/12345" not in (await gateway.client.get("/metrics")).text


async def test_sessions_list_show_and_clear(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    assert (await gateway.client.get("/athena/sessions")).json() == {"sessions": []}
    first = await gateway.converse("hello", device_id="office")
    await gateway.converse("hi", device_id="assist_satellite.kitchen")
    listed = (await gateway.client.get("/athena/sessions")).json()["sessions"]
    assert {s["device"] for s in listed} == {"office", "assist_satellite.kitchen"}

    shown = await gateway.session("office")
    assert shown is not None
    assert shown["id"] == first["conversation_id"]
    assert shown["turns"] == 1
    assert shown["expires_reason"] == "timeout"
    assert [m["role"] for m in shown["messages"]] == ["user", "assistant"]

    resp = await gateway.client.delete("/athena/sessions/office")
    assert resp.json() == {"cleared": True, "device": "office"}
    assert await gateway.session("office") is None
    assert (await gateway.client.delete("/athena/sessions/office")).status_code == 404
    again = await gateway.converse("hello again", device_id="office")
    assert again["conversation_id"] != first["conversation_id"]
    assert [m["role"] for m in fake_llm.requests[-1]["body"]["messages"]] == ["system", "user"]


async def test_session_of_an_unknown_device_is_404(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory()
    resp = await gw.client.get("/athena/sessions/nobody")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "no_session"
