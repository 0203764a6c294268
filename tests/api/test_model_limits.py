"""The model's limits, through a real gateway and the fake LLM acting as llama.cpp's server: the context
window (configured, read from /props, or learnt from an overflow error), the answer cap, and giving up."""

from __future__ import annotations

import asyncio
import time

from tests.api.conftest import GatewayFactory, llm_messages
from tests.support.fake_llm import FakeLLM, said

LONG = "please tell me everything about the history of the old harbour town and its lighthouse " * 6


async def test_twenty_turns_never_get_stuck_on_a_small_context_window(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    """The window comes from /props at start; each turn's history is cut to fit it and the answer cap."""
    fake_llm.configure(context=1200, reply="A short answer about the town. " * 8)
    gw = await gateway_factory()
    assert gw.core.engine.llm.context_tokens == 1200
    for i in range(20):
        reply = await gw.converse(f"{i}: {LONG}", device_id="harbour")
        assert reply["response"]["response_type"] == "query_answer", (i, reply)
    sent = llm_messages(fake_llm)
    assert said(sent[-1]).startswith("19: ")
    assert 2 < len(sent) < 20  # some history, never all of it
    session = await gw.session("harbour")
    assert session is not None and session["turns"] == 20


async def test_an_overflow_is_retried_once_with_less_history_and_the_window_is_learnt(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    gw = await gateway_factory()  # no window known at start: /props is not served yet
    assert gw.core.engine.llm.context_tokens is None
    for i in range(6):
        await gw.converse(f"{i}: {LONG}", device_id="harbour")
    fake_llm.configure(context=900)  # the server restarted with a smaller window
    calls = len(fake_llm.requests)
    reply = await gw.converse("and the lighthouse?", device_id="harbour")
    assert reply["response"]["response_type"] == "query_answer"
    assert reply["response"]["speech"]["plain"]["speech"] == "Reply to: and the lighthouse?"
    assert len(fake_llm.requests) == calls + 2  # refused once, then answered
    first, retry = (r["body"]["messages"] for r in fake_llm.requests[-2:])
    assert len(retry) < len(first)
    assert gw.core.engine.llm.context_tokens == 900  # learnt from the error's n_ctx
    # The next turn fits at once.
    await gw.converse("thanks", device_id="harbour")
    assert len(fake_llm.requests) == calls + 3


async def test_a_prompt_that_cannot_fit_is_a_spoken_error_not_a_loop(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(context=300)
    gw = await gateway_factory(max_text_chars=5000)
    calls = len(fake_llm.requests)
    reply = await gw.converse(LONG * 3, device_id="harbour")  # the question alone is too long
    assert reply["response"]["response_type"] == "error"
    assert len(fake_llm.requests) == calls + 1  # no history to drop: not retried


async def test_voice_answers_are_capped_unless_the_caller_sets_a_cap(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(context=100_000, reply=" ".join(f"word{i}" for i in range(400)))
    gw = await gateway_factory(llm_max_tokens=40)
    reply = await gw.converse("ramble on", device_id="harbour")
    assert fake_llm.requests[-1]["body"]["max_tokens"] == 40
    assert len(reply["response"]["speech"]["plain"]["speech"].split()) == 40
    session = await gw.session("harbour")
    assert session is not None and session["messages"][-1]["meta"]["finish_reason"] == "length"
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "ramble"}], "max_tokens": 7},
        headers={"X-Athena-Device": "harbour"},
    )
    assert fake_llm.requests[-1]["body"]["max_tokens"] == 7
    assert resp.json()["choices"][0]["finish_reason"] == "length"


async def test_a_hung_first_backend_is_answered_by_the_fallback_after_the_first_token_timeout(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    async with FakeLLM() as fallback:
        fallback.configure(reply="From the fallback.")
        fake_llm.configure(delay=30)  # the primary accepts the request and says nothing
        gw = await gateway_factory(
            llm_first_token_timeout=0.5, llm_timeout=30, llm_fallback_url=fallback.url + "/v1"
        )
        started = time.monotonic()
        reply = await gw.converse("hello?", device_id="harbour")
        took = time.monotonic() - started
    assert reply["response"]["speech"]["plain"]["speech"] == "From the fallback."
    assert took < 10  # first-token timeout (0.5 s) + the fallback's time, far inside the whole-answer one


async def test_athena_closes_the_upstream_request_when_it_stops_waiting(
    gateway_factory: GatewayFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(reply=" ".join(f"w{i}" for i in range(200)), chunk_delay=0.05)
    gw = await gateway_factory(llm_timeout=1.0)
    reply = await gw.converse("count slowly", device_id="harbour")
    assert reply["response"]["response_type"] == "error"
    for _ in range(100):  # the fake notices at its next write
        if fake_llm.abandoned:
            break
        await asyncio.sleep(0.05)
    assert fake_llm.abandoned == 1
