"""A second backend tried when the first fails before saying anything.

Only a failure before any text counts: once a stream has produced a delta, the words are already on their way
to the user, so an error after that is the caller's to handle, as without a fallback.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import structlog

from athena.llm.base import (
    ChatMessage,
    ChatStream,
    Completion,
    LLMBackend,
    LLMError,
    RelayChunk,
    Relayed,
    RelayStream,
)
from athena.observability import LLM_FALLBACKS

log = structlog.get_logger("athena.llm")


class FallbackBackend:
    """Looks like the primary (``name``, ``model``); ``primary`` and ``fallback`` stay reachable."""

    def __init__(self, primary: LLMBackend, fallback: LLMBackend) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = primary.name
        self.model = primary.model
        self._fallbacks = LLM_FALLBACKS.labels(backend=primary.name)

    def __repr__(self) -> str:
        return f"FallbackBackend({self.primary!r}, {self.fallback!r})"

    @property
    def context_tokens(self) -> int | None:
        """The smaller window, so a prompt fits whichever backend answers."""
        known = [t for t in (self.primary.context_tokens, self.fallback.context_tokens) if t]
        return min(known) if known else None

    def learn_context(self, tokens: int) -> None:
        self.primary.learn_context(tokens)
        self.fallback.learn_context(tokens)

    async def open(self) -> None:
        await self.primary.open()
        await self.fallback.open()

    async def close(self) -> None:
        try:
            await self.primary.close()
        finally:
            await self.fallback.close()

    async def __aenter__(self) -> FallbackBackend:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _falling_back(self, exc: LLMError) -> None:
        self._fallbacks.inc()
        log.warning("llm_fallback", primary=self.primary.name, fallback=self.fallback.name, error=str(exc))

    async def chat(self, messages: Sequence[ChatMessage], **options: Any) -> str:
        try:
            return await self.primary.chat(messages, **options)
        except LLMError as exc:
            self._falling_back(exc)
        return await self.fallback.chat(messages, **options)

    def stream(self, messages: Sequence[ChatMessage], **options: Any) -> ChatStream:
        return ChatStream(self._stream(messages, options))

    async def _stream(
        self, messages: Sequence[ChatMessage], options: Mapping[str, Any]
    ) -> AsyncGenerator[str | Completion, None]:
        produced = False
        for backend in (self.primary, self.fallback):
            try:
                async with aclosing(backend.stream(messages, **options)) as deltas:
                    async for delta in deltas:
                        produced = True
                        yield delta
                if deltas.completion is not None:
                    yield deltas.completion
                return
            except LLMError as exc:
                if produced or backend is self.fallback:
                    raise
                self._falling_back(exc)

    async def relay(self, body: Mapping[str, Any]) -> Relayed:
        try:
            return await self.primary.relay(body)
        except LLMError as exc:
            self._falling_back(exc)
        return await self.fallback.relay(body)

    async def relay_stream(self, body: Mapping[str, Any]) -> RelayStream:
        """Falls back until the primary's first text (events without text, like the role, are held)."""
        held: list[RelayChunk] = []
        committed = False
        try:
            async with aclosing(self.primary.relay_stream(body)) as chunks:
                async for chunk in chunks:
                    if committed:
                        yield chunk
                        continue
                    held.append(chunk)
                    if chunk.text or b"data: [DONE]" in chunk.event or b'"tool_calls"' in chunk.event:
                        committed = True
                        for c in held:
                            yield c
                        held.clear()
            for c in held:  # a stream that ended cleanly without any of those
                yield c
            return
        except LLMError as exc:
            if committed:
                raise
            self._falling_back(exc)
        async with aclosing(self.fallback.relay_stream(body)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def models(self) -> list[str]:
        try:
            return await self.primary.models()
        except LLMError as exc:
            self._falling_back(exc)
        return await self.fallback.models()

    async def ping(self) -> None:
        """Ready when either side answers; the error names both when neither does."""
        try:
            await self.primary.ping()
        except LLMError as first:
            try:
                await self.fallback.ping()
            except LLMError as second:
                raise LLMError(f"primary: {first}; fallback: {second}") from second
