"""OpenAI's chat API: `POST /v1/chat/completions` and `GET /v1/models`.

Two modes. Without `X-Athena-Device` it is a stateless relay: the client's request goes to the backend as
it is (HA's llama_cpp/litellm integrations and other OpenAI clients keep their own chat log). With
`X-Athena-Device: <id>` Athena keeps the history: it takes the last user message and the client's system
message, supplies the device's session history and saves the turn, like /ha/conversation.

Streams are relayed as chunks arrive. Errors before the first token are a JSON error with a status (502 LLM
error, 504 LLM timeout, 503 store); after it, an SSE `data: {"error": ...}` event then `data: [DONE]`.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from athena.api.bodies import clean_text, device_id, read_json, validate
from athena.api.errors import ApiError, error_body
from athena.api.responses import json_response
from athena.api.state import engine
from athena.engine.conversation import TurnFailed
from athena.engine.types import Failure, Reply, Turn
from athena.llm.base import LLMError, LLMHTTPError, LLMTimeout
from athena.observability import ANSWERS

log = structlog.get_logger("athena.api")

DEVICE_HEADER = "x-athena-device"
SESSION_HEADER = "X-Athena-Session"
# Sampling options passed to the backend in device mode; others (tools, n, logprobs, ...) are dropped there.
PASS_THROUGH = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)
# How a failed turn answers an OpenAI client: HTTP status and error code.
FAILURES: dict[Failure, tuple[int, str]] = {
    "llm_timeout": (504, "llm_timeout"),
    "llm_error": (502, "llm_unavailable"),
    "store": (503, "store_unavailable"),
    "internal": (500, "internal_error"),
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = Field(default=None, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1000)
    stream: bool = False


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if p.get("type", "text") == "text")


def options(body: ChatIn) -> dict[str, Any]:
    extra = body.model_extra or {}
    return {k: extra[k] for k in PASS_THROUGH if extra.get(k) is not None}


def completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def completion(cid: str, model: str, text: str) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


class _Chunks:
    """SSE chunk encoder: one id and timestamp for the whole stream."""

    def __init__(self, model: str) -> None:
        self.head = {
            "id": completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**self.head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    @staticmethod
    def error(status: int, message: str) -> bytes:
        return b"data: " + orjson.dumps(error_body(status, message)) + b"\n\ndata: [DONE]\n\n"


def _llm_status(exc: LLMError) -> int:
    return 504 if isinstance(exc, LLMTimeout) else 502


def _turn_error(reply: Reply) -> ApiError:
    status, code = FAILURES[reply.failure or "internal"]
    return ApiError(status, reply.speech, code)


async def _first(it: AsyncIterator[str]) -> str | None:
    """The first non-empty delta (None: the stream ended without text)."""
    async for delta in it:
        if delta:
            return delta
    return None


def _sse(
    model: str, first: str | None, rest: AsyncIterator[str], headers: dict[str, str]
) -> StreamingResponse:
    chunks = _Chunks(model)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield chunks.delta({"role": "assistant", "content": first or ""})
            async for delta in rest:
                if delta:
                    yield chunks.delta({"content": delta})
        except TurnFailed as exc:
            yield chunks.error(FAILURES[exc.reply.failure or "internal"][0], exc.reply.speech)
            return
        except LLMError as exc:
            ANSWERS.labels(path="error").inc()
            log.warning("relay.failed", error=str(exc) or type(exc).__name__, streamed=True)
            yield chunks.error(_llm_status(exc), f"the language model failed mid-answer: {exc}")
            return
        finally:
            aclose = getattr(rest, "aclose", None)
            if aclose is not None:
                await aclose()
        yield chunks.delta({}, "stop")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})


async def chat_completions(request: Request) -> Response:
    data = await read_json(request)
    body = validate(ChatIn, data)
    device = request.headers.get(DEVICE_HEADER)
    if device is not None:
        return await _with_history(request, body, device)
    return await _relay(request, data, body.stream)


async def _relay(request: Request, data: dict[str, Any], stream: bool) -> Response:
    """The client's request goes upstream as it is (tools included); the answer comes back as it is."""
    llm = engine(request).llm
    try:
        if not stream:
            relayed = await llm.relay(data)
            ANSWERS.labels(path="llm").inc()
            return Response(relayed.body, media_type="application/json")
        it = aiter(llm.relay_stream(data))
        first = await anext(it, None)
    except LLMHTTPError as exc:
        ANSWERS.labels(path="error").inc()
        log.warning("relay.failed", error=str(exc), status=exc.status, streamed=stream)
        if 400 <= exc.status < 500 and exc.status != 401:  # the client's request was wrong: pass it on
            body = exc.body or orjson.dumps(error_body(exc.status, str(exc)))
            return Response(body, exc.status, media_type="application/json")
        raise ApiError(502, f"the language model failed: {exc}", "llm_unavailable") from None
    except LLMError as exc:
        ANSWERS.labels(path="error").inc()
        log.warning("relay.failed", error=str(exc) or type(exc).__name__, streamed=stream)
        raise ApiError(_llm_status(exc), f"the language model failed: {exc}", "llm_unavailable") from None
    ANSWERS.labels(path="llm").inc()

    async def events() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first.event
            async for chunk in it:
                yield chunk.event
        except LLMError as exc:
            ANSWERS.labels(path="error").inc()
            log.warning("relay.failed", error=str(exc) or type(exc).__name__, streamed=True)
            yield _Chunks.error(_llm_status(exc), f"the language model failed mid-answer: {exc}")
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _with_history(request: Request, body: ChatIn, device: str) -> Response:
    eng = engine(request)
    key = device_id(device, "X-Athena-Device")
    user = next((m for m in reversed(body.messages) if m.role == "user"), None)
    if user is None:
        raise ApiError(422, "messages: a user message is required")
    system = "\n\n".join(_text(m.content) for m in body.messages if m.role in ("system", "developer")).strip()
    turn = Turn(
        text=clean_text(
            _text(user.content), "the last user message", eng.settings.max_text_chars, collapse=False
        ),
        device=key,
        system_prompt=system or None,
        llm_options=options(body),
    )
    model = eng.llm.model
    if not body.stream:
        reply = await eng.handle(turn)
        if reply.failure is not None:
            raise _turn_error(reply)
        return json_response(
            completion(completion_id(), model, reply.speech), headers={SESSION_HEADER: reply.session_id}
        )
    try:
        stream = await eng.open_stream(turn)
        it = aiter(stream)
        first = await _first(it)
    except TurnFailed as exc:
        raise _turn_error(exc.reply) from None
    return _sse(model, first, it, {SESSION_HEADER: stream.session_id})


async def models(request: Request) -> Response:
    llm = engine(request).llm
    try:
        names = await llm.models()
    except LLMError as exc:
        raise ApiError(
            502, f"the language model server did not list its models: {exc}", "llm_unavailable"
        ) from None
    return json_response(
        {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": llm.name} for n in names],
        }
    )


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
]
