"""What goes into the engine and what comes out: wire-format free, so every API shape maps onto them."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from athena.records import IntentMemory, Message, ToolCall

ResponseType = Literal["action_done", "query_answer", "error"]
ErrorCode = Literal["no_intent_match", "no_valid_targets", "failed_to_handle", "unknown"]
AnswerPath = Literal["llm", "local", "reset", "error"]
# Why a turn failed; also the `reason` label of athena_turn_failures_total. llm_model_missing: the server
# does not serve the configured model; llm_misconfigured: the LLM's URL or API kind is wrong (a 404 that is
# not about a model).
Failure = Literal["llm_timeout", "llm_error", "llm_model_missing", "llm_misconfigured", "store", "internal"]
TargetType = Literal["entity", "area", "device", "floor", "domain", "device_class", "custom"]
_TARGET_TYPES: dict[str, TargetType] = {t: t for t in TargetType.__args__}  # type: ignore[attr-defined]


def target_type(value: object) -> TargetType:
    """HA's target type, or "custom" for one this version does not know."""
    return _TARGET_TYPES.get(value, "custom") if isinstance(value, str) else "custom"

# Control characters other than tab/newline make no sense in speech and break logs and prompts.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"\s+")


def clean_spoken(value: str, *, collapse: bool = True) -> str:
    """What a user said, as every wire format hands it on: control characters dropped, whitespace
    collapsed (unless `collapse` is off), NFC, stripped. Empty means nothing was said."""
    text = _CONTROL.sub("", value)
    if collapse:
        text = _SPACES.sub(" ", text)
    return unicodedata.normalize("NFC", text.strip())


# The longest conversation id accepted anywhere (HA's own are 26-character ULIDs; API callers pick others).
MAX_CONVERSATION_ID = 256


@dataclass(frozen=True, slots=True)
class Target:
    """An entity, area or device a turn acted on, as Home Assistant lists it in success / failed."""

    name: str
    id: str
    type: TargetType = "entity"


@dataclass(frozen=True, slots=True)
class Turn:
    """One thing a user said, with what the caller knows about where it was said.

    The engine picks the session from `device_id`, `satellite_id` and `conversation_id` (engine/keys.py).
    """

    text: str
    language: str = "en"
    device_id: str | None = None  # HA's device-registry id, or a device name an API caller chose
    satellite_id: str | None = None
    conversation_id: str | None = None
    device_name: str | None = None
    area: str | None = None
    area_id: str | None = None
    user_id: str | None = None
    extra_system_prompt: str | None = None
    system_prompt: str | None = None  # an OpenAI client's own system message
    new_session: bool = False
    prior: Sequence[Message] = ()  # turns answered elsewhere (HA's local intents) to add to the history first
    llm_options: Mapping[str, Any] = field(default_factory=dict)  # a client's temperature, max_tokens, ...
    tools: Sequence[Mapping[str, Any]] = ()  # an OpenAI client's own tools (OpenAI's schema)
    tool_results: Sequence[Message] = ()  # that client's results for the calls of the last answer


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Reply:
    """The engine's answer to a turn; only the engine builds one."""

    speech: str
    session_id: str
    response_type: ResponseType = "query_answer"
    path: AnswerPath = "llm"
    error_code: ErrorCode | None = None
    success: Sequence[Target] = ()
    failed: Sequence[Target] = ()
    continue_conversation: bool = False
    failure: Failure | None = None  # why an error reply failed, so each wire format can map it (HTTP status)
    finish_reason: str | None = None  # the model's own ("stop", "length", "tool_calls"); None off the LLM
    usage: Usage | None = None
    tool_calls: Sequence[ToolCall] = ()  # calls of a client's own tools, for that client to run
    kept: bool = True  # False: streamed and heard, but the store failed to keep it


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    """A local handler's answer; `memory` is saved with it so a follow-up can act on the same things."""

    speech: str
    response_type: ResponseType = "action_done"
    success: Sequence[Target] = ()
    failed: Sequence[Target] = ()
    memory: IntentMemory | None = None
    follow_up: str | None = None
    recognize_ms: float | None = None
    ha_ms: float | None = None
