"""Through the gateway, a real llama.cpp server (SmolLM2-135M, 2,048-token window; skipped until
scripts/llama-server has built it): a long session never gets stuck on the context window, and a rambling
answer is cut at the answer cap."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import GatewayFactory
from tests.support.llama import LlamaServer, skip_unless_llama

QUESTION = (
    "Tell me about the history of the harbour town, its lighthouse, its old fishing fleet, the market square "
    "and the people who lived there a hundred years ago. Question number {i}."
)


@pytest.mark.timeout(900)
async def test_twenty_turns_in_one_session_never_get_stuck(
    gateway_factory: GatewayFactory, llama_server: LlamaServer
) -> None:
    """A 512-token window (its own server) fills in a few turns, so the trimming and the overflow retry both
    happen, while each turn stays cheap for two shared cores (~100-200 prompt tokens/s)."""
    skip_unless_llama()
    with LlamaServer(ctx=512) as small:
        gw = await gateway_factory(
            llm_url=small.url, llm_model=small.model, llm_timeout=120, llm_first_token_timeout=120,
            llm_max_tokens=40,
        )
        gw.client.timeout = httpx.Timeout(300)
        for i in range(20):
            reply = await gw.converse(QUESTION.format(i=i), device_id="harbour")
            assert reply["response"]["response_type"] == "query_answer", (i, reply)
        session = await gw.session("harbour")
        assert session is not None and session["turns"] == 20


async def test_a_rambling_answer_is_cut_at_the_answer_cap(
    gateway_factory: GatewayFactory, llama_server: LlamaServer
) -> None:
    gw = await gateway_factory(
        llm_url=llama_server.url, llm_model=llama_server.model, llm_timeout=120, llm_first_token_timeout=120,
        llm_max_tokens=30,
    )
    reply = await gw.converse(
        "Write a very long story of at least two thousand words about a dragon.", device_id="ramble"
    )
    assert reply["response"]["response_type"] == "query_answer"
    session = await gw.session("ramble")
    assert session is not None
    assert session["messages"][-1]["meta"]["finish_reason"] == "length"
