"""Both wire formats against the fake LLM: answers, streams, options, and every way an upstream fails."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from athena.llm import (
    LLMError,
    LLMHTTPError,
    LLMModelMissing,
    LLMTimeout,
    LLMWrongEndpoint,
    OllamaBackend,
    OpenAIBackend,
)
from tests.llm.conftest import backend_for
from tests.support.fake_llm import FakeLLM

Backend = OpenAIBackend | OllamaBackend
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "turn on the kitchen light"}]
LONG = " ".join(f"word{i}" for i in range(40))


async def collect(backend: Backend, **options: object) -> list[str]:
    return [d async for d in backend.stream(USER, **options)]


# -- answers -----------------------------------------------------------------------------------------------
async def test_chat_returns_the_answer_and_sends_the_history(llm: Backend, fake_llm: FakeLLM) -> None:
    assert await llm.chat(USER) == "Reply to: turn on the kitchen light"
    sent = fake_llm.requests[-1]
    assert sent["body"]["messages"] == USER
    assert sent["body"]["model"] == "fake-model"
    assert sent["body"]["stream"] is False


async def test_stream_yields_text_deltas_that_join_to_the_answer(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply="Which room do you mean?", chunk_delay=0.02)  # each delta in a read of its own
    deltas = await collect(llm)
    assert "".join(deltas) == "Which room do you mean?"
    assert len(deltas) == 5
    assert all(deltas)
    assert fake_llm.requests[-1]["body"]["stream"] is True


async def test_openai_options_go_into_the_body(fake_llm: FakeLLM) -> None:
    async with backend_for("openai", fake_llm.url) as llm:
        await llm.chat(USER, temperature=0.2, max_tokens=64)
    body = fake_llm.requests[-1]["body"]
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 64


async def test_ollama_maps_openai_options_and_keep_alive(fake_llm: FakeLLM) -> None:
    llm = OllamaBackend(fake_llm.url + "/v1/", "fake-model", keep_alive="30m")  # /v1 dropped: native API
    async with llm:
        await llm.chat(USER, temperature=0.2, max_tokens=64, seed=7, response_format={"type": "json_object"})
    sent = fake_llm.requests[-1]
    assert sent["path"] == "/api/chat"
    assert sent["body"]["options"] == {"temperature": 0.2, "num_predict": 64, "seed": 7}
    assert sent["body"]["format"] == "json"
    assert sent["body"]["keep_alive"] == "30m"


async def test_models_and_ping(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(models=["llama3.2", "qwen3", "fake-model"])
    assert await llm.models() == ["llama3.2", "qwen3", "fake-model"]
    await llm.ping()
    fake_llm.configure(models=["fake-model:latest"])  # Ollama's implicit tag is the same model
    await llm.ping()


async def test_ping_fails_when_the_model_is_not_served(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(models=["llama3.2", "qwen3"], known_models_only=True)
    missing = r"does not serve model 'fake-model' \(it serves 'llama3.2', 'qwen3'\)"
    with pytest.raises(LLMModelMissing, match=missing):
        await llm.ping()
    fake_llm.configure(models=[])
    with pytest.raises(LLMModelMissing, match="it serves no model"):
        await llm.ping()


async def test_ping_accepts_a_server_that_answers_any_model_name(llm: Backend, fake_llm: FakeLLM) -> None:
    """llama.cpp lists its model file's path and answers whatever name a request gives."""
    fake_llm.configure(models=["/models/SmolLM2-135M-Instruct.Q4_1.gguf"])  # answers "fake-model" too
    await llm.ping()
    probes = [r for r in fake_llm.requests if r["path"].endswith(("/chat/completions", "/api/chat"))]
    assert len(probes) == 1 and probes[0]["body"]["model"] == "fake-model"
    assert probes[0]["body"].get("max_tokens") == 1 or probes[0]["body"]["options"]["num_predict"] == 1
    await llm.ping()  # remembered: no second request
    assert len([r for r in fake_llm.requests if r["path"].endswith(("/chat/completions", "/api/chat"))]) == 1


