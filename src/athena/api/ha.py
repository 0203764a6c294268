"""`POST /ha/conversation`: Home Assistant's ConversationInput in, its ConversationResult dict out.

Failures a voice user can hit (LLM down or slow, store down) still answer 200 with response_type "error" and a
spoken sentence, the way HA's own agents do; only malformed requests get a 4xx.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from athena.api.bodies import clean_text, device_id, read_model
from athena.api.responses import json_response
from athena.api.state import engine
from athena.engine.types import Reply, Target, Turn
from athena.sessions.models import Message

_Short = Field(default=None, max_length=256)


class PriorTurn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant"]
    content: str = Field(max_length=20_000)


class ConversationIn(BaseModel):
    """HA's ConversationInput plus what the Athena integration adds (device name, area, HA-answered turns)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    text: str
    language: str = Field(default="en", max_length=35)
    conversation_id: str | None = _Short
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
    text = clean_text(body.text, "text", eng.settings.max_text_chars)
    # An empty id is "none given" (some clients send ""); anything else must be a valid id.
    key = device_id(body.device_id or None, "device_id") or device_id(
        body.satellite_id or None, "satellite_id"
    )
    now = eng.clock()
    prior = tuple(
        Message(p.role, p.content, now, {"source": "home_assistant"})
        for p in body.history
        if p.content.strip()
    )
    turn = Turn(
        text=text,
        device=key,
        language=body.language or "en",
        device_name=body.device_name,
        area=body.area,
        area_id=body.area_id,
        ha_device_id=body.device_id,
        satellite_id=body.satellite_id,
        user_id=body.user_id,
        extra_system_prompt=body.extra_system_prompt,
        new_session=body.new_session,
        prior=prior,
        conversation_id=body.conversation_id,
    )
    reply = await eng.handle(turn)
    return json_response(conversation_result(reply, turn.language))


routes = [
    Route("/ha/conversation", conversation, methods=["POST"]),
]
