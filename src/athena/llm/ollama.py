"""Ollama's native ``/api/chat`` (NDJSON streams, ``keep_alive``) and its conversion to OpenAI's wire format.

The base URL is the server's root, e.g. ``http://host:11434``; a trailing ``/v1`` (the OpenAI-compatible
prefix, the default of ``ATHENA_LLM_URL``) or ``/api`` is dropped, so changing ``ATHENA_LLM_API`` alone works.
OpenAI-style options map to Ollama's: ``max_tokens``/``max_completion_tokens`` become ``options.num_predict``,
``response_format`` becomes ``format``, sampling knobs (temperature, top_p, seed, stop, ...) go into
``options``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import orjson

from athena.llm.base import ChatMessage, LLMError, RelayChunk, Relayed
from athena.llm.http import Deadline, HTTPBackend, Timeouts, dumps, error_detail, loads
from athena.llm.openai import DONE_EVENT

_RENAMED = {"max_tokens": "num_predict", "max_completion_tokens": "num_predict"}
_TOP_LEVEL = frozenset({"format", "keep_alive", "tools", "think"})
# OpenAI request fields with no Ollama meaning; dropped rather than sent as unknown options.
_DROPPED = frozenset(
    {
        "n",
        "user",
        "stream_options",
        "logprobs",
        "top_logprobs",
        "tool_choice",
        "parallel_tool_calls",
        "logit_bias",
        "metadata",
        "store",
        "service_tier",
        "modalities",
        "reasoning_effort",
        "model",
        "messages",
        "stream",
        "response_format",
        "options",
    }
)
_FINISH = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}


def ollama_request(
    model: str,
    messages: Sequence[ChatMessage],
    options: Mapping[str, Any],
    *,
    stream: bool,
    keep_alive: str | None = None,
) -> dict[str, Any]:
    """An ``/api/chat`` body from OpenAI-style messages and options."""
    body: dict[str, Any] = {"model": model, "messages": [_message(m) for m in messages], "stream": stream}
    opts: dict[str, Any] = {}
    native = options.get("options")
    if isinstance(native, Mapping):
        opts.update(native)
    for key, value in options.items():
        if key in _TOP_LEVEL:
            body[key] = value
        elif key in _RENAMED:
            if value is not None:
                opts[_RENAMED[key]] = value
        elif key not in _DROPPED and value is not None:
            opts[key] = value
    fmt = options.get("response_format")
    if isinstance(fmt, Mapping):
        if fmt.get("type") == "json_object":
            body["format"] = "json"
        elif fmt.get("type") == "json_schema":
            schema = fmt.get("json_schema")
            if isinstance(schema, Mapping) and isinstance(schema.get("schema"), Mapping):
                body["format"] = schema["schema"]
    if opts:
        body["options"] = opts
    if keep_alive is not None and "keep_alive" not in body:
        body["keep_alive"] = keep_alive
    return body


def _message(m: ChatMessage) -> dict[str, Any]:
    content = m.get("content")
    if isinstance(content, list):  # OpenAI content parts; Ollama wants a string
        content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    out: dict[str, Any] = {"role": m.get("role", "user"), "content": content or ""}
    calls = m.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_native_call(c) for c in calls if isinstance(c, Mapping)]
    for key in ("images", "tool_name", "thinking"):
        if key in m:
            out[key] = m[key]
    return out


def _native_call(call: Mapping[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = orjson.loads(args) if args else {}
        except orjson.JSONDecodeError:
            args = {}
    return {"function": {"name": fn.get("name", ""), "arguments": args or {}}}


def _openai_calls(calls: Any) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        return []
    out = []
    for i, call in enumerate(calls):
        fn = call.get("function", {}) if isinstance(call, Mapping) else {}
        out.append(
            {
                "index": i,
                "id": f"call_{secrets.token_hex(8)}",
                "type": "function",
                "function": {
                    "name": fn.get("name", ""),
                    "arguments": orjson.dumps(fn.get("arguments") or {}).decode(),
                },
            }
        )
    return out


def _content(data: Any) -> tuple[str, dict[str, Any]]:
    """(text, message) of one /api/chat object; LLMError for errors and anything not of the protocol."""
    if not isinstance(data, dict):
        raise LLMError("the LLM's answer is not a JSON object")
    if data.get("error"):
        raise LLMError(f"the LLM reported an error: {error_detail(data['error'])}")
    message = data.get("message")
    if not isinstance(message, dict):
        if data.get("done"):
            return "", {}
        raise LLMError("the LLM's answer has no 'message'")
    content = message.get("content", "")
    if not isinstance(content, str):
        raise LLMError("the LLM's answer has non-text content")
    return content, message


class OllamaBackend(HTTPBackend):
    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        keep_alive: str | None = None,
        name: str = "ollama",
    ) -> None:
        url = url.rstrip("/")
        for suffix in ("/v1", "/api"):
            if url.endswith(suffix):
                url = url[: -len(suffix)]
        super().__init__(url, model, api_key=api_key, timeouts=timeouts, name=name)
        self.keep_alive = keep_alive
        self._chat_url = self.endpoint("/api/chat")

    def _body(self, messages: Sequence[ChatMessage], options: Mapping[str, Any], stream: bool) -> bytes:
        model = options.get("model") or self.model
        return dumps(ollama_request(model, messages, options, stream=stream, keep_alive=self.keep_alive))

    # -- the backend interface -------------------------------------------------------------------------
    async def chat(self, messages: Sequence[ChatMessage], **options: Any) -> str:
        deadline = Deadline(self.timeouts, streaming=False)
        raw = await self._request_json("POST", "/api/chat", self._body(messages, options, False), deadline)
        text, message = _content(loads(raw))
        if not text and message.get("tool_calls"):
            raise LLMError("the LLM's answer has no text (it called a tool)")
        self.observe_answer(deadline)
        return text

    async def stream(self, messages: Sequence[ChatMessage], **options: Any) -> AsyncIterator[str]:
        async with aclosing(self._lines(self._body(messages, options, True))) as batches:
            async for batch in batches:
                text = "".join(t for t, _ in batch)
                if text:
                    yield text

    async def models(self) -> list[str]:
        data = await self._probe("/api/tags")
        items = data.get("models") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise LLMError("the LLM's model list has no 'models' list")
        return [str(m.get("name") or m.get("model")) for m in items if isinstance(m, dict)]

    async def ping(self) -> None:
        await self._ping("/api/tags")

    # -- the relay: OpenAI request in, OpenAI wire format out ------------------------------------------
    def _relay_body(self, body: Mapping[str, Any], stream: bool) -> bytes:
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise LLMError("the request has no 'messages' list")
        # The rest of the body is the options: ollama_request drops model, messages and stream itself.
        model = body.get("model") or self.model
        return dumps(ollama_request(model, messages, body, stream=stream, keep_alive=self.keep_alive))

    async def relay(self, body: Mapping[str, Any]) -> Relayed:
        deadline = Deadline(self.timeouts, streaming=False)
        raw = await self._request_json("POST", "/api/chat", self._relay_body(body, False), deadline)
        data = loads(raw)
        text, message = _content(data)
        calls = _openai_calls(message.get("tool_calls"))
        out_message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            for c in calls:
                del c["index"]
            out_message["tool_calls"] = calls
        prompt, completion = int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0)
        answer = {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": data.get("model") or self.model,
            "choices": [{"index": 0, "message": out_message, "finish_reason": _finish(data, bool(calls))}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        self.observe_answer(deadline)
        return Relayed(orjson.dumps(answer), text)

    async def relay_stream(self, body: Mapping[str, Any]) -> AsyncIterator[RelayChunk]:
        cid, created = _completion_id(), int(time.time())
        model = body.get("model") or self.model
        head = (
            b'data: {"id":"'
            + cid.encode()
            + b'","object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"choices":[{"index":0,"delta":'
        )
        role_sent = called = False
        async with aclosing(self._lines(self._relay_body(body, True))) as batches:
            async for batch in batches:
                events: list[bytes] = []
                for text, data in batch:
                    message = data.get("message") or {}
                    delta: dict[str, Any] = {}
                    if not role_sent:
                        delta["role"] = "assistant"
                        role_sent = True
                    if text:
                        delta["content"] = text
                    if calls := _openai_calls(message.get("tool_calls")):
                        delta["tool_calls"] = calls
                        called = True
                    if delta:
                        events.append(head + orjson.dumps(delta) + b',"finish_reason":null}]}\n\n')
                    if data.get("done"):
                        finish = orjson.dumps(_finish(data, called))
                        events.append(head + b'{},"finish_reason":' + finish + b"}]}\n\n")
                        events.append(DONE_EVENT)
                if events:
                    yield RelayChunk(b"".join(events), "".join(t for t, _ in batch))

    # -- NDJSON ----------------------------------------------------------------------------------------
    async def _lines(self, body: bytes) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        """(text delta, object) per NDJSON line, in batches (one network read), the last with ``done``."""
        deadline = Deadline(self.timeouts, streaming=True)
        resp = await self._send("POST", self._chat_url, body, deadline)
        reader = self.lines(resp, deadline)
        clean = False
        try:
            while True:
                lines = await reader.next()
                if not lines:
                    raise LLMError("the LLM's stream ended before the answer was complete")
                batch: list[tuple[str, dict[str, Any]]] = []
                for line in lines:
                    if not line.strip():
                        continue
                    data = loads(line, "stream line")
                    text, message = _content(data)
                    if text or message.get("tool_calls") or message.get("thinking"):
                        reader.first_token()
                    batch.append((text, data))
                    if data.get("done"):
                        clean = resp.content.at_eof()
                        self.observe_answer(deadline)
                        yield batch
                        return
                if batch:
                    yield batch
        finally:
            reader.close()
            if clean:
                resp.release()
            else:
                resp.close()


def _completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def _finish(data: Mapping[str, Any], called: bool) -> str:
    if called:
        return "tool_calls"
    return _FINISH.get(str(data.get("done_reason") or "stop"), "stop")
