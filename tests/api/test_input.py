"""Bad input gets a precise 4xx in the one error shape, never a 500, and loses nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import GatewayFactory, LiveGateway, llm_messages
from tests.support.fake_llm import FakeLLM, said


def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "type"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


async def post_raw(gw: LiveGateway, content: bytes, path: str = "/ha/conversation", **headers: str) -> Any:
    return await gw.client.post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )


async def test_bad_json_is_400(gateway: LiveGateway) -> None:
    for raw in (b'{"text": "hi"', b"not json", b'{"text": "\\ud800"}', b"\xff\xfe"):
        assert_error(await post_raw(gateway, raw), 400, "bad_json")
    assert_error(await post_raw(gateway, b""), 400, "bad_json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": 5}, "text"),
        ({"text": None}, "text"),
        ({"text": ["hi"]}, "text"),
        ({"text": "hi", "device_id": 12}, "device_id"),
        ({"text": "hi", "history": [{"role": "system", "content": "x"}]}, "history.0.role"),
        ({"text": "hi", "history": "nope"}, "history"),
        ({"text": "hi", "language": "x" * 100}, "language"),
    ],
)
async def test_wrong_types_are_422_naming_the_field(
    gateway: LiveGateway, body: dict[str, Any], field: str
) -> None:
    error = assert_error(await gateway.client.post("/ha/conversation", json=body), 422)
    assert error["message"].startswith(field + ":"), error["message"]


async def test_a_json_body_that_is_not_an_object_is_422(gateway: LiveGateway) -> None:
    for raw in (b"[1, 2]", b'"text"', b"null", b"3"):
        assert_error(await post_raw(gateway, raw), 422)


@pytest.mark.parametrize("text", ["", "   ", "\x00\x07", "\n\t "])
async def test_empty_text_is_422(gateway: LiveGateway, text: str) -> None:
    error = assert_error(await gateway.client.post("/ha/conversation", json={"text": text}), 422)
    assert error["message"] == "text: must not be empty"


async def test_text_longer_than_the_limit_is_422(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(max_text_chars=50)
    error = assert_error(
        await gw.client.post("/ha/conversation", json={"text": "x" * 51}), 422, "text_too_long"
    )
    assert "50" in error["message"]
    assert (await gw.client.post("/ha/conversation", json={"text": "x" * 50})).status_code == 200


async def test_a_body_over_the_limit_is_413_before_parsing(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(max_body_bytes=2048)
    big = b'{"text": "' + b"x" * 4000 + b'"}'
    assert_error(await post_raw(gw, big), 413, "body_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    resp = await gw.client.post(
        "/ha/conversation", content=chunked(), headers={"content-type": "application/json"}
    )
    assert_error(resp, 413, "body_too_large")

    async def small() -> AsyncIterator[bytes]:
        yield b'{"text": '
        yield b'"hello"}'

    resp = await gw.client.post(
        "/ha/conversation", content=small(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("device", ["bad device", "x" * 129, "-leading-dash", "a\u00e9b", "semi;colon"])
async def test_a_bad_device_id_is_422(gateway: LiveGateway, device: str) -> None:
    resp = await gateway.client.post("/ha/conversation", json={"text": "hi", "device_id": device})
    error = assert_error(resp, 422, "invalid_device_id")
    assert error["message"].startswith("device_id:")
    resp = await gateway.client.get(f"/athena/sessions/{device.replace(' ', '%20')}")
    assert resp.status_code == 422


@pytest.mark.parametrize(
    "text",
    [
        "what's 2+2? 🤔",
        "שלום, מה שלומך",
        "e\u0301te\u0301",  # combining accents (normalised to NFC)
        "zero\u200bwidth",
        "日本語で答えて",
        "x" * 2000,
    ],
)
async def test_odd_unicode_is_answered(gateway: LiveGateway, fake_llm: FakeLLM, text: str) -> None:
    import unicodedata

    body = await gateway.converse(text, device_id="office")
    assert body["response"]["response_type"] == "query_answer"
    assert said(llm_messages(fake_llm)[-1]) == unicodedata.normalize("NFC", text)


async def test_control_characters_are_stripped(gateway: LiveGateway, fake_llm: FakeLLM) -> None:
    await gateway.converse("turn\x00 on\x07 the\r\nlight\x1b", device_id="office")
    assert said(llm_messages(fake_llm)[-1]) == "turn on the light"


async def test_unknown_path_and_wrong_method_use_the_error_shape(gateway: LiveGateway) -> None:
    assert_error(await gateway.client.get("/nope"), 404, "not_found")
    assert_error(await gateway.client.get("/ha/conversation"), 405, "method_not_allowed")
    assert_error(await gateway.client.put("/v1/chat/completions", json={}), 405)


async def test_a_non_json_content_type_is_415(gateway: LiveGateway) -> None:
    resp = await gateway.client.post(
        "/ha/conversation", content=b"text=hi", headers={"content-type": "text/plain"}
    )
    assert_error(resp, 415, "unsupported_media_type")


async def test_openai_bad_bodies_are_400_naming_the_field(gateway: LiveGateway) -> None:
    """OpenAI answers type errors with 400 and the parameter's name; so does Athena, in both modes."""
    user = [{"role": "user", "content": "x"}]
    for body, field in (
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": user, "stream": "yes please"}, "stream"),
        ({"messages": user, "stream": "yes"}, "stream"),
        ({"messages": user, "stream": 1}, "stream"),
        ({"messages": user, "temperature": "0.5"}, "temperature"),
        ({"messages": user, "temperature": 3}, "temperature"),
        ({"messages": user, "max_tokens": "64"}, "max_tokens"),
        ({"messages": user, "max_tokens": 1.5}, "max_tokens"),
        ({"messages": user, "stream_options": {"include_usage": "true"}}, "stream_options.include_usage"),
        ({"messages": user, "tools": {"type": "function"}}, "tools"),
    ):
        for headers in ({}, {"X-Athena-Device": "office"}):
            resp = await gateway.client.post("/v1/chat/completions", json=body, headers=headers)
            error = assert_error(resp, 400, "invalid_value")
            assert error["message"].startswith(field + ":"), (body, error)


async def test_no_client_input_gives_a_500(gateway: LiveGateway) -> None:
    bodies: list[bytes] = [
        b"{}",
        b'{"text": {}}',
        b'{"text": "hi", "history": [1]}',
        b'{"text": "hi", "history": [{}]}',
        b'{"text": "hi", "conversation_id": 5}',
        b'{"text": "hi", "conversation_id": "' + b"z" * 300 + b'"}',
        b'{"text": "hi", "new_session": "maybe"}',
        b'{"text": "\\u0000"}',
        b"[" * 1000 + b"]" * 1000,
        b'{"text": "hi", "satellite_id": "../../etc"}',
        b'{"text": 1e999}',
    ]
    for raw in bodies:
        for path in ("/ha/conversation", "/v1/chat/completions"):
            resp = await post_raw(gateway, raw, path)
            assert 400 <= resp.status_code < 500 or resp.status_code == 200, (
                raw,
                resp.status_code,
                resp.text,
            )
