"""What goes into the engine and what comes out: wire-format free, so every API shape maps onto them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from athena.sessions.models import Message, Session

ResponseType = Literal["action_done", "query_answer", "error"]
ErrorCode = Literal["no_intent_match", "no_valid_targets", "failed_to_handle", "unknown"]
Path = Literal["llm", "local", "reset", "error"]
Failure = Literal["llm_timeout", "llm_error", "store", "internal"]


@dataclass(frozen=True, slots=True)
class Target:
    """An entity, area or device a turn acted on, as Home Assistant lists it in success / failed."""

    name: str
    id: str
    type: Literal["entity", "area", "device", "floor", "domain", "device_class", "custom"] = "entity"


@dataclass(frozen=True, slots=True)
class Turn:
    text: str
    device: str | None  # session key chosen by the API layer; None: a one-off session
    language: str = "en"
    device_name: str | None = None
    area: str | None = None
    area_id: str | None = None
    ha_device_id: str | None = None  # Home Assistant's registry id, for /api/intent/handle
    satellite_id: str | None = None
    user_id: str | None = None
    extra_system_prompt: str | None = None
    system_prompt: str | None = None  # an OpenAI client's own system message
    new_session: bool = False
    prior: Sequence[Message] = ()  # turns answered elsewhere (HA's local intents) to add to the history first
    conversation_id: str | None = None  # when device is None: a known session id continues that session
    llm_options: Mapping[str, Any] = field(default_factory=dict)  # a client's temperature, max_tokens, ...


@dataclass(frozen=True, slots=True)
class Reply:
    speech: str
    session_id: str
    response_type: ResponseType = "query_answer"
    path: Path = "llm"
    error_code: ErrorCode | None = None
    success: Sequence[Target] = ()
    failed: Sequence[Target] = ()
    continue_conversation: bool = False
    failure: Failure | None = None  # why an error reply failed, so each wire format can map it (HTTP status)


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    """A local handler's answer; `meta` is saved on the assistant message (the intent, for follow-ups)."""

    speech: str
    response_type: ResponseType = "action_done"
    path: Path = "local"
    success: Sequence[Target] = ()
    failed: Sequence[Target] = ()
    meta: dict = field(default_factory=dict)
    reset: bool = False  # the handler cleared the session ("start over"): save nothing to it


class LocalHandler(Protocol):
    """Tried in order before the LLM; returning None passes the turn on."""

    async def handle(
        self, turn: Turn, session: Session, history: Sequence[Message]
    ) -> LocalAnswer | None: ...
