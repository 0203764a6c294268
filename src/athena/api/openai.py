"""OpenAI's chat API: `POST /v1/chat/completions` and `GET /v1/models`.

Two modes. Without `X-Athena-Device` it is a stateless relay: the client's request goes to the backend as
it is (HA's llama_cpp/litellm integrations and other OpenAI clients keep their own chat log). With
`X-Athena-Device: <id>` Athena keeps the history: it takes the last user message and the client's system
message, supplies the device's session history and saves the turn, like /ha/conversation. A client's own
`tools` are offered to the model there too; its `tool_calls` go back to the client, and the `tool` messages
it sends next continue the same turn and are kept in the session.

Requests are validated strictly, as OpenAI does (`"stream": "yes"` is a 400 naming the field). Each failure
has one status and code whether it happens before the first token (an HTTP error) or after it (an SSE
`data: {"error": ...}` event, then `data: [DONE]`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from athena.api.bodies import clean_text, device_id, read_json, validate
from athena.api.errors import ApiError, failure_error
from athena.api.responses import json_response
from athena.api.state import engine, gateway
from athena.engine import Engine, RelayFailed, TurnRun
from athena.llm.base import LLMError
from athena.llm.wire import DONE_EVENT, Chunks, chat_completion, content_text, error_event, tool_calls_out
from athena.records import Message, MessageMeta
from athena.turns import Reply, Turn

DEVICE_HEADER = "x-athena-device"
SESSION_HEADER = "X-Athena-Session"
# Options passed to the model in device mode (the relay passes the client's whole body).
PASS_THROUGH = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "tool_choice",
    "parallel_tool_calls",
)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Upstream answers about Athena's own set-up (its API key), never passed on as the client's fault.
_NOT_THE_CLIENTS = (401, 403)


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ChatIn(BaseModel):
    """The fields Athena reads or forwards, typed as OpenAI types them; others pass to the relay untouched."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str | None = Field(default=None, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=512)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


async def chat_completions(request: Request) -> Response:
    data = await read_json(request)
    body = validate(ChatIn, data, status=400)
    device = request.headers.get(DEVICE_HEADER)
    if device is not None:
        return await _with_history(request, body, device)
    return await _relay(engine(request), data, body.stream)


# -- the stateless relay ---------------------------------------------------------------------------------
def _relay_error(exc: RelayFailed) -> Response | ApiError:
    """An upstream 4xx in OpenAI's error shape is about the client's request (an unknown model, a bad
    parameter): passed on as it is. Anything else — a 404 page from a wrong URL, a refused key — is Athena's
    set-up failing: a 502 that says so, so a client never concludes Athena lacks the endpoint."""
    status = exc.status or 0
    if (
        400 <= status < 500
        and status not in _NOT_THE_CLIENTS
        and exc.failure != "llm_misconfigured"  # a 404 not about a model: Athena's URL is wrong
        and _is_openai_error(exc.body)
    ):
        return Response(exc.body, status, media_type="application/json")
    return failure_error(exc.failure, str(exc))


def _is_openai_error(body: bytes) -> bool:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict | str)


async def _relay(eng: Engine, data: dict[str, Any], stream: bool) -> Response:
    """The client's request goes upstream as it is (tools included); the answer comes back as it is."""
    try:
        if not stream:
            return Response((await eng.relay(data)).body, media_type="application/json")
        chunks = eng.relay_stream(data)
        first = await anext(chunks, None)
    except RelayFailed as exc:
        answer = _relay_error(exc)
        if isinstance(answer, ApiError):
            raise answer from None
        return answer

    async def events() -> AsyncIterator[bytes]:
        async with aclosing(chunks):
            try:
                if first is not None:
                    yield first.event
                async for chunk in chunks:
                    yield chunk.event
            except RelayFailed as exc:
                yield error_event(failure_error(exc.failure, f"{exc} (mid-answer)").body())

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


# -- device mode: Athena keeps the history ---------------------------------------------------------------
def _turn(request: Request, body: ChatIn, device: str) -> Turn:
    limit = gateway(request).settings.max_text_chars
    key = device_id(device, "X-Athena-Device")
    system = "\n\n".join(
        content_text(m.content) for m in body.messages if m.role in ("system", "developer")
    ).strip()
    options: dict[str, Any] = {k: getattr(body, k) for k in PASS_THROUGH if getattr(body, k) is not None}
    options["stream_options"] = {"include_usage": True}  # the reply's usage, streamed or not
    tools = body.tools or ()
    text, results = "", []
    if body.messages[-1].role == "tool":  # the client ran the tools the model called: continue that turn
        now = engine(request).clock()
        for m in reversed(body.messages):
            if m.role != "tool":
                break
            meta = MessageMeta(device=key, tool_call_id=m.tool_call_id)
            results.append(Message("tool", content_text(m.content), now, meta))
        results.reverse()
    else:
        user = next((m for m in reversed(body.messages) if m.role == "user"), None)
        if user is None:
            raise ApiError(422, "messages: needs a user message (or the results of the model's tool calls)")
        text = clean_text(content_text(user.content), "the last user message", limit, collapse=False)
    return Turn(
        text=text,
        device_id=key,
        system_prompt=system or None,
        llm_options=options,
        tools=tools,
        tool_results=tuple(results),
    )


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    return chat_completion(
        model, reply.speech, finish_reason=reply.finish_reason or "stop", usage=reply.usage,
        tool_calls=reply.tool_calls,
    )


async def _with_history(request: Request, body: ChatIn, device: str) -> Response:
    eng = engine(request)
    turn = _turn(request, body, device)
    model = eng.llm.model
    if not body.stream:
        reply = await eng.handle(turn)
        if reply.failure is not None:
            raise failure_error(reply.failure, reply.speech)
        return json_response(_completion(reply, model), headers={SESSION_HEADER: reply.session_id})
    run = await eng.open(turn)
    deltas = run.deltas()
    first = await anext(deltas, None)
    if first is None and run.reply is not None and run.reply.failure is not None:
        await deltas.aclose()
        raise failure_error(run.reply.failure, run.reply.speech)
    return StreamingResponse(
        _sse(run, model, first, deltas, body.include_usage),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, SESSION_HEADER: run.session_id},
    )


async def _sse(
    run: TurnRun, model: str, first: str | None, rest: AsyncGenerator[str, None], include_usage: bool
) -> AsyncIterator[bytes]:
    chunks = Chunks(model)
    async with aclosing(rest):
        yield chunks.delta({"role": "assistant", "content": first or ""})
        async for delta in rest:
            yield chunks.delta({"content": delta})
    reply = run.reply
    if reply is None:
        return
    if reply.failure is not None:
        yield error_event(failure_error(reply.failure, reply.speech).body())
        return
    if reply.tool_calls:
        yield chunks.delta({"tool_calls": tool_calls_out(reply.tool_calls, indexed=True)})
    yield chunks.delta({}, reply.finish_reason or "stop")
    if include_usage and reply.usage is not None:
        yield chunks.usage(reply.usage)
    yield DONE_EVENT


async def models(request: Request) -> Response:
    eng = engine(request)
    try:
        names = await eng.models()
    except LLMError as exc:
        raise ApiError(
            502, f"the language model server did not list its models: {exc}", "llm_unavailable"
        ) from None
    return json_response(
        {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": eng.llm.name} for n in names],
        }
    )


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
]
