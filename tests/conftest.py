"""Shared pytest fixtures for the gateway suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.fake_llm import FakeLLM
from tests.support.llama import LlamaServer, skip_unless_llama


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """A real fake-LLM server on a free loopback port: OpenAI at ``.url + "/v1"``, Ollama at ``.url``."""
    async with FakeLLM() as server:
        yield server


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """The real llama.cpp server (SmolLM2-135M), started once per run; skips until scripts/llama-server."""
    skip_unless_llama()
    with LlamaServer() as server:
        yield server
