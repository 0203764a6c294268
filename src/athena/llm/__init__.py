"""LLM backends: OpenAI-compatible ``/v1/chat/completions`` and Ollama's native ``/api/chat``.

Use::

    llm = make_backend("openai", url, model, timeouts=Timeouts(...))   # or FallbackBackend(primary, fallback)
    await llm.open()                    # one shared aiohttp session per backend (the gateway's lifetime)
    text = await llm.chat(messages, temperature=0.2)      # options go into the request body
    stream = llm.stream(messages)       # a ChatStream: text deltas only, never empty strings ...
    async for delta in stream: ...
    stream.completion                   # ... then the finish reason, usage and tool calls
    await llm.close()

The gateway's composition root (athena.gateway) builds the configured backend from the settings.

Errors: ``LLMTimeout`` past ``llm_connect_timeout`` (connecting), ``llm_first_token_timeout`` (streams: no
text yet) or ``llm_timeout`` (the whole answer); ``LLMError`` for everything else, with a short message fit
for a log line (no user text in it). ``LLMHTTPError`` (an LLMError) has the upstream ``status`` and ``body``;
two kinds of it say what an operator must fix: ``LLMModelMissing`` (the server does not serve the model) and
``LLMWrongEndpoint`` (a 404 that is not about a model: the URL's path or the API kind is wrong).
Streams raise the same errors mid-stream.

``ping()`` is readiness: the model list answers, is the protocol's, and names the configured model.

The stateless OpenAI relay (for the gateway's ``POST /v1/chat/completions``), on every backend:

- ``await llm.relay(body) -> Relayed(body: bytes, text: str)``: ``body`` is a client's OpenAI request (a
  dict; ``model`` filled in with the backend's when missing, ``stream`` forced false). ``Relayed.body`` is a
  complete OpenAI ``chat.completion`` JSON document to send with ``Content-Type: application/json``: the
  upstream's own bytes on the OpenAI backend, a converted answer on the Ollama one. ``text`` is the assistant
  text ("" when the answer is only tool calls).
- ``llm.relay_stream(body) -> AsyncIterator[RelayChunk(event: bytes, text: str)]``: each ``event`` is one or
  more complete server-sent events (``b"data: {...}\\n\\n"``, all that arrived together) to write as is
  under ``Content-Type: text/event-stream``; the last chunk ends with ``b"data: [DONE]\\n\\n"``. ``text`` is
  their text delta ("" for role/finish/usage events). The first chunk already holds the model's first output
  (the role-only event is held back until then), so an error before it, the first-token timeout included,
  comes before anything needs sending. Upstream errors before or during the stream raise
  LLMError/LLMTimeout; on LLMHTTPError the relay may answer with ``exc.status`` (4xx) and ``exc.body``.
- With a fallback configured, ``relay`` and ``relay_stream`` fall back like ``chat`` and ``stream``.

Metrics (observability.py): ``LLM_SECONDS{backend}`` per complete answer, ``LLM_FIRST_TOKEN_SECONDS{backend}``
per answer (a whole one's first token comes with its end), ``LLM_ERRORS{backend, kind}`` per failed answer
(probes are not counted), ``LLM_FALLBACKS{backend}`` each time the primary's failure sent a request to the
fallback; a fallback backend is labelled ``<api>-fallback``.
"""

from __future__ import annotations

from athena.llm.base import (
    ChatMessage,
    ChatStream,
    Completion,
    LLMBackend,
    LLMContextOverflow,
    LLMError,
    LLMHTTPError,
    LLMModelMissing,
    LLMTimeout,
    LLMUnreachable,
    LLMWrongEndpoint,
    RelayChunk,
    Relayed,
    RelayStream,
)
from athena.llm.fallback import FallbackBackend
from athena.llm.http import Timeouts
from athena.llm.ollama import OllamaBackend
from athena.llm.openai import OpenAIBackend

__all__ = [
    "ChatMessage",
    "ChatStream",
    "Completion",
    "FallbackBackend",
    "LLMBackend",
    "LLMContextOverflow",
    "LLMError",
    "LLMHTTPError",
    "LLMModelMissing",
    "LLMTimeout",
    "LLMUnreachable",
    "LLMWrongEndpoint",
    "OllamaBackend",
    "OpenAIBackend",
    "RelayChunk",
    "RelayStream",
    "Relayed",
    "Timeouts",
    "make_backend",
]


def make_backend(
    api: str,
    url: str,
    model: str,
    *,
    api_key: str | None = None,
    timeouts: Timeouts | None = None,
    keep_alive: str | None = None,
    name: str | None = None,
    context_tokens: int | None = None,
) -> OpenAIBackend | OllamaBackend:
    """One backend of the given wire format ("openai" or "ollama")."""
    if api == "openai":
        return OpenAIBackend(
            url, model, api_key=api_key, timeouts=timeouts, name=name or api, context_tokens=context_tokens
        )
    if api == "ollama":
        return OllamaBackend(
            url, model, api_key=api_key, timeouts=timeouts, keep_alive=keep_alive, name=name or api,
            context_tokens=context_tokens,
        )
    raise ValueError(f"unknown LLM API {api!r}; use 'openai' or 'ollama'")