async def test_a_chat_for_a_model_not_served_is_model_missing(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(known_models_only=True, models=["llama3.2"])
    for call in (llm.chat(USER), collect(llm)):
        with pytest.raises(LLMModelMissing, match="does not serve the model: the LLM answered HTTP 404"):
            await call


async def test_api_key_is_sent_as_bearer_only_when_set(api: str, fake_llm: FakeLLM) -> None:
    from athena.llm import make_backend

    base = fake_llm.url + ("/v1" if api == "openai" else "")
    async with make_backend(api, base, "m", api_key="sk-secret") as keyed:
        await keyed.chat(USER)
    async with make_backend(api, base, "m") as anonymous:
        await anonymous.chat(USER)
    assert fake_llm.requests[0]["headers"]["authorization"] == "Bearer sk-secret"
    assert "authorization" not in fake_llm.requests[1]["headers"]


async def test_concurrent_requests_share_one_client(llm: Backend, fake_llm: FakeLLM) -> None:
    texts = [f"question {i}" for i in range(16)]
    answers = await asyncio.gather(*(llm.chat([{"role": "user", "content": t}]) for t in texts))
    assert answers == [f"Reply to: {t}" for t in texts]


async def test_stopping_a_stream_early_leaves_the_backend_usable(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply=LONG)
    stream = llm.stream(USER)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    fake_llm.configure(reply="again")
    assert await llm.chat(USER) == "again"


async def test_metrics_count_answers_and_first_tokens(llm: Backend) -> None:
    def sample(metric: str) -> float:
        return REGISTRY.get_sample_value(f"{metric}_count", {"backend": llm.name}) or 0.0

    await llm.chat(USER)
    await collect(llm)
    assert sample("athena_llm_duration_seconds") == 2
    assert sample("athena_llm_first_token_seconds") == 2  # a whole answer's first token comes at its end


async def test_a_backend_that_is_not_open_says_so(api: str, fake_llm: FakeLLM) -> None:
    with pytest.raises(LLMError, match="not open"):
        await backend_for(api, fake_llm.url).chat(USER)


# -- failures ----------------------------------------------------------------------------------------------
async def test_refused_connection_is_an_llm_error(api: str, refused_url: str) -> None:
    async with backend_for(api, refused_url) as llm:
        for call in (llm.chat(USER), collect(llm), llm.ping(), llm.models()):
            with pytest.raises(LLMError, match=r"cannot reach .*: connection refused") as info:
                await call
            assert not isinstance(info.value, LLMTimeout)


async def test_connect_timeout(api: str, unanswered_url: str) -> None:
    async with backend_for(api, unanswered_url, connect=0.2) as llm:
        with pytest.raises(LLMTimeout, match="could not connect"):
            await llm.chat(USER)


async def test_whole_answer_timeout(api: str, fake_llm: FakeLLM) -> None:
    fake_llm.configure(delay=2)
    async with backend_for(api, fake_llm.url, total=0.2) as slow:
        with pytest.raises(LLMTimeout, match="did not finish"):
            await slow.chat(USER)


async def test_first_token_timeout(api: str, fake_llm: FakeLLM) -> None:
    fake_llm.configure(delay=2)
    async with backend_for(api, fake_llm.url, first_token=0.2, total=5) as llm:
        with pytest.raises(LLMTimeout, match=r"sent no text within 0\.2 s"):
            await collect(llm)


async def test_stream_past_the_whole_answer_timeout_fails_mid_stream(api: str, fake_llm: FakeLLM) -> None:
    # Text flows every 0.05 s, so the first-token deadline (0.2 s) is met; the whole answer needs 2 s.
    fake_llm.configure(reply=LONG, chunk_delay=0.05)
    got: list[str] = []
    async with backend_for(api, fake_llm.url, first_token=0.2, total=0.6) as llm:
        with pytest.raises(LLMTimeout, match=r"did not finish its answer within 0\.6 s"):
            async for delta in llm.stream(USER):
                got.append(delta)
    assert 4 < len(got) < 40


async def test_http_error_status(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(status=500)
    for call in (llm.chat(USER), collect(llm), llm.models(), llm.ping()):
        with pytest.raises(LLMHTTPError, match="HTTP 500: fake LLM failure 500") as info:
            await call
        assert info.value.status == 500


async def test_ping_fails_on_a_wrong_path_or_api_kind(api: str, fake_llm: FakeLLM) -> None:
    """A 404 at the model list is a wrong URL or API kind, never "reachable" (it was, until issue 12)."""
    other = "ollama" if api == "openai" else "openai"
    fake_llm.configure(speaks=other)  # a server of the other kind: 404 {"detail": "Not Found"}
    async with backend_for(api, fake_llm.url) as llm:
        with pytest.raises(LLMWrongEndpoint, match=rf"has no /.* \(HTTP 404\), so it is not an {api} API"):
            await llm.ping()
        with pytest.raises(LLMWrongEndpoint):
            await llm.chat(USER)
    async with backend_for(api, fake_llm.url + "/wrong") as llm:  # a wrong path: aiohttp's 404 page
        with pytest.raises(LLMWrongEndpoint, match="check the URL and the API kind"):
            await llm.ping()


async def test_ping_fails_on_a_refused_key(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(status=401)
    with pytest.raises(LLMHTTPError, match="HTTP 401") as info:
        await llm.ping()
    assert not isinstance(info.value, LLMWrongEndpoint | LLMModelMissing)


async def test_garbage_is_an_llm_error(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(garbage=True)
    for call in (llm.chat(USER), collect(llm), llm.models()):
        with pytest.raises(LLMError, match="not valid JSON") as info:
            await call
        assert not isinstance(info.value, LLMTimeout)


@pytest.mark.parametrize(
    ("api", "body", "match"),
    [
        ("openai", '{"choices": []}', "no choices"),
        ("openai", '{"choices": [{"message": {"role": "assistant", "content": null}}]}', "no text"),
        ("openai", '{"error": {"message": "model not loaded"}}', "model not loaded"),
        ("openai", "[1, 2]", "no choices"),
        ("ollama", '{"done": false}', "no 'message'"),
        ("ollama", '{"message": {"content": 42}, "done": true}', "non-text"),
        ("ollama", '{"error": "model not found"}', "model not found"),
    ],
)
async def test_answers_missing_fields_are_llm_errors(
    api: str, body: str, match: str, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(body=body)
    async with backend_for(api, fake_llm.url) as llm:
        with pytest.raises(LLMError, match=match):
            await llm.chat(USER)


@pytest.mark.parametrize(
    ("api", "body", "match"),
    [
        ("openai", 'data: {"error": {"message": "overloaded"}}\n\n', "mid-stream: overloaded"),
        ("openai", 'data: {"object": "chunk"}\n\n', "no 'choices'"),
        ("openai", "<html>\n<body>oops</body>\n", "not server-sent events"),
        ("openai", 'data: {"choices": [{"delta": {"content": "partial"}}]}\n\n', "ended before"),
        ("ollama", '{"message": {"content": "partial"}, "done": false}\n', "ended before"),
        ("ollama", '{"error": "out of memory"}\n', "out of memory"),
    ],
)
async def test_malformed_streams_are_llm_errors(api: str, body: str, match: str, fake_llm: FakeLLM) -> None:
    fake_llm.configure(body=body)
    async with backend_for(api, fake_llm.url) as llm:
        with pytest.raises(LLMError, match=match):
            await collect(llm)


async def test_connection_dropped_mid_stream(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(reply=LONG, drop_after=3)
    got: list[str] = []
    with pytest.raises(LLMError, match=r"closed the connection|ended before"):
        async for delta in llm.stream(USER):
            got.append(delta)
    assert got  # the error came after text had started
    # The next request gets a fresh connection.
    fake_llm.configure(drop_after=None, reply="fine")
    assert await llm.chat(USER) == "fine"


async def test_connection_dropped_mid_body(llm: Backend, fake_llm: FakeLLM) -> None:
    fake_llm.configure(drop_after=0)
    with pytest.raises(LLMError, match="closed the connection"):
        await llm.chat(USER)


async def test_lines_split_across_network_reads_are_joined() -> None:
    """A server that flushes half an event, waits, then the rest: the reader must not parse half a line."""
    from aiohttp import web

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        event = b'data: {"choices": [{"delta": {"content": "split word"}, "finish_reason": "stop"}]}\n\n'
        for part in (event[:17], event[17:40], event[40:], b"data: [DO", b"NE]\n\n"):
            await resp.write(part)
            await asyncio.sleep(0.02)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", sse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with backend_for("openai", f"http://127.0.0.1:{port}") as llm:
            assert await collect(llm) == ["split word"]
            chunks = [c async for c in llm.relay_stream({"messages": USER})]
            assert b"".join(c.event for c in chunks).endswith(b"data: [DONE]\n\n")
    finally:
        await runner.cleanup()
