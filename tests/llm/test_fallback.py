"""The fallback backend, with two real fake-LLM servers; and llm_backend() from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from athena.config import Settings
from athena.gateway import llm_backend
from athena.llm import FallbackBackend, LLMError, LLMTimeout, OllamaBackend, OpenAIBackend
from tests.llm.conftest import backend_for
from tests.support.fake_llm import FakeLLM

USER = [{"role": "user", "content": "hello"}]
REQUEST = {"messages": USER}


@pytest.fixture
async def second_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        server.configure(reply="from the fallback")
        yield server


@pytest.fixture
async def pair(api: str, fake_llm: FakeLLM, second_llm: FakeLLM) -> AsyncIterator[FallbackBackend]:
    fake_llm.configure(reply="from the primary")
    backend = FallbackBackend(backend_for(api, fake_llm.url), backend_for("ollama", second_llm.url))
    await backend.open()
    yield backend
    await backend.close()


async def test_primary_answers_when_healthy(pair: FallbackBackend, second_llm: FakeLLM) -> None:
    assert await pair.chat(USER) == "from the primary"
    assert "".join([d async for d in pair.stream(USER)]) == "from the primary"
    assert (await pair.relay(REQUEST)).text == "from the primary"
    assert "".join([c.text async for c in pair.relay_stream(REQUEST)]) == "from the primary"
    assert second_llm.requests == []


@pytest.mark.parametrize("failure", [{"status": 503}, {"garbage": True}, {"drop_after": 0}])
async def test_fails_over_before_any_text(
    pair: FallbackBackend, fake_llm: FakeLLM, second_llm: FakeLLM, failure: dict
) -> None:
    fake_llm.configure(**failure)
    assert await pair.chat(USER) == "from the fallback"
    assert "".join([d async for d in pair.stream(USER)]) == "from the fallback"
    assert (await pair.relay(REQUEST)).text == "from the fallback"
    events = [c async for c in pair.relay_stream(REQUEST)]
    assert "".join(c.text for c in events) == "from the fallback"
    assert events[-1].event.endswith(b"data: [DONE]\n\n")
    assert len(second_llm.requests) == 4


async def test_fails_over_when_the_primary_is_down(api: str, refused_url: str, second_llm: FakeLLM) -> None:
    async with FallbackBackend(backend_for(api, refused_url), backend_for("openai", second_llm.url)) as pair:
        assert await pair.chat(USER) == "from the fallback"
        await pair.ping()
        assert await pair.models() == ["fake-model", "fake-model-large"]


async def test_fails_over_on_first_token_timeout(api: str, fake_llm: FakeLLM, second_llm: FakeLLM) -> None:
    fake_llm.configure(delay=2)
    primary = backend_for(api, fake_llm.url, first_token=0.2)
    async with FallbackBackend(primary, backend_for("ollama", second_llm.url)) as pair:
        assert "".join([d async for d in pair.stream(USER)]) == "from the fallback"


async def test_no_fallback_once_text_has_started(
    pair: FallbackBackend, fake_llm: FakeLLM, second_llm: FakeLLM
) -> None:
    fake_llm.configure(reply="one two three four five six", drop_after=3)
    got = []
    with pytest.raises(LLMError):
        async for delta in pair.stream(USER):
            got.append(delta)
    assert got
    relayed = []
    with pytest.raises(LLMError):
        async for chunk in pair.relay_stream(REQUEST):
            relayed.append(chunk)
    assert any(c.text for c in relayed)
    assert second_llm.requests == []


async def test_both_failing_raises_the_fallbacks_error(api: str, refused_url: str, fake_llm: FakeLLM) -> None:
    fake_llm.configure(delay=2)
    async with FallbackBackend(
        backend_for(api, refused_url), backend_for(api, fake_llm.url, total=0.2)
    ) as pair:
        with pytest.raises(LLMTimeout):
            await pair.chat(USER)
        fake_llm.configure(delay=0, status=500)
        with pytest.raises(LLMError, match=r"primary: cannot reach.*fallback: the LLM answered HTTP 500"):
            await pair.ping()


# -- llm_backend ----------------------------------------------------------------------------------------
def test_create_backend_from_settings() -> None:
    plain = llm_backend(
        Settings(llm_api="ollama", llm_url="http://127.0.0.1:11434/v1", llm_keep_alive="1h")
    )
    assert isinstance(plain, OllamaBackend)
    assert plain.url == "http://127.0.0.1:11434"
    assert plain.keep_alive == "1h"

    settings = Settings(
        llm_api="openai",
        llm_url="http://gpu:8000/v1",
        llm_model="big",
        llm_api_key="sk-1",
        llm_timeout=9,
        llm_first_token_timeout=3,
        llm_connect_timeout=1,
        llm_fallback_api="ollama",
        llm_fallback_url="http://cpu:11434",
        llm_fallback_model="small",
    )
    pair = llm_backend(settings)
    assert isinstance(pair, FallbackBackend)
    assert isinstance(pair.primary, OpenAIBackend)
    assert isinstance(pair.fallback, OllamaBackend)
    assert (pair.name, pair.model) == ("openai", "big")
    assert (pair.fallback.name, pair.fallback.model) == ("ollama-fallback", "small")
    assert pair.primary.timeouts.total == 9
    assert pair.primary.timeouts.first_token == 3
    assert pair.primary.timeouts.connect == 1


async def test_created_backend_talks_to_the_fake(fake_llm: FakeLLM) -> None:
    llm = llm_backend(Settings(llm_url=fake_llm.url + "/v1", llm_model="m", llm_api_key="k"))
    await llm.open()
    try:
        before = REGISTRY.get_sample_value("athena_llm_duration_seconds_count", {"backend": "openai"}) or 0
        assert await llm.chat(USER) == "Reply to: hello"
        after = REGISTRY.get_sample_value("athena_llm_duration_seconds_count", {"backend": "openai"})
        assert after == before + 1
    finally:
        await llm.close()
    assert fake_llm.requests[0]["headers"]["authorization"] == "Bearer k"


async def test_an_empty_answer_is_relayed_not_fallen_back(
    pair: FallbackBackend, fake_llm: FakeLLM, second_llm: FakeLLM
) -> None:
    fake_llm.configure(reply="")
    chunks = [c async for c in pair.relay_stream(REQUEST)]
    assert b"".join(c.event for c in chunks).endswith(b"data: [DONE]\n\n")
    assert all(not c.text for c in chunks)
    assert [d async for d in pair.stream(USER)] == []
    assert second_llm.requests == []
