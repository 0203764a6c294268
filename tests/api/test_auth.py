"""The API token: required everywhere but /health*, constant-time compared, generated once when not given."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from athena.api.auth import load_token
from tests.api.conftest import GatewayFactory, LiveGateway, make_settings, serve

PROTECTED = [
    ("POST", "/ha/conversation"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/metrics"),
    ("GET", "/athena/info"),
    ("GET", "/athena/sessions"),
    ("DELETE", "/athena/sessions/office"),
    ("GET", "/nope"),
]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "Bearer", "Basic dGVzdA==", "test-token-0123456789"]
)
async def test_missing_or_wrong_token_is_401(gateway: LiveGateway, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as anon:
        for method, path in PROTECTED:
            resp = await anon.request(method, path, json={"text": "hi"} if method == "POST" else None)
            assert resp.status_code == 401, (method, path)
            assert resp.headers["www-authenticate"] == "Bearer"
            assert resp.json()["error"]["code"] == "unauthorized"
            assert resp.json()["error"]["type"] == "authentication_error"


async def test_health_endpoints_need_no_token(gateway: LiveGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        for path in ("/health/live", "/health/ready", "/health"):
            assert (await anon.get(path)).status_code == 200, path


async def test_the_bearer_scheme_is_case_insensitive(gateway: LiveGateway) -> None:
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"bearer {gateway.token}"}
    ) as c:
        assert (await c.get("/athena/info")).status_code == 200


def test_token_is_generated_once_into_the_data_dir_with_mode_0600(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm_url="http://127.0.0.1:1/v1", api_token=None)
    first = load_token(settings)
    assert first.generated
    path = Path(first.source)
    assert path == settings.data_dir / "api_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first.value
    assert len(first.value) >= 32
    again = load_token(settings)
    assert again.value == first.value
    assert not again.generated


def test_the_environment_token_wins(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm_url="http://127.0.0.1:1/v1", api_token="from-env")
    token = load_token(settings)
    assert (token.value, token.source) == ("from-env", "ATHENA_API_TOKEN")
    assert not (settings.data_dir / "api_token").exists()


async def test_a_gateway_without_a_token_setting_serves_with_the_generated_one(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm_url="http://127.0.0.1:1/v1", api_token=None)
    async with serve(settings) as gw:
        stored = (settings.data_dir / "api_token").read_text().strip()
        assert gw.token == stored
        assert (await gw.client.get("/athena/info")).status_code == 200


async def test_request_id_is_echoed_or_made(gateway: LiveGateway) -> None:
    resp = await gateway.client.get("/athena/info", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    resp = await gateway.client.get("/athena/info")
    assert len(resp.headers["x-request-id"]) == 16
    resp = await gateway.client.get("/athena/info", headers={"X-Request-ID": "bad id with spaces"})
    assert resp.headers["x-request-id"] != "bad id with spaces"
    async with httpx.AsyncClient(base_url=gateway.url) as anon:
        resp = await anon.get("/metrics", headers={"X-Request-ID": "r-401"})
    assert resp.status_code == 401
    assert resp.headers["x-request-id"] == "r-401"


async def test_info_describes_the_gateway(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory()
    info = (await gw.client.get("/athena/info")).json()
    instance = info.pop("instance_id")
    assert info == {
        "service": "athena",
        "version": "0.1.0",
        "local_intents": False,
        "store": "memory",
        "llm": {"api": "openai", "model": "fake-model"},
    }
    # Generated once into the data dir: the same gateway after a restart is the same instance for HA.
    assert (gw.settings.data_dir / "instance_id").read_text().strip() == instance
    again = await gateway_factory()
    assert (await again.client.get("/athena/info")).json()["instance_id"] == instance
    named = await gateway_factory(instance_id="athena-home-1")
    assert (await named.client.get("/athena/info")).json()["instance_id"] == "athena-home-1"
