"""OpenAI-compatible ``/v1/chat/completions``: OpenAI, Ollama's /v1, llama.cpp, vLLM, LM Studio, LiteLLM.

The base URL ends where the API's paths begin, e.g. ``http://host:11434/v1``. The relay forwards a client's
request body as it is (only ``model`` filled in when missing, and ``stream`` set) and hands back the upstream
bytes: the whole JSON answer, or each ``data:`` payload unchanged inside a fresh ``data: ...\\n\\n`` frame,
batched as they arrived (comments and ``event:`` lines dropped). Every payload is still parsed once, which is
how garbage and mid-stream errors are caught.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from athena.llm.base import (
    ChatMessage,
    ChatStream,
    Completion,
    LLMContextOverflow,
    LLMError,
    LLMTimeout,
    RelayChunk,
    Relayed,
    RelayStream,
)
from athena.llm.http import Deadline, HTTPBackend, Timeouts, dumps, loads
from athena.llm.wire import DONE_EVENT, ChunkInfo, ToolCallParts, read_chunk, read_completion

_SSE_FIELDS = (b"data:", b":", b"event:", b"id:", b"retry:")
Batch = tuple[bytes, list[ChunkInfo]]  # the events as they came (to relay) and what each says


class OpenAIBackend(HTTPBackend):
    api = "openai"
    models_path = "/models"
    chat_path = "/chat/completions"

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        name: str = "openai",
        context_tokens: int | None = None,
    ) -> None:
        super().__init__(
            url, model, api_key=api_key, timeouts=timeouts, name=name, context_tokens=context_tokens
        )

    def _body(self, messages: Sequence[ChatMessage], options: Mapping[str, Any], stream: bool) -> bytes:
        return dumps({"model": self.model, **options, "messages": list(messages), "stream": stream})

    def _relay_body(self, body: Mapping[str, Any], stream: bool) -> bytes:
        return dumps({**body, "model": body.get("model") or self.model, "stream": stream})

    # -- the backend interface -------------------------------------------------------------------------
    async def chat(self, messages: Sequence[ChatMessage], **options: Any) -> str:
        deadline = Deadline(self.timeouts, streaming=False)
        with self.counting():
            raw = await self._request_json(
                "POST", self.chat_path, self._body(messages, options, False), deadline
            )
            text = read_completion(loads(raw), strict=True).text
        self.observe_answer(deadline)
        return text

    def stream(self, messages: Sequence[ChatMessage], **options: Any) -> ChatStream:
        return ChatStream(self._stream(self._body(messages, options, True)))

    async def _stream(self, body: bytes) -> AsyncGenerator[str | Completion, None]:
        parts: list[str] = []
        calls = ToolCallParts()
        finish, usage = "stop", None
        async with aclosing(self._events(body)) as batches:
            async for _, infos in batches:
                for info in infos:
                    if info.text:
                        parts.append(info.text)
                        yield info.text
                    if info.tool_parts:
                        calls.add(info.tool_parts)
                    finish = info.finish_reason or finish
                    usage = info.usage or usage
        yield Completion("".join(parts), finish, usage, calls.calls())

    async def open(self) -> None:
        await super().open()
        if self.context_tokens is None:
            await self._learn_window()

    async def _learn_window(self) -> None:
        """llama.cpp's server says its context window at /props (beside /v1); others have no such page."""
        root = self.url.removesuffix("/v1")
        try:
            deadline = Deadline(Timeouts(self.timeouts.connect, self.timeouts.connect, self.timeouts.connect),
                                streaming=False)
            raw = await self._request_json("GET", root + "/props", None, deadline, absolute=True)
            props = loads(raw, "properties")
        except LLMError:
            return
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        if isinstance(n_ctx, int) and n_ctx > 0:
            self.learn_context(n_ctx)

    async def models(self) -> list[str]:
        data = await self._probe("/models")
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self.not_a_model_list("no 'data' list")
        return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]

    # -- the relay -------------------------------------------------------------------------------------
    async def relay(self, body: Mapping[str, Any]) -> Relayed:
        """The upstream's JSON answer, unchanged; tool calls pass (their text is "")."""
        deadline = Deadline(self.timeouts, streaming=False)
        with self.counting():
            raw = await self._request_json(
                "POST", self.chat_path, self._relay_body(body, False), deadline
            )
            text = read_completion(loads(raw), strict=False).text
        self.observe_answer(deadline)
        return Relayed(raw, text)

    async def relay_stream(self, body: Mapping[str, Any]) -> RelayStream:
        """Every upstream event (role, content, tool calls, finish, usage), ending with ``data: [DONE]``."""
        async with aclosing(self._events(self._relay_body(body, True))) as batches:
            async for events, infos in batches:
                yield RelayChunk(events, "".join(i.text for i in infos))

    # -- SSE -------------------------------------------------------------------------------------------
    def _events(self, body: bytes) -> AsyncGenerator[Batch, None]:
        """The upstream's events in batches (all that came in one read), the last batch ending with [DONE];
        a failure is counted once, by kind."""
        return self.counted(self._raw_events(body))

    async def _raw_events(self, body: bytes) -> AsyncGenerator[Batch, None]:
        """The events, uncounted.

        Events before the model's first output (the role-only one) are held and sent with it: the caller's
        first batch then means "the answer has started", and a relay saves a write before the first token.
        """
        deadline = Deadline(self.timeouts, streaming=True)
        resp = await self._send("POST", self._chat_url, body, deadline)
        reader = self.lines(resp, deadline)
        finished = clean = started = seen = False
        held: list[bytes] = []
        held_infos: list[ChunkInfo] = []
        try:
            if resp.content_type != "text/event-stream":
                raw = await resp.content.read(200)
                raise LLMError(
                    f"expected an event stream from the LLM, got {resp.content_type}: {raw[:80]!r}"
                )
            while True:
                try:
                    lines = await reader.next()
                except LLMError as exc:
                    if seen or isinstance(exc, LLMTimeout | LLMContextOverflow):
                        raise
                    # llama-cpp-python ends the stream of a prompt too long for its window, at once and
                    # without a word, sometimes by dropping the connection: one retry with less history helps.
                    message = f"{exc} (before the first event: a prompt too long?)"
                    raise LLMContextOverflow(message, 200) from exc
                if not lines:
                    clean = True
                    break
                events, infos = held, held_infos
                done = False
                for line in lines:
                    if not line.startswith(b"data:"):
                        line = line.rstrip(b"\r")
                        if line and not line.startswith(_SSE_FIELDS):
                            raise LLMError(f"the LLM's stream is not server-sent events: {line[:80]!r}")
                        continue
                    seen = True
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        break
                    info = read_chunk(loads(payload, "stream event"))
                    if info.progress:
                        started = True
                        reader.first_token()
                    finished = finished or info.finish_reason is not None
                    events.append(b"data: " + payload + b"\n\n")
                    infos.append(info)
                if done:
                    clean = resp.content.at_eof()
                    self.observe_answer(deadline)
                    events.append(DONE_EVENT)
                    yield b"".join(events), infos
                    return
                if not started and not finished:
                    continue  # nothing from the model yet: keep holding
                if events:
                    held, held_infos = [], []
                    yield b"".join(events), infos
        finally:
            reader.close()
            if clean:
                resp.release()
            else:
                resp.close()
        if not seen:  # llama-cpp-python's answer to a prompt longer than its context window
            raise LLMContextOverflow(
                "the LLM's stream ended without a single event (a prompt too long for its context?)", 200
            )
        if not finished:
            raise LLMError("the LLM's stream ended before the answer was complete")
        self.observe_answer(deadline)
        yield b"".join([*held, DONE_EVENT]), held_infos
