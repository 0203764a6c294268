"""OpenAI-compatible ``/v1/chat/completions``: OpenAI, Ollama's /v1, llama.cpp, vLLM, LM Studio, LiteLLM.

The base URL ends where the API's paths begin, e.g. ``http://host:11434/v1``. The relay forwards a client's
request body as it is (only ``model`` filled in when missing, and ``stream`` set) and hands back the upstream
bytes: the whole JSON answer, or each ``data:`` payload unchanged inside a fresh ``data: ...\\n\\n`` frame,
batched as they arrived (comments and ``event:`` lines dropped). Every payload is still parsed once, which is
how garbage and mid-stream errors are caught.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from athena.llm.base import ChatMessage, LLMError, RelayChunk, Relayed
from athena.llm.http import Deadline, HTTPBackend, Timeouts, dumps, error_detail, loads

DONE_EVENT = b"data: [DONE]\n\n"
_SSE_FIELDS = (b"data:", b":", b"event:", b"id:", b"retry:")


class OpenAIBackend(HTTPBackend):
    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        name: str = "openai",
    ) -> None:
        super().__init__(url, model, api_key=api_key, timeouts=timeouts, name=name)
        self._chat_url = self.endpoint("/chat/completions")

    def _body(self, messages: Sequence[ChatMessage], options: Mapping[str, Any], stream: bool) -> bytes:
        return dumps({"model": self.model, **options, "messages": list(messages), "stream": stream})

    def _relay_body(self, body: Mapping[str, Any], stream: bool) -> bytes:
        return dumps({**body, "model": body.get("model") or self.model, "stream": stream})

    # -- the backend interface -------------------------------------------------------------------------
    async def chat(self, messages: Sequence[ChatMessage], **options: Any) -> str:
        deadline = Deadline(self.timeouts, streaming=False)
        raw = await self._request_json(
            "POST", "/chat/completions", self._body(messages, options, False), deadline
        )
        text = message_text(loads(raw), strict=True)
        self.observe_answer(deadline)
        return text

    async def stream(self, messages: Sequence[ChatMessage], **options: Any) -> AsyncIterator[str]:
        async with aclosing(self._events(self._body(messages, options, True))) as events:
            async for chunk in events:
                if chunk.text:
                    yield chunk.text

    async def models(self) -> list[str]:
        data = await self._probe("/models")
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise LLMError("the LLM's model list has no 'data' list")
        return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]

    async def ping(self) -> None:
        await self._ping("/models")

    # -- the relay -------------------------------------------------------------------------------------
    async def relay(self, body: Mapping[str, Any]) -> Relayed:
        """The upstream's JSON answer, unchanged; tool calls pass (their text is "")."""
        deadline = Deadline(self.timeouts, streaming=False)
        raw = await self._request_json("POST", "/chat/completions", self._relay_body(body, False), deadline)
        text = message_text(loads(raw), strict=False)
        self.observe_answer(deadline)
        return Relayed(raw, text)

    def relay_stream(self, body: Mapping[str, Any]) -> AsyncIterator[RelayChunk]:
        """Every upstream event (role, content, tool calls, finish, usage), ending with ``data: [DONE]``."""
        return self._events(self._relay_body(body, True))

    # -- SSE -------------------------------------------------------------------------------------------
    async def _events(self, body: bytes) -> AsyncIterator[RelayChunk]:
        """The upstream's events in batches (all that came in one read), the last batch ending with [DONE].

        Events before the model's first output (the role-only one) are held and sent with it: the caller's
        first chunk then means "the answer has started", and a relay saves a write before the first token.
        """
        deadline = Deadline(self.timeouts, streaming=True)
        resp = await self._send("POST", self._chat_url, body, deadline)
        reader = self.lines(resp, deadline)
        finished = clean = started = False
        held: list[bytes] = []
        try:
            if resp.content_type != "text/event-stream":
                raw = await resp.content.read(200)
                raise LLMError(
                    f"expected an event stream from the LLM, got {resp.content_type}: {raw[:80]!r}"
                )
            while True:
                lines = await reader.next()
                if not lines:
                    clean = True
                    break
                events = held
                texts: list[str] = []
                done = False
                for line in lines:
                    if not line.startswith(b"data:"):
                        line = line.rstrip(b"\r")
                        if line and not line.startswith(_SSE_FIELDS):
                            raise LLMError(f"the LLM's stream is not server-sent events: {line[:80]!r}")
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        break
                    text, progress, finish = delta_text(loads(payload, "stream event"))
                    if progress:
                        started = True
                        reader.first_token()
                    finished = finished or finish
                    events.append(b"data: " + payload + b"\n\n")
                    if text:
                        texts.append(text)
                if done:
                    clean = resp.content.at_eof()
                    self.observe_answer(deadline)
                    events.append(DONE_EVENT)
                    yield RelayChunk(b"".join(events), "".join(texts))
                    return
                if not started and not finished:
                    continue  # nothing from the model yet: keep holding
                if events:
                    held = []
                    yield RelayChunk(b"".join(events), "".join(texts))
        finally:
            reader.close()
            if clean:
                resp.release()
            else:
                resp.close()
        if not finished:
            raise LLMError("the LLM's stream ended before the answer was complete")
        self.observe_answer(deadline)
        yield RelayChunk(b"".join([*held, DONE_EVENT]), "")


def message_text(data: Any, *, strict: bool) -> str:
    """The text of a ``chat.completion``; strict: an answer without text (only tool calls) is an error."""
    if isinstance(data, dict) and data.get("error"):
        raise LLMError(f"the LLM reported an error: {error_detail(data['error'])}")
    try:
        message = data["choices"][0]["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LLMError("the LLM's answer has no choices[0].message") from None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, str):
        return content
    if content is None and not strict:
        return ""
    raise LLMError(
        "the LLM's answer has no text" + (" (it called a tool)" if message.get("tool_calls") else "")
    )


def delta_text(data: Any) -> tuple[str, bool, bool]:
    """One ``chat.completion.chunk``: (text delta, shows the model is producing, has a finish_reason)."""
    if not isinstance(data, dict):
        raise LLMError("the LLM's stream event is not a JSON object")
    if data.get("error"):
        raise LLMError(f"the LLM reported an error mid-stream: {error_detail(data['error'])}")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise LLMError("the LLM's stream event has no 'choices' list")
    if not choices:  # e.g. the closing usage event
        return "", False, False
    choice = choices[0]
    if not isinstance(choice, dict):
        raise LLMError("the LLM's stream event has a malformed choice")
    delta = choice.get("delta") or {}
    content = delta.get("content")
    if content is not None and not isinstance(content, str):
        raise LLMError("the LLM's stream event has non-text content")
    text = content or ""
    progress = bool(
        text or delta.get("tool_calls") or delta.get("reasoning_content") or delta.get("reasoning")
    )
    return text, progress, choice.get("finish_reason") is not None
