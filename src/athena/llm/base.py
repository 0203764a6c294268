"""The LLM backend interface: OpenAI-style messages in, text (whole or streamed) out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

ChatMessage = Mapping[str, Any]  # {"role": ..., "content": ...}


class LLMError(Exception):
    """The backend failed: unreachable, HTTP error, timeout, or an answer not following the protocol."""


class LLMTimeout(LLMError):
    pass


class LLMHTTPError(LLMError):
    """The backend answered with an HTTP error; a relay may pass ``status`` and ``body`` on to its client."""

    def __init__(self, message: str, status: int, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Relayed(NamedTuple):
    """A whole OpenAI ``chat.completion`` answer: the JSON bytes to send on, and its text."""

    body: bytes
    text: str


class RelayChunk(NamedTuple):
    """Complete OpenAI server-sent events, ready to write (``b"data: {...}\\n\\n"``), and their text.

    One or more events: all that arrived from upstream in one read, so a relay writes them in one go."""

    event: bytes
    text: str


class LLMBackend(Protocol):
    name: str  # for metrics and logs, e.g. "openai" or "ollama"
    model: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def chat(self, messages: Sequence[ChatMessage], **options: Any) -> str: ...
    def stream(self, messages: Sequence[ChatMessage], **options: Any) -> AsyncIterator[str]: ...
    async def models(self) -> list[str]: ...
    async def ping(self) -> None:
        """Raise LLMError when the backend cannot be reached."""

    # The stateless OpenAI relay (see athena.llm's docstring): an OpenAI request in, OpenAI wire format out.
    async def relay(self, body: Mapping[str, Any]) -> Relayed: ...
    def relay_stream(self, body: Mapping[str, Any]) -> AsyncIterator[RelayChunk]: ...
