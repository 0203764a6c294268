"""The LLM backend interface: OpenAI-style messages in, text (whole or streamed) out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

ChatMessage = Mapping[str, Any]  # {"role": ..., "content": ...}


class LLMError(Exception):
    """The backend failed: unreachable, HTTP error, timeout or an answer that is not what the protocol says."""


class LLMTimeout(LLMError):
    pass


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
