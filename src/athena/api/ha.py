"""`POST /ha/conversation`: Home Assistant's ConversationInput in, its ConversationResult dict out.

Failures a voice user can hit (LLM down or slow, store down) still answer 200 with response_type "error" and a
spoken sentence, the way HA's own agents do; only malformed requests get a 4xx.

With `"stream": true` the answer comes as it is written, one JSON object per line (NDJSON, which HA's aiohttp
reads line by line with no parser of its own):

    {"event": "start", "conversation_id": "<session id>"}
    {"event": "delta", "text": "It is sunny"}            (as many as the model writes; a local answer is one)
    {"event": "result", "result": {<ConversationResult>}}

The result always comes last; after a failure mid-answer it is the error result, its speech the words to say.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from athena.api.bodies import clean_text, device_id, read_model
from athena.api.responses import json_response
from athena.api.state import engine, gateway
from athena.engine import TurnRun
from athena.records import Message, MessageMeta
from athena.turns import MAX_CONVERSATION_ID, Reply, Target, Turn

_Short = Field(default=None, max_length=256)
_FROM_HA = MessageMeta(source="home_assistant")


class PriorTurn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant"]
    content: str = Field(max_length=20_000)


class ConversationIn(BaseModel):
    """HA's ConversationInput plus what the Athena integration adds (device name, area, HA-answered turns)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    text: str
    language: str = Field(default="en", max_length=35)
    conversation_id: str | None = Field(default=None, max_length=MAX_CONVERSATION_ID)
    device_id: str | None = None
    satellite_id: str | None = None
    agent_id: str | None = _Short
    extra_system_prompt: str | None = Field(default=None, max_length=20_000)
    user_id: str | None = _Short
    device_name: str | None = _Short
    area: str | None = _Short
    area_id: str | None = _Short
    history: list[PriorTurn] = Field(default_factory=list, max_length=100)
    new_session: bool = False
    stream: bool = False


def _target(t: Target) -> dict[str, str]:
    return {"name": t.name, "type": t.type, "id": t.id}


def conversation_result(reply: Reply, language: str) -> dict[str, Any]:
    if reply.response_type == "error":
        data: dict[str, Any] = {"code": reply.error_code or "unknown"}
    else:
        data = {
            "targets": [],
            "success": [_target(t) for t in reply.success],
            "failed": [_target(t) for t in reply.failed],
        }
    return {
        "response": {
            "speech": {"plain": {"speech": reply.speech, "extra_data": None}},
            "card": {},
            "language": language,
            "response_type": reply.response_type,
            "data": data,
        },
        "conversation_id": reply.session_id or None,
        "continue_conversation": reply.continue_conversation,
    }


async def conversation(request: Request) -> Response:
    eng = engine(request)
    body = await read_model(request, ConversationIn)
    text = clean_text(body.text, "text", gateway(request).settings.max_text_chars)
    now = eng.clock()
    turn = Turn(
        text=text,
        language=body.language or "en",
        # An empty id is "none given" (some clients send ""); anything else must be a valid id.
        device_id=device_id(body.device_id or None, "device_id"),
        satellite_id=device_id(body.satellite_id or None, "satellite_id"),
        conversation_id=body.conversation_id or None,
        device_name=body.device_name,
        area=body.area,
        area_id=body.area_id,
        user_id=body.user_id,
        extra_system_prompt=body.extra_system_prompt,
        new_session=body.new_session,
        prior=tuple(Message(p.role, p.content, now, _FROM_HA) for p in body.history if p.content.strip()),
    )
    if not body.stream:
        return json_response(conversation_result(await eng.handle(turn), turn.language))
    run = await eng.open(turn)
    return StreamingResponse(
        _lines(run, turn.language), media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"}
    )


async def _lines(run: TurnRun, language: str) -> AsyncIterator[bytes]:
    yield orjson.dumps({"event": "start", "conversation_id": run.session_id or None}) + b"\n"
    async with aclosing(run.deltas()) as deltas:
        async for delta in deltas:
            yield orjson.dumps({"event": "delta", "text": delta}) + b"\n"
    if run.reply is not None:
        yield orjson.dumps({"event": "result", "result": conversation_result(run.reply, language)}) + b"\n"


routes = [
    Route("/ha/conversation", conversation, methods=["POST"]),
]
