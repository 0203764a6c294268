"""Backends pointed at the fake LLM server (real HTTP on loopback), one per wire format."""

from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from athena.llm import OllamaBackend, OpenAIBackend, Timeouts, make_backend
from tests.support.fake_llm import FakeLLM
from tests.support.gateway import free_port

_names = itertools.count()


def unique_name(api: str) -> str:
    """A metric label of its own, so a test reads only its own samples from the shared registry."""
    return f"{api}-test{next(_names)}"


def backend_for(
    api: str, url: str, *, name: str | None = None, **timeouts: float
) -> OpenAIBackend | OllamaBackend:
    base = f"{url}/v1" if api == "openai" else url
    limits = {"connect": 2.0, "first_token": 5.0, "total": 5.0, **timeouts}
    return make_backend(api, base, "fake-model", timeouts=Timeouts(**limits), name=name or unique_name(api))


@pytest.fixture(params=["openai", "ollama"])
def api(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def llm(api: str, fake_llm: FakeLLM) -> AsyncIterator[OpenAIBackend | OllamaBackend]:
    backend = backend_for(api, fake_llm.url)
    await backend.open()
    yield backend
    await backend.close()


@pytest.fixture
def refused_url() -> str:
    """A loopback port nobody listens on: connecting is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def unanswered_url() -> Iterator[str]:
    """A listener whose accept queue is full: the kernel drops new SYNs, so connecting hangs."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    yield f"http://127.0.0.1:{port}"
    for s in fillers:
        s.close()
    srv.close()
