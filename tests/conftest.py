"""Shared pytest fixtures for the gateway suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.fake_llm import FakeLLM


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """A real fake-LLM server on a free loopback port: OpenAI at ``.url + "/v1"``, Ollama at ``.url``."""
    async with FakeLLM() as server:
        yield server
