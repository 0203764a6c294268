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
    text = clean_text(body.text, "text", request.app.state.gateway.settings.max_text_chars)
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
    reply = await eng.handle(turn)
    return json_response(conversation_result(reply, turn.language))


routes = [
    Route("/ha/conversation", conversation, methods=["POST"]),
]
